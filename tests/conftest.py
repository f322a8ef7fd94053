"""Shared fixtures: settings for tests, a real uvicorn server on a free port, HTTP helpers."""

from __future__ import annotations

import dataclasses
import io
import socket
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

DATA = Path(__file__).parent / "data"
HOSTILE = DATA / "hostile"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    """The bare API app served by a real uvicorn in a background thread."""

    def __init__(self, app: object | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app or create_app(), host="127.0.0.1", port=self.port, log_level="info", ws_per_message_deflate=False
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


@pytest.fixture
def configure(tmp_path: Path) -> Callable[..., Settings]:
    """Rebuild the service's stores with test settings (legacy folder under tmp_path)."""

    def apply(**overrides: object) -> Settings:
        settings = dataclasses.replace(Settings(legacy_dir=tmp_path / "legacy"), **overrides)
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
