"""Shared fixtures: settings for tests, a real uvicorn server on a free port, the file-write watch
that proves uploads stay in RAM, throw-away PostgreSQL and Redis servers, Chromium, and NiceGUI's
``user`` fixture. What tests import (helpers, builders, data paths) is in ``tests/helpers.py``."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI, WebSocket

from core import data_service
from core.api.ws_upload import serve_upload_socket
from core.config import Settings
from core.sessions import session_scope
from tests.helpers import (
    UNLIMITED_CLIENT,
    FileWriteWatch,
    LiveServer,
    PostgresCluster,
    free_port,
    postgres_bin,
    skip_or_fail,
)
from tests.redis_server import MISSING as REDIS_MISSING
from tests.redis_server import RedisServer

pytest_plugins = ["nicegui.testing.user_plugin"]

# A test that uses one of these fixtures needs what it starts; the mark lets ``-m`` pick or skip it.
FIXTURE_MARKS = {"browser": "browser", "postgres_cluster": "postgres", "redis_server": "redis"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests whose fixtures start Chromium, PostgreSQL or Redis (tests that reach one by
    ``getfixturevalue`` or start their own carry the mark themselves)."""
    for item in items:
        for fixture, mark in FIXTURE_MARKS.items():
            if fixture in getattr(item, "fixturenames", ()):
                item.add_marker(mark)


@pytest.fixture(scope="session")
def live_server() -> Iterator[LiveServer]:
    server = LiveServer()
    server.start()
    yield server
    server.stop()


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


@pytest.fixture
def watch_writes() -> Iterator[list[str]]:
    FileWriteWatch.install()
    FileWriteWatch.writes = []
    FileWriteWatch.active = True
    try:
        yield FileWriteWatch.writes
    finally:
        FileWriteWatch.active = False


# -- a throw-away PostgreSQL cluster (Debian's postgresql package: initdb, pg_ctl) --
@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    bindir = postgres_bin()
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


@pytest.fixture(scope="module")
def archive_socket() -> Iterator[LiveServer]:
    """The page's kind of upload socket (ZIPs unpacked), for a session named in the path."""
    app = FastAPI()

    @app.websocket("/ws/{session_id}")
    async def upload(websocket: WebSocket, session_id: str) -> None:
        with session_scope(session_id):
            await serve_upload_socket(websocket, archives=True)

    server = LiveServer(app)
    server.start()
    yield server
    server.stop()
