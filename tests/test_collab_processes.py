"""Collaboration across two real ``darkroom`` processes on one real Redis (DARKROOM_STORAGE=redis):
presence lists the members of both, and an annotation changed through one process reaches a
script watching through the other, live. Locally skipped without redis-server; in CI it fails."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from websockets.sync.client import connect

from tests.helpers import free_port, make_jpeg, skip_or_fail
from tests.redis_server import MISSING as REDIS_MISSING
from tests.redis_server import RedisServer
from tests.server_process import ServerProcess

pytestmark = [pytest.mark.redis, pytest.mark.slow]  # two server processes and a Redis


def redis_env(url: str) -> dict[str, str]:
    return {
        "DARKROOM_STORAGE": "redis",
        "DARKROOM_REDIS_URL": url,
        "DARKROOM_FEATURE_WORKERS": "1",
        "DARKROOM_DECODE_WORKERS": "1",
    }


@pytest.fixture(scope="module")
def pair() -> Iterator[tuple[ServerProcess, ServerProcess]]:
    if REDIS_MISSING:
        skip_or_fail(REDIS_MISSING)
    redis_process = RedisServer()
    first = ServerProcess(free_port(), redis_env(redis_process.url()))
    try:
        second = ServerProcess(free_port(), redis_env(redis_process.url()))
    except BaseException:
        first.stop()
        redis_process.close()
        raise
    yield first, second
    first.stop()
    second.stop()
    redis_process.close()


def events(server: ServerProcess, session: str, name: str):
    return connect(f"ws://127.0.0.1:{server.port}/api/ws/events?session_id={session}&name={name}", compression=None)


def receive_until(ws, kind: str, accept=lambda message: True) -> dict:
    for _ in range(100):
        message = json.loads(ws.recv(timeout=20))
        if message["type"] == kind and accept(message):
            return message
    raise AssertionError(f"no {kind} message")


def test_presence_and_annotations_cross_processes(pair) -> None:
    first, second = pair
    session = httpx.post(f"{first.url}/api/sessions", timeout=30).json()["session_id"]
    files = {"files": ("a.jpg", make_jpeg(seed=50))}
    upload = httpx.post(f"{first.url}/api/images", params={"session_id": session}, files=files, timeout=60)
    image_id = upload.json()["accepted"][0]["id"]
    with events(first, session, "on-first") as on_first, events(second, session, "on-second") as on_second:
        receive_until(on_first, "hello")
        receive_until(on_second, "hello")
        # Each process lists both scripts, and the first one hears of the second's arrival.
        for server in (first, second):
            members = httpx.get(f"{server.url}/api/presence", params={"session_id": session}, timeout=30).json()
            assert sorted(m["name"] for m in members["members"]) == ["on-first", "on-second"]
        receive_until(on_first, "presence_changed", lambda m: len(m["members"]) == 2)
        # An edit through the second process reaches the script watching the first, live.
        response = httpx.patch(
            f"{second.url}/api/images/{image_id}/annotations",
            params={"session_id": session},
            json={"tags_add": ["keep"], "rating": 5},
            timeout=30,
        )
        assert response.status_code == 200
        change = receive_until(on_first, "annotation_changed")
        assert change["image_id"] == image_id and change["annotations"]["tags"] == ["keep"]
        got = httpx.get(f"{first.url}/api/images/{image_id}/annotations", params={"session_id": session}, timeout=30)
        assert got.json() == response.json()
    stranger = httpx.post(f"{second.url}/api/sessions", timeout=30).json()["session_id"]
    members = httpx.get(f"{first.url}/api/presence", params={"session_id": stranger}, timeout=30).json()
    assert members == {"members": []}
