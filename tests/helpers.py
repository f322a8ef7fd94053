"""What tests and benchmarks import: a real uvicorn server on a free port, HTTP helpers, small
images, the file-write watch that proves uploads stay in RAM, ZIPs written byte by byte and a
throw-away PostgreSQL cluster. The fixtures are in ``conftest.py``, which only pytest imports."""

from __future__ import annotations

import io
import json
import os
import select
import socket
import struct
import sys
import threading
import time
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from PIL import Image
from websockets.sync.client import connect

from core.api.app import create_app
from core.config import Settings
from core.ingest import IngestedImage, ingest_image
from core.storage.base import ImageStore
from core.storage.disk import FolderStore, SessionFolders
from core.storage.memory import MemoryStore
from core.storage.sql import SqlStore

DATA = Path(__file__).parent / "data"
HOSTILE = DATA / "hostile"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    """The bare API app served by a real uvicorn in a background thread, with the product's
    bounded request heads (``settings``' limits; the defaults without)."""

    def __init__(self, app: object | None = None, settings: Settings | None = None, ws: str = "auto") -> None:
        from core.api.heads import head_limited_protocol

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app or create_app(),
            host="127.0.0.1",
            port=self.port,
            log_level="info",
            ws=ws,
            ws_per_message_deflate=False,
            http=head_limited_protocol(settings or Settings()),
            proxy_headers=False,  # as ui.main: the client address is core.clients' to decide
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


# Every test client is 127.0.0.1: the per-address shares (sessions, their rate, open uploads,
# decodes) would count the whole suite as one client. Tests of those shares set them again.
UNLIMITED_CLIENT = {
    "client_sessions": 10**9,
    "client_sessions_per_minute": 10**9,
    "client_uploads": 10**9,
    "decode_client_tasks": 10**9,
}


def new_session(client: httpx.Client) -> str:
    response = client.post("/api/sessions")
    assert response.status_code == 201
    return response.json()["session_id"]


def upload(client: httpx.Client, session_id: str | None, *files: tuple[str, bytes]) -> httpx.Response:
    params = {"session_id": session_id} if session_id else {}
    return client.post("/api/images", params=params, files=[("files", (name, data)) for name, data in files])


def upload_zip(client: httpx.Client, session_id: str | None, data: bytes, name: str = "a.zip") -> httpx.Response:
    params = {"session_id": session_id} if session_id else {}
    return client.post("/api/images/zip", params=params, files={"file": (name, data)})


def listed(client: httpx.Client, session_id: str | None) -> list[dict]:
    params = {"session_id": session_id} if session_id else {}
    response = client.get("/api/images", params=params)
    assert response.status_code == 200
    return response.json()


def make_jpeg(width: int = 64, height: int = 48, seed: int = 0, quality: int = 90) -> bytes:
    """A small distinct JPEG (different seeds give different bytes)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(out, "JPEG", quality=quality)
    return out.getvalue()


def hostile(name: str) -> bytes:
    return (HOSTILE / name).read_bytes()


_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC | getattr(os, "O_TMPFILE", 0)


class FileWriteWatch:
    """Records every file opened for writing, in any thread, while active (an audit hook cannot
    be removed, so one is installed per process and switched on and off)."""

    installed = False
    active = False
    writes: list[str] = []
    lock = threading.Lock()

    @classmethod
    def hook(cls, event: str, args: tuple) -> None:
        if not cls.active or event != "open":
            return
        path, mode, flags = (list(args) + [None, None, None])[:3]
        if isinstance(path, int):  # an fd already open (a pipe to a worker); opening a file is caught
            return
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags & _WRITE_FLAGS
        )
        if writing:
            with cls.lock:
                cls.writes.append(f"{path!r} mode={mode!r} flags={flags!r}")

    @classmethod
    def install(cls) -> None:
        if not cls.installed:
            sys.addaudithook(cls.hook)
            cls.installed = True


def big_jpeg() -> bytes:
    """A JPEG over 1 MiB: the size at which Starlette and NiceGUI spool to disk."""
    data = make_jpeg(1400, 1000, seed=5, quality=100)
    assert len(data) > 1024 * 1024
    return data


def skip_or_fail(reason: str) -> None:
    """Locally a missing service skips with a reason; in CI (``CI=true``) it is a failure."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"cannot run in CI: {reason}", pytrace=False)
    pytest.skip(reason)


