"""A page of another web site cannot make a visitor's browser write here; scripts still can."""

from __future__ import annotations

import json

import httpx
import pytest
from fastapi import FastAPI
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from core.api.app import install
from core.api.origin import is_same_origin
from tests.helpers import LiveServer, listed, make_jpeg, new_session, upload
from ui.routes import install_routes

EVIL = "https://evil.example"
PHOTO = ("a.jpg", make_jpeg(seed=1))


def form_post(api, origin: str | None = None, fetch_site: str | None = None, session: str | None = None):
    """What a browser sends for an HTML form with a file input, with the headers it would add."""
    headers = {}
    if origin is not None:
        headers["Origin"] = origin
    if fetch_site is not None:
        headers["Sec-Fetch-Site"] = fetch_site
    params = {"session_id": session} if session else {}
    return api.post("/api/images", params=params, headers=headers, files=[("files", PHOTO)])


def own_origin(live_server, scheme: str = "http") -> str:
    return f"{scheme}://127.0.0.1:{live_server.port}"


def test_form_post_from_another_site_to_the_legacy_folder_is_403_and_writes_nothing(api, configure, tmp_path):
    settings = configure()
    response = form_post(api, origin=EVIL, fetch_site="cross-site")
    assert response.status_code == 403
    assert "another web site" in response.json()["detail"]
    assert listed(api, None) == []
    assert not settings.legacy_dir.exists() or not any(settings.legacy_dir.rglob("*.*"))


@pytest.mark.parametrize(
    ("origin", "fetch_site"),
    [
        (EVIL, None),  # an older browser: Origin only
        (None, "cross-site"),  # Sec-Fetch-Site only
        ("null", None),  # sandboxed frames, data: URLs, some redirects
        ("http://127.0.0.1:1", "same-site"),  # another port of the same host
        (None, "same-site"),  # another origin of the same site, no Origin to compare
        ("http://127.0.0.1.evil.example", None),
        ("not a url", None),
    ],
)
def test_writes_a_browser_marks_as_coming_from_elsewhere_are_refused(api, origin, fetch_site):
    session = new_session(api)
    response = form_post(api, origin=origin, fetch_site=fetch_site, session=session)
    assert response.status_code == 403
    assert listed(api, session) == []


def test_same_origin_page_can_upload(api, live_server):
    session = new_session(api)
    response = form_post(api, origin=own_origin(live_server), fetch_site="same-origin", session=session)
    assert response.status_code == 200


def test_same_origin_behind_a_tls_proxy_can_upload(api, live_server):
    session = new_session(api)
    response = form_post(api, origin=own_origin(live_server, "https"), session=session)
    assert response.status_code == 200


def test_user_typed_navigation_is_not_cross_site(api):
    session = new_session(api)
    assert form_post(api, fetch_site="none", session=session).status_code == 200


def test_scripts_that_send_neither_header_can_write(api, configure):
    configure()
    assert upload(api, None, PHOTO).status_code == 200
    assert len(listed(api, None)) == 1


def test_reads_from_another_site_are_not_checked(api):
    session = new_session(api)
    response = api.get("/api/images", params={"session_id": session}, headers={"Origin": EVIL})
    assert response.status_code == 200


def test_other_writes_are_refused_from_another_site(api):
    assert api.post("/api/sessions", headers={"Origin": EVIL}).status_code == 403
    session = new_session(api)
    assert upload(api, session, PHOTO).status_code == 200
    response = api.delete("/api/session", params={"session_id": session}, headers={"Sec-Fetch-Site": "cross-site"})
    assert response.status_code == 403
    assert len(listed(api, session)) == 1


def test_websocket_from_another_site_is_refused(api, live_server):
    session = new_session(api)
    url = f"{live_server.ws_url}/api/ws/upload?session_id={session}"
    with pytest.raises(InvalidStatus) as refused, connect(url, origin=EVIL, compression=None):
        pass
    assert refused.value.response.status_code == 403


def test_websocket_from_the_same_origin_and_from_scripts_is_served(api, live_server):
    session = new_session(api)
    url = f"{live_server.ws_url}/api/ws/upload?session_id={session}"
    for origin in (own_origin(live_server), None):
        with connect(url, origin=origin, compression=None) as ws:
            assert json.loads(ws.recv(timeout=10))["type"] == "ready"


@pytest.mark.parametrize(
    ("origin", "host", "same"),
    [
        ("http://example.com", "example.com", True),
        ("https://example.com", "example.com:443", True),
        ("https://Example.COM", "example.com", True),
        ("http://example.com:8080", "example.com:8080", True),
        ("https://example.com:8080", "example.com:8080", True),  # the scheme is not compared
        ("http://[::1]:8080", "[::1]:8080", True),
        ("http://example.com", "example.com:8080", False),
        ("http://example.com:8080", "example.com", False),
        ("http://example.com.evil.example", "example.com", False),
        ("http://user@example.com", "example.com", False),
        ("null", "example.com", False),
        ("file://", "example.com", False),
        ("http://example.com/path", "example.com", False),
        ("http://example.com:99999", "example.com", False),
        ("http://example.com", None, False),
    ],
)
def test_origin_matches_only_the_host_it_was_sent_to(origin, host, same):
    assert is_same_origin(origin, host) is same


@pytest.fixture(scope="module")
def page_server():
    """The page's own routes (drop zone upload and socket) on a bare app, without NiceGUI's page."""
    app = FastAPI()
    install(app)
    install_routes(app)
    server = LiveServer(app)
    server.start()
    yield server
    server.stop()


def test_page_upload_route_refuses_another_site_before_looking_at_the_token(page_server):
    with httpx.Client(base_url=page_server.url, timeout=30) as client:
        refused = client.post("/_darkroom/upload/no-such-page", headers={"Origin": EVIL}, files=[("files", PHOTO)])
        own = client.post(
            "/_darkroom/upload/no-such-page", headers={"Origin": page_server.url}, files=[("files", PHOTO)]
        )
    assert refused.status_code == 403
    assert own.status_code == 404  # past the check: the page is unknown


def test_page_upload_socket_refuses_another_site(page_server):
    with pytest.raises(InvalidStatus) as refused, connect(f"{page_server.ws_url}/_darkroom/ws/upload/x", origin=EVIL):
        pass
    assert refused.value.response.status_code == 403


def test_a_malformed_origin_is_refused_not_a_server_error(live_server):
    response = httpx.post(f"{live_server.url}/api/sessions", headers={"Origin": "http://["})
    assert response.status_code == 403


def test_the_session_and_the_check_apply_under_a_root_path():
    import asyncio

    from core.api.session_middleware import SessionScope
    from core.sessions import current_session_id

    seen: list[object] = []

    async def app(scope, receive, send):
        seen.append(current_session_id())

    session = "11111111-1111-4111-8111-111111111111"
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/darkroom/api/images",
        "root_path": "/darkroom",
        "query_string": f"session_id={session}".encode(),
        "headers": [(b"host", b"example.org")],
    }
    asyncio.run(SessionScope(app)(scope, None, None))
    assert seen == [session]
