"""Sessions never see each other, and the ContextVar never leaks, under real concurrency."""

from __future__ import annotations

import asyncio
import random
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from core import data_service, workspace
from core.errors import BadRequest
from core.sessions import CURRENT_SESSION_ID, new_session_id, session_scope
from tests.helpers import make_jpeg


def test_twenty_sessions_doing_random_work_never_see_each_other(api, live_server):
    """20 clients at once upload, delete and list at random; every listing shows exactly the
    images that client itself holds, and no id of another session ever answers."""
    images_by_seed = {seed: make_jpeg(seed=seed) for seed in range(60)}
    failures: list[str] = []
    all_ids: dict[str, set[str]] = {}
    lock = threading.Lock()

    def worker(index: int) -> None:
        rng = random.Random(index)
        with httpx.Client(base_url=live_server.url, timeout=30) as client:
            session = client.post("/api/sessions").json()["session_id"]
            mine: dict[str, str] = {}
            for _ in range(25):
                action = rng.random()
                if action < 0.45 or not mine:
                    seed = rng.randrange(60)
                    name = f"s{index}-{seed}.jpg"
                    body = client.post(
                        "/api/images", params={"session_id": session}, files=[("files", (name, images_by_seed[seed]))]
                    ).json()
                    for record in body["accepted"]:
                        mine[record["id"]] = record["filename"]
                        with lock:
                            all_ids.setdefault(session, set()).add(record["id"])
                elif action < 0.65:
                    image_id = rng.choice(sorted(mine))
                    status = client.delete(f"/api/images/{image_id}", params={"session_id": session}).status_code
                    if status != 204:
                        failures.append(f"delete of own image gave {status}")
                    mine.pop(image_id)
                else:
                    listed = client.get("/api/images", params={"session_id": session}).json()
                    if {r["id"]: r["filename"] for r in listed} != mine:
                        failures.append(f"session {index} listed something other than its own images")
                    with lock:
                        foreign = [i for s, ids in all_ids.items() if s != session for i in ids]
                    if foreign:
                        probe = rng.choice(foreign)
                        status = client.get(f"/api/images/{probe}", params={"session_id": session}).status_code
                        if status != 404:
                            failures.append(f"session {index} read another session's image ({status})")

    with ThreadPoolExecutor(max_workers=20) as pool:
        list(pool.map(worker, range(20)))
    assert failures == []
    assert len(all_ids) == 20


async def test_context_var_never_leaks_between_concurrent_tasks():
    """Interleaved tasks each see only the session they entered, before and after awaits."""
    seen: list[tuple[str, str | None]] = []

    async def handler(session_id: str) -> None:
        with session_scope(session_id):
            for _ in range(20):
                await asyncio.sleep(random.random() / 1000)
                seen.append((session_id, CURRENT_SESSION_ID.get()))
                inner = await asyncio.to_thread(CURRENT_SESSION_ID.get)  # copied into the thread
                seen.append((session_id, inner))
        seen.append(("after", CURRENT_SESSION_ID.get()))

    await asyncio.gather(*(handler(new_session_id()) for _ in range(30)))
    assert all(expected == actual for expected, actual in seen if expected != "after")
    assert all(actual is None for expected, actual in seen if expected == "after")


def test_context_var_is_set_per_request_and_reset_after(api, live_server):
    """Concurrent requests with different sessions each list their own image; a request with no
    session afterwards on the same connections falls back to the legacy folder, not a leftover."""
    sessions = [new_session_id() for _ in range(10)]
    for index, session in enumerate(sessions):
        api.post(
            "/api/images", params={"session_id": session}, files=[("files", (f"{index}.jpg", make_jpeg(seed=index)))]
        )

    def check(index: int) -> bool:
        listed = api.get("/api/images", params={"session_id": sessions[index % 10]}).json()
        return [r["filename"] for r in listed] == [f"{index % 10}.jpg"]

    with ThreadPoolExecutor(max_workers=10) as pool:
        assert all(pool.map(check, range(100)))
    assert api.get("/api/images").json() == []  # legacy folder is empty: nothing leaked into it


def test_service_refuses_to_guess_the_session_in_a_plain_thread(configure):
    """Work handed to a thread without the context sees no session (legacy), never another's."""
    configure(legacy_fallback=False)
    session = new_session_id()
    with session_scope(session):
        data_service.save_uploaded_images([("a.jpg", make_jpeg())])
        result: list[object] = []
        thread = threading.Thread(target=lambda: result.append(_try_list()))
        thread.start()
        thread.join()
    assert result and isinstance(result[0], BadRequest)


def _try_list() -> object:
    try:
        return workspace.list_images()
    except BadRequest as exc:
        return exc


def test_session_scope_rejects_malformed_ids():
    from core.sessions import InvalidSessionId

    for bad in ["x", "3F2B8C1E-9A4D-4C7E-8F00-1234567890AB", "../etc"]:
        with pytest.raises(InvalidSessionId), session_scope(bad):
            pass