# -- a throw-away PostgreSQL cluster (Debian's postgresql package: initdb, pg_ctl) --
def postgres_bin() -> Path | None:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    return candidates[-1].parent if candidates else None


class PostgresCluster:
    def __init__(self, bindir: Path) -> None:
        import pwd
        import subprocess
        import tempfile

        self.bindir = bindir
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="darkroom-pg-"))
        self.data = self.folder / "data"
        # initdb refuses to run as root: run the cluster as the package's postgres user then.
        self.prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self.folder, owner.pw_uid, owner.pw_gid)
        run = subprocess.run
        run(
            [
                *self.prefix,
                str(bindir / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "darkroom",
                "--auth=trust",
                "-E",
                "UTF8",
            ],
            check=True,
            capture_output=True,
        )
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        run(
            [
                *self.prefix,
                str(bindir / "pg_ctl"),
                "-D",
                str(self.data),
                "-o",
                options,
                "-w",
                "-l",
                str(self.folder / "log"),
                "start",
            ],
            check=True,
            capture_output=True,
        )
        self.url = f"postgresql://darkroom@127.0.0.1:{self.port}/postgres"

    def new_database(self) -> str:
        """A fresh, empty database on the cluster (one per test keeps tests apart)."""
        import uuid

        import psycopg

        name = f"t{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url, autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url.rsplit("/", 1)[0] + f"/{name}"

    def stop(self) -> None:
        import shutil
        import subprocess

        subprocess.run(
            [*self.prefix, str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"],
            capture_output=True,
        )
        shutil.rmtree(self.folder, ignore_errors=True)


# -- ZIPs written field by field (the archive tests and bench/hostile.py) --
@dataclass(frozen=True)
class Raw:
    """One member as the builder writes it; every field the headers carry can be made to lie."""

    name: str
    content: bytes = b""
    method: int = zipfile.ZIP_DEFLATED
    declared_size: int | None = None  # default: len(content)
    payload: bytes | None = None  # the bytes stored after the local header; default: content, deflated
    crc: int | None = None  # default: the content's CRC-32


def deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush()


def build_zip(members: list[Raw], *, zip64: bool = False, header_offsets: list[int] | None = None) -> bytes:
    """A ZIP written field by field. ``zip64`` stores every size and offset in ZIP64 extra fields
    behind a ZIP64 end record; ``header_offsets`` points central-directory entries anywhere."""
    body = bytearray()
    central = bytearray()
    for index, member in enumerate(members):
        if member.payload is not None:
            payload = member.payload
        else:
            payload = deflate(member.content) if member.method == zipfile.ZIP_DEFLATED else member.content
        size = len(member.content) if member.declared_size is None else member.declared_size
        crc = zlib.crc32(member.content) if member.crc is None else member.crc
        name = member.name.encode()
        offset = len(body) if header_offsets is None else header_offsets[index]
        local = struct.pack(
            "<4sHHHHHIIIHH", b"PK\x03\x04", 45, 0, member.method, 0, 0, crc, len(payload), size, len(name), 0
        )
        body += local + name + payload
        extra = b""
        csize, usize, at = len(payload), size, offset
        if zip64:
            extra = struct.pack("<HHQQQ", 1, 24, usize, csize, at)
            csize = usize = at = 0xFFFFFFFF
        central += struct.pack(
            "<4sHHHHHHIIIHHHHHII",
            b"PK\x01\x02",
            45,
            45,
            0,
            member.method,
            0,
            0,
            crc,
            csize,
            usize,
            len(name),
            len(extra),
            0,
            0,
            0,
            0,
            at,
        )
        central += name + extra
    count, cd_size, cd_offset = len(members), len(central), len(body)
    out = body + central
    if zip64:
        record_at = len(out)
        out += struct.pack("<4sQHHIIQQQQ", b"PK\x06\x06", 44, 45, 45, 0, 0, count, count, cd_size, cd_offset)
        out += struct.pack("<4sIQI", b"PK\x06\x07", 0, record_at, 1)
        out += struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    else:
        out += struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, count, count, cd_size, cd_offset, 0)
    return bytes(out)


# -- raw HTTP and the upload socket --


def raw_post(port: int, path: str, headers: dict[str, str], body_size: int, chunk: bytes) -> tuple[int, bytes, int]:
    """Stream a body chunk by chunk; stop as soon as the server answers. Returns the status,
    the response body and how many body bytes were sent."""
    sock = socket.create_connection(("127.0.0.1", port))
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {body_size}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    sock.sendall(head.encode())
    sent = 0
    response = b""
    sock.setblocking(False)  # send what the server takes, and stop once it has answered
    try:
        while sent < body_size:
            readable, writable, _ = select.select([sock], [sock], [], 10)
            if not readable and not writable:
                raise TimeoutError("the server neither reads the body nor answers")
            if readable:
                response += sock.recv(65536)
                break  # an answer, or the connection closed
            sent += sock.send(chunk[: body_size - sent])
    except (BrokenPipeError, ConnectionResetError, BlockingIOError):
        pass
    sock.settimeout(10)
    try:
        while b"\r\n\r\n" not in response or len(response.split(b"\r\n\r\n", 1)[1]) < _content_length(response):
            data = sock.recv(65536)
            if not data:
                break
            response += data
    except (ConnectionResetError, TimeoutError):
        pass
    sock.close()
    status = int(response.split(b" ", 2)[1])
    return status, response.split(b"\r\n\r\n", 1)[1], sent


def _content_length(response: bytes) -> int:
    for line in response.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":")[1])
    return 0


