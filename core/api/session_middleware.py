"""The session of an API request or WebSocket: ``SessionScope``, the ASGI middleware in front of every
``/api`` route that sets ``CURRENT_SESSION_ID`` for it (the API's one session setter) and refuses
cross-site writes.

It reads ``?session_id=`` and ``X-Session-Id`` straight from the connection and enters
``session_scope`` around the whole request (reset afterwards, so nothing leaks), instead of a FastAPI
dependency with declared parameters: FastAPI's parameter and generator-dependency machinery cost
more than the rest of a listing (profiled; see bench/api.py). ``document_session`` adds the two
parameters to the OpenAPI document; routes that need the id itself take ``Session``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from core.api.errors import refuse
from core.api.origin import check_same_site
from core.errors import BadRequest, DarkroomError
from core.sessions import InvalidSessionId, current_session_id, parse_session_id, session_scope

API_PREFIX = "/api"
SESSION_QUERY = "session_id"
SESSION_HEADER = "X-Session-Id"
# Operations that never read a session: the OpenAPI document does not offer one there.
SESSIONLESS_OPERATIONS = {("post", "/api/sessions"), ("get", "/api/health"), ("get", "/api/features/catalog")}


def resolve_session_id(query_value: str | None, header_value: str | None) -> str | None:
    """The session id from ``?session_id=`` or ``X-Session-Id`` (None: legacy). Raises BadRequest
    for a malformed id or two different ids; the message never repeats what was sent."""
    values = {v for v in (query_value, header_value) if v is not None}
    if not values:
        return None
    if len(values) > 1:
        raise BadRequest("the session_id query parameter and the X-Session-Id header disagree")
    try:
        return parse_session_id(values.pop())
    except InvalidSessionId as exc:
        raise BadRequest(str(exc)) from None


def route_path(scope: Scope) -> str:
    """The request's path without the app's root path, as the router matches it."""
    path, root = scope["path"], scope.get("root_path", "")
    if root and path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
        return path[len(root) :]
    return path


class SessionScope:
    """ASGI middleware: for every HTTP request and WebSocket under ``prefix``, refuse a write sent by
    another site's page (403; WebSocket: close 1008), then enter ``session_scope`` for the whole
    request; everything below reads the ContextVar. A malformed id gets 400 (WebSocket: 1008)."""

    def __init__(self, app: ASGIApp, prefix: str = API_PREFIX) -> None:
        self.app = app
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):  # lifespan
            await self.app(scope, receive, send)
            return
        path = route_path(scope)  # without the root path, as the router sees it
        if not (path == self.prefix or path.startswith(self.prefix + "/")):
            await self.app(scope, receive, send)
            return
        connection = HTTPConnection(scope)
        try:
            check_same_site(connection)
            session_id = resolve_session_id(
                connection.query_params.get(SESSION_QUERY), connection.headers.get(SESSION_HEADER)
            )
        except DarkroomError as exc:
            await refuse(exc, scope, receive, send)
            return
        with session_scope(session_id):
            await self.app(scope, receive, send)


async def current_session() -> str | None:
    """The session ``SessionScope`` entered (for routes that need the id itself)."""
    return current_session_id()


Session = Annotated[str | None, Depends(current_session)]

_SESSION_PARAMETERS: list[dict[str, Any]] = [
    {
        "name": SESSION_QUERY,
        "in": "query",
        "required": False,
        "description": "Your workspace's session id (lowercase UUID4). Omit for the legacy shared folder.",
        "schema": {"type": "string", "format": "uuid"},
    },
    {
        "name": SESSION_HEADER,
        "in": "header",
        "required": False,
        "description": "The session id, as an alternative to the query parameter.",
        "schema": {"type": "string", "format": "uuid"},
    },
]


def document_session(app: FastAPI) -> None:
    """Add the two session parameters to every API operation of ``app``'s OpenAPI document."""
    build: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            for path, operations in schema.get("paths", {}).items():
                if not path.startswith("/api/"):
                    continue
                for method, operation in operations.items():
                    if (method, path) not in SESSIONLESS_OPERATIONS:
                        operation["parameters"] = [*operation.get("parameters", []), *_SESSION_PARAMETERS]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
