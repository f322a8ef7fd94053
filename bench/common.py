"""Helpers shared by the benchmarks: photo-like test images, a server process, timing."""

from __future__ import annotations

import io
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from tests.helpers import (
    free_port,  # noqa: F401  re-exported for the benchmarks
    jpeg_with_exif_thumbnail,
)

ROOT = Path(__file__).resolve().parent.parent


def photo_like_jpeg(
    seed: int, width: int = 3000, height: int = 2000, target_bytes: int = 5 * 2**20, exif_thumbnail: bool = True
) -> bytes:
    """A JPEG of about ``target_bytes`` with photo-like content (smooth shapes plus grain) and, as
    phones and cameras write them, a 160x120 thumbnail of itself in its EXIF block."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack(
        [127 + 100 * np.sin(x / (150 + 40 * c) + seed + c) * np.cos(y / (120 + 30 * c) - c) for c in range(3)],
        axis=-1,
    )
    grain_strength = 18.0
    for _ in range(6):
        grain = rng.normal(0, grain_strength, size=(height, width, 1)).astype(np.float32)
        pixels = np.clip(base + grain, 0, 255).astype(np.uint8)
        out = io.BytesIO()
        Image.fromarray(pixels, "RGB").save(out, "JPEG", quality=92)
        size = out.tell()
        if abs(size - target_bytes) < 0.08 * target_bytes:
            break
        grain_strength *= (target_bytes / size) ** 1.3
    if not exif_thumbnail:
        return out.getvalue()
    thumbnail = Image.fromarray(pixels, "RGB").resize((160, 120), Image.Resampling.BILINEAR)
    return jpeg_with_exif_thumbnail(out.getvalue(), thumbnail)


def wait_until_healthy(url: str, process: subprocess.Popen[bytes], what: str, seconds: float = 60) -> None:
    """Return once ``url``'s ``/api/health`` answers 200; RuntimeError if ``process`` exits first or
    ``seconds`` pass."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if httpx.get(url + "/api/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or process.poll() is not None:
            raise RuntimeError(f"{what} did not start")
        time.sleep(0.1)


class ServerProcess:
    def __init__(self, module: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", module, str(self.port)], cwd=ROOT, env={**os.environ, **(env or {})}
        )
        wait_until_healthy(self.url, self.process, module)

    def rss_bytes(self) -> int:
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=20)


def best_of(runs: int, action: Callable[[], object]) -> float:
    """Median wall time of ``runs`` calls (after one warm-up call)."""
    action()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile of ``values`` (``fraction`` 0.95 for p95); NaN for no values.
    The one definition every benchmark reports."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]
