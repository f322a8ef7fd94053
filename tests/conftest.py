"""Shared fixtures: settings for tests, a real uvicorn server on a free port, HTTP helpers,
the file-write watch that proves uploads stay in RAM, and NiceGUI's ``user`` fixture."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from PIL import Image

from core import data_service
from core.api.app import create_app
from core.config import Settings
from tests.redis_server import MISSING as REDIS_MISSING
from tests.redis_server import RedisServer

pytest_plugins = ["nicegui.testing.user_plugin"]

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


@pytest.fixture(scope="session")
def live_server() -> Iterator[LiveServer]:
    server = LiveServer()
    server.start()
    yield server
    server.stop()


# Every test client is 127.0.0.1: the per-address shares (sessions, their rate, open uploads,
# decodes) would count the whole suite as one client. Tests of those shares set them again.
UNLIMITED_CLIENT = {
    "client_sessions": 10**9,
    "client_sessions_per_minute": 10**9,
    "client_uploads": 10**9,
    "decode_client_tasks": 10**9,
}


@pytest.fixture
def configure(tmp_path: Path) -> Callable[..., Settings]:
    """Rebuild the service's stores with test settings (legacy folder under tmp_path)."""

    def apply(**overrides: object) -> Settings:
        settings = dataclasses.replace(Settings(legacy_dir=tmp_path / "legacy", **UNLIMITED_CLIENT), **overrides)
        data_service.configure(settings)
        return settings

    apply()
    return apply


@pytest.fixture
def api(live_server: LiveServer, configure: Callable[..., Settings]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_server.url, timeout=30) as client:
        yield client


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


@pytest.fixture
def watch_writes() -> Iterator[list[str]]:
    FileWriteWatch.install()
    FileWriteWatch.writes = []
    FileWriteWatch.active = True
    try:
        yield FileWriteWatch.writes
    finally:
        FileWriteWatch.active = False


def big_jpeg() -> bytes:
    """A JPEG over 1 MiB: the size at which Starlette and NiceGUI spool to disk."""
    data = make_jpeg(1400, 1000, seed=5, quality=100)
    assert len(data) > 1024 * 1024
    return data


# -- a throw-away PostgreSQL cluster (Debian's postgresql package: initdb, pg_ctl) --
def _postgres_bin() -> Path | None:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    return candidates[-1].parent if candidates else None


def skip_or_fail(reason: str) -> None:
    """Locally a missing service skips with a reason; in CI (``CI=true``) it is a failure."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"cannot run in CI: {reason}", pytrace=False)
    pytest.skip(reason)


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


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    bindir = _postgres_bin()
    if bindir is None:
        skip_or_fail("PostgreSQL is not installed (apt-get install postgresql)")
    cluster = PostgresCluster(bindir)
    yield cluster
    cluster.stop()


# -- a throw-away redis-server (Debian's redis-server package), RAM only --
@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One ``redis-server --save '' --appendonly no`` on a free port for the whole run; tests that
    need a clean one call ``flush()`` (or use a database number of their own)."""
    if REDIS_MISSING:
        skip_or_fail(REDIS_MISSING)
    server = RedisServer()
    yield server
    server.close()


# -- the real server process and real Chromium, for the browser tests (tests/test_browser*.py) --
@pytest.fixture(scope="module")
def server() -> Iterator[object]:
    """``python -m ui.main`` on a free port, one per browser test module."""
    from tests.browser import ServerProcess

    process = ServerProcess(free_port(), {"DARKROOM_FEATURE_WORKERS": "1"})
    yield process
    process.stop()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Callable[[], object]]:
    """Opens separate headless Chromiums on demand (own profile and storage; downloads go to
    ``tmp_path/downloads``); all closed afterwards."""
    from tests.browser import chromium

    drivers: list[object] = []

    def open_browser() -> object:
        driver = chromium(download_dir=tmp_path / "downloads")
        drivers.append(driver)
        return driver

    yield open_browser
    for driver in drivers:
        with contextlib.suppress(Exception):  # a test may have closed it already
            driver.quit()
