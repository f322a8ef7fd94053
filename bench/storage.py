"""Add and get throughput of every session store, as a ratio to the memory store, in one run.

    python bench/storage.py [--images 200] [--runs 3]

200 validated photo-like JPEGs of about 2 MiB go into one session of each store (``add``: what an
upload does after validation), then are read back (``get``: record and bytes, what a download
does). Disk and sql write to a folder on the real disk with fsync, as in production; PostgreSQL is
a throw-away local cluster (Debian's postgresql package; skipped with a note when missing).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import photo_like_jpeg  # noqa: E402
from core.config import Settings  # noqa: E402
from core.ingest import IngestedImage, ingest_image  # noqa: E402
from core.storage.base import ImageStore  # noqa: E402
from core.storage.disk import SessionFolders  # noqa: E402
from core.storage.memory import MemoryStore  # noqa: E402
from core.storage.sql import SqlStore  # noqa: E402
from tests.helpers import PostgresCluster, postgres_bin  # noqa: E402

SESSION = "11111111-1111-4111-8111-111111111111"
BIG = 10**12


def photos(count: int) -> list[IngestedImage]:
    """``count`` distinct ~2 MiB photos (a few real encodes, made distinct by trailing bytes that
    JPEG readers ignore, so no two share a hash)."""
    bases = [
        ingest_image(photo_like_jpeg(seed, 1600, 1200, 2 * 2**20), f"base{seed}.jpg", Settings()) for seed in range(8)
    ]
    out = []
    for index in range(count):
        base = bases[index % len(bases)]
        data = base.data + index.to_bytes(4, "big")
        out.append(
            dataclasses.replace(
                base, filename=f"photo-{index:03d}.jpg", data=data, sha256=hashlib.sha256(data).hexdigest()
            )
        )
    return out


def measure(make: Callable[[], ImageStore], items: list[IngestedImage], runs: int) -> tuple[float, float]:
    adds, gets = [], []
    for _ in range(runs):
        store = make()
        started = time.perf_counter()
        ids = [store.add(SESSION, item).record.id for item in items]
        adds.append(time.perf_counter() - started)
        started = time.perf_counter()
        for image_id in ids:
            store.get(SESSION, image_id)
            store.read(SESSION, image_id)
        gets.append(time.perf_counter() - started)
    return statistics.median(adds), statistics.median(gets)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    items = photos(args.images)
    total = sum(len(i.data) for i in items)
    print(f"{len(items)} images, {total / 2**20:.0f} MiB; median of {args.runs} runs per store")
    work = Path(tempfile.mkdtemp(prefix="darkroom-bench-storage-", dir=Path.cwd()))  # the real disk
    cluster = PostgresCluster(postgres_bin()) if postgres_bin() else None
    counter = iter(range(10**6))

    def fresh(name: str) -> Path:
        path = work / f"{name}-{next(counter)}"
        path.mkdir()
        return path

    stores: dict[str, Callable[[], ImageStore]] = {
        "memory": lambda: MemoryStore(BIG, BIG),
        "disk": lambda: SessionFolders(fresh("disk"), BIG, BIG),
        "sql (SQLite + local blobs)": lambda: (
            lambda root: SqlStore(f"sqlite:///{root / 'darkroom.db'}", str(root / "blobs"), BIG, BIG)
        )(fresh("sqlite")),
    }
    if cluster:
        stores["sql (PostgreSQL + local blobs)"] = lambda: SqlStore(
            cluster.new_database(), str(fresh("pg") / "blobs"), BIG, BIG
        )
    else:
        print("PostgreSQL is not installed: its row is skipped (apt-get install postgresql)")
    try:
        results = {name: measure(make, items, args.runs) for name, make in stores.items()}
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if cluster:
            cluster.stop()
    base_add, base_get = results["memory"]
    print(f"{'store':32} {'add MiB/s':>10} {'vs memory':>11} {'get MiB/s':>10} {'vs memory':>11}")
    for name, (add, get) in results.items():
        mib = total / 2**20
        print(f"{name:32} {mib / add:10.0f} {base_add / add:10.5f}x {mib / get:10.0f} {base_get / get:10.5f}x")


if __name__ == "__main__":
    main()