def ws_connect(live_server, session_id: str | None = None, **kwargs):
    query = f"?session_id={session_id}" if session_id else ""
    return connect(f"{live_server.ws_url}/api/ws/upload{query}", compression=None, **kwargs)


def send_file(ws, name: str, data: bytes, chunk: int = 64 * 1024) -> list[dict]:
    ws.send(json.dumps({"filename": name, "size": len(data)}))
    for start in range(0, len(data), chunk):
        ws.send(data[start : start + chunk])
    messages = []
    while True:
        message = json.loads(ws.recv(timeout=20))
        messages.append(message)
        if message["type"] in ("result", "error"):
            return messages


# -- the store contract's stores (tests/test_store_contract.py, tests/test_annotations.py) --


A = "11111111-1111-4111-8111-111111111111"
B = "22222222-2222-4222-8222-222222222222"


def image(seed: int = 0, name: str | None = None) -> IngestedImage:
    return ingest_image(make_jpeg(seed=seed), name or f"photo{seed}.jpg", Settings())


StoreFactory = Callable[..., ImageStore]


SESSION_STORES = [
    "memory",
    "disk",
    "sqlite",
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("redis", marks=pytest.mark.redis),
]


def store_factory(kind: str, request: pytest.FixtureRequest, tmp_path) -> StoreFactory:
    def factory(quota: int = 10**9, capacity: int = 10**9) -> ImageStore:
        if kind == "memory":
            return MemoryStore(quota, capacity)
        if kind == "disk":
            return SessionFolders(tmp_path / "images", quota, capacity)
        if kind == "sqlite":
            return SqlStore(f"sqlite:///{tmp_path / 'darkroom.db'}", str(tmp_path / "blobs"), quota, capacity)
        if kind == "postgres":
            url = request.getfixturevalue("postgres_cluster").new_database()
            return SqlStore(url, str(tmp_path / "blobs"), quota, capacity)
        if kind == "redis":
            from core.storage.redis import RedisStore  # redis-py is needed only here

            server = request.getfixturevalue("redis_server")
            server.flush()
            return RedisStore(server.url(), quota, capacity)
        return FolderStore(tmp_path / "legacy", quota)

    return factory


