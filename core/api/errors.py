"""How a ``DarkroomError`` reaches a client: the only place that builds an error answer.

``error_response`` is the HTTP answer, used by the app's exception handler and by the ASGI
middlewares that refuse a request before any route runs (an exception raised there would pass
the app's handlers by). ``socket_error`` is the same error as a WebSocket message, and
``end_socket`` sends it and closes with the error's close code.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi.responses import JSONResponse
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from core.errors import DarkroomError

NO_STORE = {"Cache-Control": "private, no-store"}  # an error is about this request, never to be reused
CLOSE_REASON_CHARS = 120  # a close frame's reason is at most 123 bytes


def error_response(exc: DarkroomError, headers: Mapping[str, str] | None = None) -> JSONResponse:
    """``{"detail": message, **fields}`` with the error's status and headers (``Retry-After``),
    plus ``headers`` (a 405's ``Allow``)."""
    return JSONResponse(exc.body(), status_code=exc.status_code, headers={**NO_STORE, **exc.headers, **(headers or {})})


async def refuse(exc: DarkroomError, scope: Scope, receive: Receive, send: Send) -> None:
    """An ASGI middleware's refusal before any route runs: ``error_response``, or for a WebSocket a
    close before the handshake (the client sees an HTTP 403, which carries no reason)."""
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": exc.close_code})
        return
    await error_response(exc)(scope, receive, send)


def socket_error(exc: DarkroomError, **context: Any) -> dict[str, Any]:
    """``{"type": "error", "status", **context, "detail", **fields}``, plus ``retry_after`` (whole
    seconds, as the HTTP header) when the error says when to try again."""
    message: dict[str, Any] = {"type": "error", "status": exc.status_code, **context, **exc.body()}
    if exc.retry_after_seconds is not None:
        message["retry_after"] = exc.retry_after_seconds
    return message


async def end_socket(
    websocket: WebSocket, exc: DarkroomError, send: Callable[[dict[str, Any]], Awaitable[None]] | None = None
) -> None:
    """Tell an accepted socket's client ``exc`` (through ``send`` when the socket has its own
    sender), then close with its close code; a client already gone is no error."""
    with contextlib.suppress(RuntimeError, WebSocketDisconnect):
        if send is None:
            await websocket.send_text(json.dumps(socket_error(exc)))
        else:
            await send(socket_error(exc))
        await websocket.close(code=exc.close_code, reason=exc.message[:CLOSE_REASON_CHARS])


async def refuse_handshake(websocket: WebSocket, exc: DarkroomError) -> None:
    """Refuse a socket before accepting it: the client sees an HTTP 403, which carries no message,
    so the close code and reason are for logs and for servers that pass them on."""
    await websocket.close(code=exc.close_code, reason=exc.message[:CLOSE_REASON_CHARS])
