"""'More like this' speed once features are cached: p95 of GET /api/images/{id}/similar?k=12 at
1,000 and 10,000 images, as a ratio to listing the same workspace (GET /api/images) in the same run.

    python bench/similar.py [--sizes 1000 10000] [--queries 100]

How the workspace is made, honestly: the real API (``create_app``) under a real uvicorn in this
process, on a memory store. Each workspace holds N records of one small JPEG (one decode, stored
under N names, the bytes held once), and each record's ``similarity`` cache entry is a synthetic
vector built by ``similarity_vector`` from random histograms and a random HOG vector, put in the
store's feature cache as a computed one would be. So "once features are cached" means the cache
is full: no image is decoded while timing. One untimed request first builds the session's matrix
memo (that read of N caches is the cost of the first search after a restart); the timed requests
are what every later search costs: listing the session, the memo check, the exact search, JSON.

Prints, per size: p95 of ``similar``, p95 of the listing, and their ratio (target: similar
well under 100 ms at 10,000 images).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import random
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402
import numpy as np  # noqa: E402

from bench.common import percentile  # noqa: E402
from core import data_service, workspace  # noqa: E402
from core.config import Settings  # noqa: E402
from core.features.service import _approx_nbytes  # noqa: E402
from core.features.similar import SIMILARITY_GROUP, similarity_vector  # noqa: E402
from core.ingest import ingest_image  # noqa: E402
from core.sessions import new_session_id, session_scope  # noqa: E402
from tests.helpers import UNLIMITED_CLIENT, LiveServer, make_jpeg  # noqa: E402

GiB = 2**30
CACHE_NAME = "features:" + SIMILARITY_GROUP


def seeded_workspace(size: int, seed: int) -> tuple[str, list[str]]:
    """A session of ``size`` records with cached synthetic similarity vectors; its image ids."""
    session_id = new_session_id()
    store = data_service.current_stores().sessions
    image = ingest_image(make_jpeg(seed=seed), "frame.jpg", data_service.settings())
    rng = np.random.default_rng(seed)
    ids = []
    with session_scope(session_id):
        for index in range(size):
            record = store.add(session_id, dataclasses.replace(image, filename=f"frame{index:05d}.jpg")).record
            vector = similarity_vector(rng.integers(0, 100, 128), rng.random(8100), rng.integers(0, 100, 10))
            value = {"vector": vector.tolist()}
            workspace.cache_put(record.id, CACHE_NAME, value, _approx_nbytes(value))
            ids.append(record.id)
    return session_id, ids


def timed(client: httpx.Client, path: str, params: dict[str, str]) -> float:
    started = time.perf_counter()
    response = client.get(path, params=params)
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    return elapsed


def measure(client: httpx.Client, size: int, queries: int) -> None:
    session_id, ids = seeded_workspace(size, seed=size)
    headers = {"X-Session-Id": session_id}
    client.headers.update(headers)
    picker = random.Random(size)
    first = client.get(f"/api/images/{ids[0]}/similar", params={"k": "12"})  # builds the memo, untimed
    first.raise_for_status()
    assert len(first.json()["results"]) == min(12, size - 1)
    similar, listing = [], []
    for _ in range(queries):  # interleaved: both see the same machine at the same moments
        similar.append(timed(client, f"/api/images/{picker.choice(ids)}/similar", {"k": "12"}))
        listing.append(timed(client, "/api/images", {}))
    ours, baseline = percentile(similar, 0.95), percentile(listing, 0.95)
    print(
        f"{size:>6,} images: similar p95 {ours * 1000:7.2f} ms, listing p95 {baseline * 1000:7.2f} ms, "
        f"ratio {ours / baseline:5.2f}"
    )
    with session_scope(session_id):
        workspace.clear_session()


def main() -> None:
    logging.getLogger("uvicorn.access").disabled = True  # a line per request is not a result
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--queries", type=int, default=100)
    args = parser.parse_args()
    if min(args.sizes) < 2 or args.queries < 1:
        parser.error("sizes must be at least 2 images and queries at least 1")
    settings = Settings(session_quota_bytes=4 * GiB, memory_cap_bytes=8 * GiB, **UNLIMITED_CLIENT)
    data_service.configure(settings)
    server = LiveServer(settings=settings)
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            for size in args.sizes:
                measure(client, size, args.queries)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