def gallery_cards(user) -> dict[str, dict]:
    """What the page's gallery shows, for NiceGUI's ``user`` fixture: image id -> card, in order.
    The cards are one component (``ui.gallery.GalleryGrid``), not elements ``user.should_see`` finds."""
    (grid,) = user.find(marker="gallery").elements
    return grid.cards


async def cards_named(user, *names: str, shown: bool = True, retries: int = 100) -> dict[str, dict]:
    """Wait until the gallery has a card named each of ``names`` (``shown=False``: none of them)
    and return the cards by name."""
    import asyncio  # the user fixture's tests are async; the rest of this module is not

    for _ in range(retries):
        by_name = {card["name"]: card for card in gallery_cards(user).values()}
        if all((name in by_name) == shown for name in names):
            return by_name
        await asyncio.sleep(0.05)
    raise AssertionError(f"the gallery {'lacks' if shown else 'still has'} one of {names}: {sorted(by_name)}")


# -- the contract suites of the event relay, the invite book and the presence mirror --
ADAPTERS = ["local", pytest.param("redis", marks=pytest.mark.redis)]


def flushed_redis_url(request: pytest.FixtureRequest, db: int) -> str:
    """The URL of database ``db``, emptied, on the run's throw-away redis-server."""
    server = request.getfixturevalue("redis_server")
    server.flush(db)
    return server.url(db)


class Clock:
    """A clock a test sets by hand (``now``), for ``Presence(clock=..., wall=...)``."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def jpeg_with_exif_thumbnail(
    photo: Image.Image | bytes, thumbnail: Image.Image, orientation: int = 1, order: str = "<"
) -> bytes:
    """A JPEG of ``photo`` (an image, or a JPEG's bytes) whose EXIF block (APP1) holds, as cameras
    write it, IFD0 with the ``orientation`` and IFD1 pointing at a JPEG of ``thumbnail``, in byte
    order ``order`` ("<" for "II", ">" for "MM"). Written by hand: Pillow writes no IFD1."""
    small, big = io.BytesIO(), io.BytesIO()
    thumbnail.save(small, "JPEG", quality=90)
    if isinstance(photo, bytes):
        big.write(photo)
    else:
        photo.save(big, "JPEG", quality=90)
    entry = struct.Struct(order + "HHII")  # tag, type, count, value (a SHORT sits in the first 2 bytes)
    short = 1 << 16 if order == ">" else 1  # a SHORT value of 1 read as the entry's 4-byte field
    ifd0_at, ifd1_at = 8, 8 + 2 + entry.size + 4
    thumbnail_at = ifd1_at + 2 + 3 * entry.size + 4
    tiff = b"".join(
        [
            (b"II" if order == "<" else b"MM") + struct.pack(order + "HI", 42, ifd0_at),
            struct.pack(order + "H", 1),
            entry.pack(0x0112, 3, 1, orientation * short),
            struct.pack(order + "I", ifd1_at),
            struct.pack(order + "H", 3),
            entry.pack(0x0103, 3, 1, 6 * short),  # Compression: JPEG
            entry.pack(0x0201, 4, 1, thumbnail_at),  # JPEGInterchangeFormat
            entry.pack(0x0202, 4, 1, len(small.getvalue())),  # JPEGInterchangeFormatLength
            struct.pack(order + "I", 0),
            small.getvalue(),
        ]
    )
    app1 = b"\xff\xe1" + struct.pack(">H", 2 + 6 + len(tiff)) + b"Exif\0\0" + tiff
    return big.getvalue()[:2] + app1 + big.getvalue()[2:]
