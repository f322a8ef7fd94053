"""The one FastAPI dependency that sets ``CURRENT_SESSION_ID`` for a request or WebSocket."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Header, Query, WebSocketException
from starlette.requests import HTTPConnection

from core.errors import BadRequest
from core.sessions import InvalidSessionId, parse_session_id, session_scope


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


async def session_dependency(
    connection: HTTPConnection,
    session_id: Annotated[
        str | None,
        Query(description="Your workspace's session id (lowercase UUID4). Omit for the legacy shared folder."),
    ] = None,
    x_session_id: Annotated[
        str | None, Header(description="The session id, as an alternative to the query parameter.")
    ] = None,
) -> AsyncIterator[str | None]:
    """Enter ``session_scope`` for the whole request; everything below reads the ContextVar."""
    try:
        resolved = resolve_session_id(session_id, x_session_id)
    except BadRequest as exc:
        if connection.scope["type"] == "websocket":
            raise WebSocketException(code=1008, reason=exc.message) from None
        raise
    with session_scope(resolved) as current:
        yield current
