"""One session setter per way in: ``SessionScope`` (the API), ``PageSession`` (the page's token
routes) and ``tab_scope`` (the UI's event handlers). No other module of the app enters
``session_scope``, and the page's setter holds the session for the whole response."""

from __future__ import annotations

import ast
import asyncio
import json
from pathlib import Path

import pytest

import ui.routes
from core.sessions import LEGACY_KEY, current_session_id, new_session_id
from ui.routes import PAGE_GONE, PageSession, token_in

ROOT = Path(__file__).resolve().parent.parent
SETTERS = {"core/sessions.py", "core/api/session_middleware.py", "ui/routes.py", "ui/session.py"}


def _modules_entering_session_scope() -> set[str]:
    found = set()
    for path in [*ROOT.joinpath("core").rglob("*.py"), *ROOT.joinpath("ui").rglob("*.py")]:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            called = node.func if isinstance(node, ast.Call) else None
            name = getattr(called, "id", None) or getattr(called, "attr", None)
            if name == "session_scope":
                found.add(path.relative_to(ROOT).as_posix())
    return found


def test_only_the_three_setters_enter_session_scope() -> None:
    assert _modules_entering_session_scope() <= SETTERS
    assert {"core/api/session_middleware.py", "ui/routes.py", "ui/session.py"} <= _modules_entering_session_scope()


def test_one_legacy_key() -> None:
    import core.api.export
    import core.data_service
    import core.inflight

    assert core.data_service.LEGACY_KEY is core.inflight.LEGACY_KEY is core.api.export.LEGACY_KEY is LEGACY_KEY


@pytest.mark.parametrize(
    ("path", "token"),
    [
        ("/_darkroom/upload/abc", "abc"),
        ("/_darkroom/thumbnail/abc/img1", "abc"),
        ("/_darkroom/archive/abc", "abc"),
        ("/_darkroom/ws/upload/abc", "abc"),
        ("/_darkroom/archive/", None),
        ("/_darkroom/", None),
    ],
)
def test_the_token_is_read_from_the_path(path: str, token: str | None) -> None:
    assert token_in(path) == token


def _run(app, scope: dict, messages: list[dict] | None = None) -> list[dict]:
    """Call the ASGI ``app`` once; what it sent."""
    inbox = list(messages or [{"type": "http.request", "body": b"", "more_body": False}])
    sent: list[dict] = []

    async def receive() -> dict:
        return inbox.pop(0) if inbox else {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


def _scope(path: str, kind: str = "http", method: str = "GET", headers: list | None = None) -> dict:
    return {
        "type": kind,
        "path": path,
        "method": method,
        "headers": headers or [],
        "query_string": b"",
        "root_path": "",
    }


@pytest.fixture
def page_of(monkeypatch):
    """The token "live" stands for a page of a fresh session; every lookup is recorded."""
    session_id = new_session_id()
    looked_up: list[str] = []

    def lookup(token: str) -> str | None:
        looked_up.append(token)
        return session_id if token == "live" else None

    monkeypatch.setattr(ui.routes, "session_for_token", lookup)
    return session_id, looked_up


def test_the_page_session_is_held_for_the_whole_streamed_response(page_of) -> None:
    session_id, _ = page_of
    seen: list[str | None] = []

    async def streaming_app(scope, receive, send) -> None:
        seen.append(current_session_id())
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for _ in range(3):
            await asyncio.sleep(0)
            seen.append(current_session_id())
            await send({"type": "http.response.body", "body": b"x", "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    _run(PageSession(streaming_app), _scope("/_darkroom/archive/live"))
    assert seen == [session_id] * 4
    assert current_session_id() is None  # reset afterwards


def test_a_gone_page_gets_404_json_and_no_route_runs(page_of) -> None:
    ran = []

    async def app(scope, receive, send) -> None:
        ran.append(scope["path"])

    sent = _run(PageSession(app), _scope("/_darkroom/thumbnail/gone/img"))
    assert not ran
    assert sent[0]["status"] == 404
    assert json.loads(sent[1]["body"]) == {"detail": PAGE_GONE}
    closed = _run(
        PageSession(app), _scope("/_darkroom/ws/upload/gone", kind="websocket"), [{"type": "websocket.connect"}]
    )
    assert closed == [{"type": "websocket.close", "code": 1008}] and not ran


def test_a_write_from_another_site_is_refused_before_the_token_is_looked_at(page_of) -> None:
    _, looked_up = page_of

    async def app(scope, receive, send) -> None:
        raise AssertionError("the route must not run")

    evil = [(b"origin", b"https://evil.example"), (b"host", b"darkroom.example")]
    sent = _run(PageSession(app), _scope("/_darkroom/upload/live", method="POST", headers=evil))
    assert sent[0]["status"] == 403 and not looked_up


def test_paths_outside_the_page_routes_pass_untouched(page_of) -> None:
    _, looked_up = page_of
    seen = []

    async def app(scope, receive, send) -> None:
        seen.append(current_session_id())

    _run(PageSession(app), _scope("/api/images"))
    assert seen == [None] and not looked_up
