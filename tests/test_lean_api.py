"""The lean request path: a plain FastAPI app is the ASGI root and NiceGUI is mounted on it, so
``/api`` answers skip NiceGUI's middleware; memory-mode reads run on the event loop without a
thread hop; records serialise once, to the same JSON as before."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from core import data_service
from core.api.app import create_app
from core.config import Settings
from tests.helpers import free_port, listed, make_jpeg, new_session, upload
from tests.server_process import ServerProcess

LOOP_ROUNDS = 1000
RECORD_FIELDS = ["id", "filename", "format", "width", "height", "size_bytes", "sha256", "uploaded_at"]


# -- the real server, as ``darkroom`` runs it --
@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    process = ServerProcess(free_port())
    yield process
    process.stop()


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        yield http


@pytest.fixture(scope="module")
def workspace(client: httpx.Client) -> str:
    """A session holding three photos: its listing is larger than GZip's minimum size."""
    session_id = new_session(client)
    for seed in range(3):
        assert upload(client, session_id, (f"photo-{seed}.jpg", make_jpeg(seed=seed))).status_code == 200
    return session_id


def test_api_answers_skip_niceguis_gzip_while_the_page_keeps_it(client: httpx.Client, workspace: str) -> None:
    gzip = {"Accept-Encoding": "gzip"}
    listing = client.get("/api/images", params={"session_id": workspace}, headers=gzip)
    assert listing.status_code == 200
    assert len(listing.content) > 500  # GZipMiddleware's minimum size: it would compress this
    assert "content-encoding" not in listing.headers
    page = client.get("/", headers=gzip)
    assert page.status_code == 200
    assert page.headers.get("content-encoding") == "gzip"
    assert "<title>Darkroom</title>" in page.text


def test_the_docs_and_the_schema_are_served_by_the_root(client: httpx.Client) -> None:
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    assert "/api/images" in spec["paths"]
    assert not [path for path in spec["paths"] if not path.startswith("/api/")]  # no page routes
    listing = spec["paths"]["/api/images"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert listing["type"] == "array"
    item = spec["components"]["schemas"][listing["items"]["$ref"].rsplit("/", 1)[1]]
    assert set(RECORD_FIELDS) <= set(item["required"])


def test_unknown_api_paths_and_methods_get_json_not_the_page(client: httpx.Client) -> None:
    missing = client.get("/api/no-such-thing")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/json"
    assert "detail" in missing.json()
    wrong_method = client.put("/api/images")
    assert wrong_method.status_code == 405
    assert "detail" in wrong_method.json()
    assert client.get("/no-such-page").status_code == 404  # the page's own 404 is NiceGUI's


def test_listing_json_is_the_records_public_fields_in_compact_json(client: httpx.Client) -> None:
    session_id = new_session(client)
    accepted = upload(client, session_id, ("näme €.jpg", make_jpeg(seed=7))).json()["accepted"][0]
    assert list(accepted) == RECORD_FIELDS
    response = client.get("/api/images", params={"session_id": session_id})
    [item] = response.json()
    assert {key: item[key] for key in RECORD_FIELDS} == accepted
    assert list(item)[: len(RECORD_FIELDS)] == RECORD_FIELDS
    assert response.content == json.dumps(response.json(), ensure_ascii=False, separators=(",", ":")).encode()
    assert listed(client, session_id) == response.json()


# -- reads and the event loop's worker threads (in-process, on the test's own loop) --
@pytest.fixture
async def one_worker_thread() -> AsyncIterator[threading.Event]:
    """The loop's default executor with a single thread, which the test can hold busy: a call that
    hops to a worker thread cannot finish until the returned event is set."""
    loop = asyncio.get_running_loop()
    executor = ThreadPoolExecutor(max_workers=1)
    loop.set_default_executor(executor)
    release = threading.Event()
    yield release
    release.set()
    executor.shutdown(wait=True)


async def hold_the_worker(release: threading.Event) -> asyncio.Future[bool]:
    busy = asyncio.get_running_loop().run_in_executor(None, release.wait)
    await asyncio.sleep(0)
    return busy


async def spin_the_loop() -> None:
    """Let the event loop run many rounds, far more than an in-process request on it needs (no
    clock involved: a read that waits for a held worker thread stays unfinished however long)."""
    for _ in range(LOOP_ROUNDS):
        await asyncio.sleep(0)


@pytest.fixture
async def api() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


async def seeded_session(api: httpx.AsyncClient) -> tuple[str, str]:
    session_id = (await api.post("/api/sessions")).json()["session_id"]
    files = [("files", ("a.jpg", make_jpeg(seed=3)))]
    response = await api.post("/api/images", params={"session_id": session_id}, files=files)
    assert response.status_code == 200, response.text
    return session_id, response.json()["accepted"][0]["id"]


async def test_memory_mode_reads_answer_while_every_worker_thread_is_busy(
    configure: Callable[..., Settings], one_worker_thread: threading.Event, api: httpx.AsyncClient
) -> None:
    configure(storage="memory")
    session_id, image_id = await seeded_session(api)
    busy = await hold_the_worker(one_worker_thread)
    params = {"session_id": session_id}
    for path in ["/api/images", f"/api/images/{image_id}", f"/api/images/{image_id}/thumbnail", "/api/health"]:
        read = asyncio.create_task(api.get(path, params=params))
        await spin_the_loop()
        assert read.done(), f"{path} waited for a worker thread"
        assert read.result().status_code == 200, path
    assert not busy.done()  # the worker was held all along: every read ran on the loop


async def test_disk_mode_reads_still_leave_the_loop_for_a_store_thread(
    configure: Callable[..., Settings], api: httpx.AsyncClient, tmp_path: Path
) -> None:
    configure(storage="disk", storage_dir=tmp_path / "storage", store_threads=1)
    session_id, _ = await seeded_session(api)
    release = threading.Event()
    busy = asyncio.ensure_future(data_service.in_store_thread(release.wait))  # holds the only store thread
    try:
        listing = asyncio.create_task(api.get("/api/images", params={"session_id": session_id}))
        await spin_the_loop()
        assert not listing.done()  # it waits for the store's thread: the file reads never block the loop
    finally:
        release.set()
    await busy
    assert (await listing).status_code == 200


def test_the_page_mount_adapter_fails_loudly_when_nicegui_mounts_otherwise() -> None:
    """``leave_api_to_the_api`` depends on how ``ui.run_with`` mounts NiceGUI: with no such mount,
    or two, it raises rather than leaving the page in front of the API."""
    from fastapi import FastAPI
    from nicegui import app as nicegui_app
    from starlette.routing import Mount

    from ui.server import _PageMount, leave_api_to_the_api

    bare = FastAPI()
    with pytest.raises(RuntimeError, match="found 0"):
        leave_api_to_the_api(bare)
    twice = FastAPI()
    twice.router.routes.extend([Mount("/", app=nicegui_app), Mount("/", app=nicegui_app)])
    with pytest.raises(RuntimeError, match="found 2"):
        leave_api_to_the_api(twice)
    once = FastAPI()
    once.router.routes.append(Mount("/", app=nicegui_app))
    leave_api_to_the_api(once)
    assert [type(route) for route in once.router.routes if isinstance(route, Mount)] == [_PageMount]
