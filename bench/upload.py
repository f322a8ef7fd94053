"""Upload throughput and memory, as ratios to a baseline measured in the same run.

    python bench/upload.py [--runs 5]

Prints, for 50 MiB of ~5 MiB photo-like JPEGs sent into one session:
  * POST /api/images (multipart) throughput / a bare ``request.body()`` endpoint's (target >= 0.9)
  * WS /api/ws/upload throughput / the same bare endpoint's (target >= 1.0)
  * server memory growth per byte held, storing ~100 MiB (target <= 1.3)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from websockets.sync.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ServerProcess, best_of, photo_like_jpeg  # noqa: E402
from core.config import Settings  # noqa: E402
from core.ingest import ingest_image  # noqa: E402

MiB = 2**20


def multipart_body(files: list[bytes], tag: str) -> tuple[bytes, str]:
    boundary = f"bench{uuid.uuid4().hex}"
    parts = []
    for index, data in enumerate(files):
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{tag}-{index}.jpg"\r\n'
            f"Content-Type: image/jpeg\r\n\r\n".encode()
            + data
            + b"\r\n"
        )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    files = [photo_like_jpeg(seed) for seed in range(10)]
    total = sum(len(f) for f in files)
    body, content_type = multipart_body(files, "bench")
    print(f"payload: {len(files)} JPEGs, {total / MiB:.1f} MiB ({total / len(files) / MiB:.1f} MiB each)")

    server = ServerProcess(
        "bench._upload_server",
        env={"DARKROOM_SESSION_QUOTA_BYTES": str(1024 * MiB), "DARKROOM_MEMORY_CAP_BYTES": str(4096 * MiB)},
    )
    try:
        with httpx.Client(base_url=server.url, timeout=120) as client:
            headers = {"Content-Type": content_type}

            def bare() -> None:
                assert client.post("/bare", content=body, headers=headers).json()["bytes"] == len(body)

            def multipart() -> None:
                session = client.post("/api/sessions").json()["session_id"]
                response = client.post("/api/images", params={"session_id": session}, content=body, headers=headers)
                assert len(response.json()["accepted"]) == len(files), response.text
                client.delete("/api/session", params={"session_id": session})

            def websocket() -> None:
                session = client.post("/api/sessions").json()["session_id"]
                with connect(
                    f"ws://127.0.0.1:{server.port}/api/ws/upload?session_id={session}", compression=None, max_size=None
                ) as ws:
                    ws.recv()
                    for index, data in enumerate(files):
                        ws.send(json.dumps({"filename": f"ws-{index}.jpg", "size": len(data)}))
                        for start in range(0, len(data), MiB):
                            ws.send(data[start : start + MiB])
                    ws.send(json.dumps({"type": "done"}))
                    while True:
                        message = json.loads(ws.recv())
                        if message["type"] == "summary":
                            assert message["accepted"] == len(files), message
                            break
                client.delete("/api/session", params={"session_id": session})

            t_bare = best_of(args.runs, bare)
            t_multipart = best_of(args.runs, multipart)
            t_ws = best_of(args.runs, websocket)
            print(f"bare request.body(): {total / MiB / t_bare:7.1f} MiB/s")
            print(
                f"POST /api/images:    {total / MiB / t_multipart:7.1f} MiB/s  "
                f"ratio {t_bare / t_multipart:.2f}x (target >= 0.9x)"
            )
            print(f"WS /api/ws/upload:   {total / MiB / t_ws:7.1f} MiB/s  ratio {t_bare / t_ws:.2f}x (target >= 1.0x)")

            # What bounds the ratios: validating each photo and making its thumbnail means decoding
            # it (libjpeg's entropy decoding cannot be skipped, even at 1/8 scale).
            settings = Settings()
            with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
                t_ingest = best_of(
                    args.runs, lambda: list(pool.map(lambda f: ingest_image(f, "x.jpg", settings), files))
                )
            print(
                f"ingest alone (decode-validate + thumbnail, {os.cpu_count()} threads): "
                f"{total / MiB / t_ingest:7.1f} MiB/s = {t_bare / t_ingest:.2f}x the bare endpoint: "
                "no upload path that validates every photo can beat this on this machine"
            )

            # Memory: store ~100 MiB of distinct images and compare RSS growth with bytes held.
            session = client.post("/api/sessions").json()["session_id"]
            before_rss = server.rss_bytes()
            before_held = client.get("/api/health").json()["bytes_held"]
            for batch in range(2):
                more = [photo_like_jpeg(100 + batch * 10 + i) for i in range(10)]
                more_body, more_type = multipart_body(more, f"mem{batch}")
                response = client.post(
                    "/api/images",
                    params={"session_id": session},
                    content=more_body,
                    headers={"Content-Type": more_type},
                )
                assert len(response.json()["accepted"]) == len(more)
            held = client.get("/api/health").json()["bytes_held"] - before_held
            grown = server.rss_bytes() - before_rss
            print(
                f"memory: held {held / MiB:.1f} MiB, server RSS grew {grown / MiB:.1f} MiB: "
                f"{grown / held:.2f}x the bytes held (target <= 1.3x)"
            )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
