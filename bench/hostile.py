"""What each hostile input of issue 9 costs a real Darkroom server (``python -m ui.main``).

Per case: the status, server CPU seconds (the server process and every decode worker, including
workers that were replaced), the peak RSS growth of the server and its workers over the idle
baseline, wall time, and the worst ``/api/health`` latency seen meanwhile by a second client.
Targets (issue 9): every case at most 5 s CPU, 768 MiB peak growth, and health within 1 s.

    python -m bench.hostile            # every case
    python -m bench.hostile gif png    # cases whose name contains one of the words
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import threading
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests import hostile_builders as build  # noqa: E402
from tests.helpers import Raw, build_zip, deflate, free_port, make_jpeg  # noqa: E402
from tests.server_process import ServerProcess, descendants  # noqa: E402

MiB = 1024 * 1024
TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
TARGET_CPU, TARGET_RSS, TARGET_HEALTH = 5.0, 768 * MiB, 1.0


# -- what the server and its workers use, read from /proc --
def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None


def cpu_seconds(pid: int) -> float:
    """The server's CPU (with reaped children's) plus its live descendants'."""
    total = 0.0
    fields = _stat(pid)
    if fields:
        total += sum(int(v) for v in fields[11:15]) / TICKS  # utime stime cutime cstime
    for child in descendants(pid):
        if (child_fields := _stat(child)) is not None:
            total += (int(child_fields[11]) + int(child_fields[12])) / TICKS
    return total


def rss_bytes(pid: int) -> int:
    total = 0
    for process in {pid} | descendants(pid):
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            total += int(Path(f"/proc/{process}/statm").read_text().split()[1]) * PAGE
    return total


