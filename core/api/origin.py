"""Writes from another web site are refused (cross-site request forgery).

Any page a visitor opens can make their browser POST a form to this server, and the legacy folder
needs no session id: without this check any site could fill it. Browsers tell where a request
comes from (``Sec-Fetch-Site``, ``Origin``); scripts (curl, httpx, websockets) send neither and
are let through. Only state-changing requests are checked: POST, PUT, PATCH, DELETE and every
WebSocket handshake (browsers do not apply the same-origin policy to WebSockets).

The server compares ``Origin`` with the ``Host`` the request was sent to, whatever the scheme,
so a TLS-terminating proxy in front works as long as it passes ``Host`` through unchanged.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.requests import HTTPConnection

from core.errors import DarkroomError

STATE_CHANGING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
_MESSAGE = (
    "refused: this request was sent by a page of another web site; use this site's own page, "
    "or a script (which sends no Origin header)"
)


class CrossSiteRequest(DarkroomError):
    """A browser sent a state-changing request on behalf of another site."""

    status_code = 403


def _host_and_port(netloc: str, scheme: str) -> tuple[str, int | None] | None:
    """``(host, port)`` of an authority, the scheme's default port filled in; None if malformed."""
    try:
        parts = urlsplit(f"//{netloc}")
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname or parts.username is not None or parts.password is not None:
        return None
    return parts.hostname.lower(), port if port is not None else _DEFAULT_PORTS.get(scheme)


def is_same_origin(origin: str, host: str | None) -> bool:
    """Whether an ``Origin`` header names the host (and port) the request was sent to. The scheme
    is not compared (a proxy may end TLS); ``null`` and anything malformed never match."""
    if not host:
        return False
    try:
        parts = urlsplit(origin.strip())
    except ValueError:  # "http://[": malformed, so never this site
        return False
    if parts.scheme not in ("http", "https") or parts.path or parts.query or parts.fragment:
        return False
    from_origin = _host_and_port(parts.netloc, parts.scheme)
    if from_origin is None:
        return False
    # Host carries no scheme: a port left out is the origin scheme's default.
    to_host = _host_and_port(host.strip(), parts.scheme)
    return to_host is not None and from_origin == to_host


def is_cross_site(connection: HTTPConnection) -> bool:
    """Whether a browser sent this request on behalf of a page of another origin."""
    headers = connection.headers
    fetch_site = headers.get("sec-fetch-site", "").strip().lower()
    origin = headers.get("origin")
    if fetch_site == "cross-site":
        return True
    if origin is not None:
        return not is_same_origin(origin, headers.get("host"))
    return fetch_site == "same-site"  # another origin of the same site, with no Origin to compare


def check_same_site(connection: HTTPConnection) -> None:
    """Raise CrossSiteRequest (403) for a state-changing request or WebSocket handshake from another
    site. GET and HEAD pass unchecked; requests with neither header (scripts) pass."""
    scope = connection.scope
    writes = scope["type"] == "websocket" or scope.get("method", "GET") in STATE_CHANGING_METHODS
    if writes and is_cross_site(connection):
        raise CrossSiteRequest(_MESSAGE)
