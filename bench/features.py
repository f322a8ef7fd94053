"""Feature engine speed, as ratios to baselines measured in the same run.

    pip install -e ".[bench]" && python bench/features.py [--runs 5]

Prints:
  * the whole catalogue for one image (decode included) at 512x512 and 2048x2048 (a shared photo
    upscaled), as a ratio to the reference libraries called one by one (target <= 0.8)
  * a 20-image session through all cores (worker processes, warm pool) as a speed-up over a
    single-threaded loop of the same code (target >= 1.8 on 2 cores)
  * the largest event-loop lag while that session extraction runs (target < 50 ms)
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from PIL import Image  # noqa: E402

from bench.common import best_of  # noqa: E402
from core import data_service, workspace  # noqa: E402
from core.config import Settings  # noqa: E402
from core.features import CATALOGUE_ORDER  # noqa: E402
from core.features import service as feature_service  # noqa: E402
from core.features.compute import compute_features  # noqa: E402
from core.sandbox import shutdown_decode_pool  # noqa: E402
from core.sessions import new_session_id, session_scope  # noqa: E402

PHOTOS = Path(__file__).resolve().parent.parent / "tests" / "data" / "features" / "images"
MiB = 2**20


def png_of(name: str, size: int) -> bytes:
    image = Image.open(PHOTOS / name).convert("RGB")
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def per_image(runs: int) -> None:
    from bench.reference_calls import reference_catalogue

    for size in (512, 2048):
        data = png_of("astronaut.png", size)
        ours = best_of(runs, lambda data=data: compute_features(data, CATALOGUE_ORDER))
        reference = best_of(runs, lambda data=data: reference_catalogue(data))
        print(
            f"whole catalogue {size}x{size}: Darkroom {ours * 1000:7.1f} ms, reference libraries "
            f"{reference * 1000:7.1f} ms: ratio {ours / reference:.2f}x (target <= 0.8x)"
        )


async def session_run(session_id: str) -> tuple[float, float]:
    """Seconds for extract_session, and the largest lag of a 5 ms ticker on the same loop."""
    lags: list[float] = []
    running = True

    async def ticker() -> None:
        while running:
            started = time.perf_counter()
            await asyncio.sleep(0.005)
            lags.append(time.perf_counter() - started - 0.005)

    tick = asyncio.create_task(ticker())
    with session_scope(session_id):
        started = time.perf_counter()
        await feature_service.extract_session()
        elapsed = time.perf_counter() - started
    running = False
    await tick
    return elapsed, max(lags)


def whole_session(runs: int) -> None:
    names = sorted(p.name for p in PHOTOS.iterdir())
    images = [png_of(names[i % len(names)], 768 + 16 * i) for i in range(20)]
    data_service.configure(Settings(session_quota_bytes=4096 * MiB, memory_cap_bytes=8192 * MiB))

    def loop_once() -> None:
        for data in images:
            compute_features(data, CATALOGUE_ORDER)

    single = best_of(max(1, runs // 2), loop_once)
    # Warm the worker pool (spawning and importing happen once per server, not per run).
    warm = new_session_id()
    with session_scope(warm):
        data_service.save_uploaded_images([(f"{i}.png", d) for i, d in enumerate(images[:4])])
    asyncio.run(session_run(warm))
    timings, lags = [], []
    for _ in range(max(1, runs // 2)):
        session = new_session_id()
        with session_scope(session):
            data_service.save_uploaded_images([(f"{i}.png", d) for i, d in enumerate(images)])
        elapsed, lag = asyncio.run(session_run(session))
        timings.append(elapsed)
        lags.append(lag)
        with session_scope(session):
            workspace.clear_session()
    parallel = statistics.median(timings)
    print(
        f"20-image session: single-threaded loop {single:.2f} s, all cores ({os.cpu_count()}) "
        f"{parallel:.2f} s: speed-up {single / parallel:.2f}x (target >= 1.8x)"
    )
    print(f"largest event-loop lag during the session run: {max(lags) * 1000:.1f} ms (target < 50 ms)")
    shutdown_decode_pool()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    per_image(args.runs)
    whole_session(args.runs)


if __name__ == "__main__":
    main()