class Watch:
    """Samples RSS every 20 ms and times /api/health continuously while a case runs."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.stop = threading.Event()
        self.peak_rss = 0
        self.worst_health = 0.0

    def _rss(self) -> None:
        while not self.stop.is_set():
            self.peak_rss = max(self.peak_rss, rss_bytes(self.server.process.pid))
            time.sleep(0.02)

    def _health(self) -> None:
        with httpx.Client(timeout=60) as client:
            while not self.stop.is_set():
                started = time.perf_counter()
                client.get(f"{self.server.url}/api/health")
                self.worst_health = max(self.worst_health, time.perf_counter() - started)
                time.sleep(0.05)

    def __enter__(self) -> Watch:
        self.threads = [threading.Thread(target=self._rss), threading.Thread(target=self._health)]
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()


# -- the cases: each sends one hostile input to a fresh session and returns the status --
def _image(builder: Callable[[], bytes]) -> Callable[[str, str], str]:
    data = builder()

    def send(url: str, session: str) -> str:
        response = httpx.post(
            f"{url}/api/images", params={"session_id": session}, files={"files": ("x.img", data)}, timeout=300
        )
        return str(response.status_code)

    return send


def _features(builder: Callable[[], bytes]) -> Callable[[str, str], str]:
    upload = _image(builder)

    def send(url: str, session: str) -> str:
        status = upload(url, session)
        images = httpx.get(f"{url}/api/images", params={"session_id": session}, timeout=60).json()
        if not images:
            return status
        response = httpx.get(
            f"{url}/api/images/{images[0]['id']}/features", params={"session_id": session}, timeout=300
        )
        return f"{status}, features {response.status_code}"

    return send


def _zip_lying_sizes(url: str, session: str) -> str:
    bomb = deflate(bytes(25 * MiB))
    data = build_zip([Raw(f"{i:03}.jpg", payload=bomb, declared_size=1000, crc=0) for i in range(300)])
    response = httpx.post(
        f"{url}/api/images/zip", params={"session_id": session}, files={"file": ("a.zip", data)}, timeout=300
    )
    return str(response.status_code)


def _zip_of_hostile_images(url: str, session: str) -> str:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("grow.gif", build.gif_canvas_grow())
        bundle.writestr("frames.gif", build.gif_many_frames())
        bundle.writestr("cut.gif", build.gif_truncated_after_descriptor())
        bundle.writestr("ok.jpg", make_jpeg(seed=1))
    files = {"file": ("a.zip", archive.getvalue())}
    response = httpx.post(f"{url}/api/images/zip", params={"session_id": session}, files=files, timeout=300)
    return str(response.status_code)


def _tiny_multipart_parts(url: str, session: str) -> str:
    boundary = "b0undary"
    part = f'--{boundary}\r\nContent-Disposition: form-data; name="other"\r\n\r\nx\r\n'.encode()
    body = part * (20 * MiB // len(part)) + f"--{boundary}--\r\n".encode()
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    response = httpx.post(
        f"{url}/api/images", params={"session_id": session}, content=body, headers=headers, timeout=300
    )
    return str(response.status_code)


def _websocket_flood(url: str, session: str) -> str:
    """30 files of 24 MiB declared and sent as fast as the socket takes them."""
    from websockets.sync.client import connect

    chunk = bytes(8 * MiB)
    ws_url = url.replace("http://", "ws://") + f"/api/ws/upload?session_id={session}"
    statuses = []
    with connect(ws_url, compression=None, max_size=None, close_timeout=5) as ws:
        ws.recv(timeout=30)
        for index in range(30):
            ws.send(json.dumps({"filename": f"{index}.jpg", "size": 24 * MiB}))
            for _ in range(3):
                ws.send(chunk)
        ws.send(json.dumps({"type": "done"}))
        while True:
            message = json.loads(ws.recv(timeout=120))
            if message["type"] == "result":
                statuses.append(message["status"])
            if message["type"] in ("summary", "error"):
                break
    return ",".join(sorted({str(s) for s in statuses})) or "none"


def _websocket_deep_header(url: str, session: str) -> str:
    from websockets.sync.client import connect

    ws_url = url.replace("http://", "ws://") + f"/api/ws/upload?session_id={session}"
    with connect(ws_url, compression=None, max_size=None) as ws:
        ws.recv(timeout=30)
        ws.send("[" * 200_000)
        return str(json.loads(ws.recv(timeout=30)).get("status"))


def _session_flood(url: str, session: str) -> str:
    """12,000 sessions created and never used, past the default cap of 10,000."""
    with httpx.Client(timeout=30) as client:
        for created in range(12_000):
            response = client.post(f"{url}/api/sessions")
            if response.status_code != 201:
                return f"{response.status_code} after {created}"
    return "201 x 12000"


CASES: list[tuple[str, Callable[[str, str], str]]] = [
    ("gif_canvas_grow", _image(build.gif_canvas_grow)),
    ("gif_many_frames", _image(build.gif_many_frames)),
    ("gif_truncated_after_descriptor", _image(build.gif_truncated_after_descriptor)),
    ("apng_many_frames", _image(build.apng_many_frames)),
    ("png_many_chunks", _image(build.png_many_chunks)),
    ("jpeg_many_scans", _image(build.jpeg_many_scans)),
    ("jpeg_many_app_segments", _image(build.jpeg_many_app_segments)),
    ("tiff_overlapping_ifds", _image(build.tiff_overlapping_ifds)),
    ("tiff_ifd_without_size", _image(build.tiff_ifd_without_size)),
    ("tiff_huge_tiles", _image(build.tiff_huge_tiles)),
    ("tiff_float + features", _features(build.tiff_float)),
    ("bmp_rle_eol", _image(build.bmp_rle_eol)),
    ("webp_many_frames", _image(build.webp_many_frames)),
    ("webp_frame_outside_canvas", _image(build.webp_frame_outside_canvas)),
    ("png_blank + features", _features(build.png_blank)),
    ("zip_lying_sizes", _zip_lying_sizes),
    ("zip_of_hostile_images", _zip_of_hostile_images),
    ("multipart_tiny_parts", _tiny_multipart_parts),
    ("websocket_flood_30x24MiB", _websocket_flood),
    ("websocket_deep_header", _websocket_deep_header),
    ("session_flood", _session_flood),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("words", nargs="*", help="run only the cases whose name contains one of these")
    args = parser.parse_args()
    server = ServerProcess(free_port(), {"DARKROOM_MAX_SESSIONS": "10000"})
    failures = 0
    try:
        warm = httpx.post(f"{server.url}/api/sessions", timeout=60).json()["session_id"]
        params = {"session_id": warm}
        httpx.post(f"{server.url}/api/images", params=params, files={"files": ("w.jpg", make_jpeg())}, timeout=60)
        print(f"{'case':32} {'status':>16} {'CPU s':>7} {'peak +MiB':>10} {'wall s':>7} {'health s':>9}  verdict")
        for name, send in CASES:
            if args.words and not any(word in name for word in args.words):
                continue
            session = httpx.post(f"{server.url}/api/sessions", timeout=60).json()["session_id"]
            time.sleep(0.3)  # let the workers settle before the baseline
            pid = server.process.pid
            cpu_before, rss_before = cpu_seconds(pid), rss_bytes(pid)
            started = time.perf_counter()
            with Watch(server) as watch:
                status = send(server.url, session)
            wall = time.perf_counter() - started
            cpu = cpu_seconds(pid) - cpu_before
            growth = max(0, watch.peak_rss - rss_before)
            within = cpu <= TARGET_CPU and growth <= TARGET_RSS and watch.worst_health <= TARGET_HEALTH
            failures += not within
            print(
                f"{name:32} {status:>16} {cpu:7.2f} {growth / MiB:10.0f} {wall:7.2f} {watch.worst_health:9.3f}  "
                f"{'ok' if within else 'OVER TARGET'}",
                flush=True,
            )
            if server.process.poll() is not None:
                print("the server died:", server.output())
                break
            if name == "session_flood":
                continue
            httpx.delete(f"{server.url}/api/session", params={"session_id": session})
    finally:
        server.stop()
    print(f"targets: CPU <= {TARGET_CPU:g} s, peak growth <= {TARGET_RSS // MiB} MiB, health <= {TARGET_HEALTH:g} s")
    print("all cases within target" if not failures else f"{failures} case(s) over target")


if __name__ == "__main__":
    main()
