"""The workspace's live side for scripts: who is in it, and a WebSocket that streams its changes.

- ``GET /api/presence``: who is in the workspace.
- ``WS /api/ws/events``: a script joins the workspace's presence (listed in the page) and receives
  its events as JSON; it may also rename itself and annotate images.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Query, WebSocket, WebSocketDisconnect, status
from fastapi.responses import JSONResponse

from core import data_service, workspace
from core.annotations import MAX_PATCH_BODY_BYTES, StaleVersion, parse_patch
from core.api.errors import NO_STORE, end_socket, refuse_handshake, socket_error
from core.api.models import ERRORS
from core.api.session_middleware import Session
from core.clients import current_client
from core.errors import BadRequest, DarkroomError, NotFound, TooLarge
from core.events import EventQueue, bus
from core.presence import Member, presence

router = APIRouter(prefix="/api", tags=["collaboration"])

MAX_WS_MESSAGE_BYTES = MAX_PATCH_BODY_BYTES + 1024  # one annotate message with its envelope
SEND_TIMEOUT_SECONDS = 30  # a script's socket that takes longer to accept an event is closed
MAX_QUEUED_EVENTS = 1000  # a script that does not read its events is disconnected, not buffered forever
log = logging.getLogger(__name__)


def _session_required(session: str | None) -> str:
    if session is None:
        raise BadRequest("a session id is required: presence is per workspace")
    return session


@router.get("/presence", responses={400: ERRORS[400]})
async def get_presence(session: Session) -> JSONResponse:
    """Who is in the workspace: each open tab, and each script connected to ``WS /api/ws/events``
    now or in the last minute (``{"members": [{"id", "name", "colour", "kind"}]}``)."""
    members = presence.members(_session_required(session))
    return JSONResponse({"members": [m.to_public() for m in members]}, headers=NO_STORE)


# -- WebSocket: the workspace's events for scripts --
class _EventsSocket:
    """One script's events socket: forwards the workspace's events, answers its messages."""

    def __init__(self, websocket: WebSocket, session_id: str, member: Member) -> None:
        self.websocket = websocket
        self.session_id = session_id
        self.member = member
        self.send_lock = asyncio.Lock()

    async def send(self, message: dict[str, Any]) -> None:
        async with self.send_lock:
            await self.websocket.send_text(json.dumps(message, ensure_ascii=False))

    async def forward(self, queue: EventQueue) -> None:
        """Send the workspace's events; a script that stops reading is let go (its queue is bounded
        and a send that cannot finish within ``SEND_TIMEOUT_SECONDS`` closes the socket)."""
        try:
            while True:
                event = await queue.get()
                if queue.overflowed:
                    break
                await asyncio.wait_for(self.send({"type": event.kind, **event.data}), SEND_TIMEOUT_SECONDS)
        except (TimeoutError, WebSocketDisconnect, RuntimeError):
            pass
        except Exception:  # one bad event must not leave a socket open that gets nothing
            log.exception("could not forward an event to a script")
        with contextlib.suppress(Exception):
            await self.websocket.close(code=status.WS_1008_POLICY_VIOLATION, reason="events not read in time")

    async def handle(self, text: str) -> None:
        try:
            message = json.loads(text)
        except (ValueError, RecursionError):
            raise BadRequest('messages are JSON objects such as {"type": "ping"}') from None
        if not isinstance(message, dict):
            raise BadRequest("a message must be a JSON object with a 'type'")
        presence.seen(self.session_id, self.member.id)
        kind = message.get("type")
        if kind == "ping":
            await self.send({"type": "pong"})
        elif kind == "rename":
            self.member = presence.rename(self.session_id, self.member.id, message.get("name"))
            await self.send({"type": "renamed", "you": self.member.to_public()})
        elif kind == "annotate":
            await self.annotate(message)
        else:
            raise BadRequest("unknown message type; use ping, rename or annotate")

    async def annotate(self, message: dict[str, Any]) -> None:
        image_id = message.get("image_id")
        if not isinstance(image_id, str):
            raise BadRequest("'annotate' needs 'image_id' and 'patch'")
        try:
            patch = parse_patch(message.get("patch"))
            result = await data_service.run_store(
                workspace.patch_annotations, image_id, patch, self.member.name, self.member.id
            )
        except StaleVersion as exc:
            await self.send(socket_error(exc, image_id=image_id))
            return
        await self.send({"type": "annotated", "image_id": image_id, "annotations": result.to_public()})


@router.websocket("/ws/events")
async def websocket_events(
    websocket: WebSocket,
    session: Session,
    name: Annotated[str | None, Query(description="A name to show in the workspace's presence")] = None,
) -> None:
    """For scripts: join the workspace (listed in every tab's presence while connected and for a
    minute after) and receive its events as JSON: ``hello`` (you and the members), then
    ``image_added``, ``image_removed``, ``session_cleared``, ``progress``, ``annotation_changed``,
    ``presence_changed``. Send ``{"type": "ping"}``, ``{"type": "rename", "name": ...}`` or
    ``{"type": "annotate", "image_id": ..., "patch": {...}}``; a refused message gets
    ``{"type": "error", "status", "detail"}`` and the socket stays open."""
    if session is None:
        await refuse_handshake(websocket, BadRequest("a session id is required"))
        return
    if not await data_service.run_store(workspace.session_exists):
        await refuse_handshake(websocket, NotFound("no such workspace"))
        return
    await websocket.accept()
    queue, unsubscribe = bus.subscribe_queue(session, maxsize=MAX_QUEUED_EVENTS)
    try:
        member = await data_service.run_store(presence.join, session, "script", None, name, current_client())
    except DarkroomError as exc:
        unsubscribe()
        await end_socket(websocket, exc)
        return
    socket = _EventsSocket(websocket, session, member)
    forwarding: asyncio.Task[None] | None = None
    try:
        members = [m.to_public() for m in await data_service.run_store(presence.members, session)]
        await socket.send({"type": "hello", "you": member.to_public(), "members": members})
        forwarding = asyncio.create_task(socket.forward(queue))
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None:
                await socket.send(socket_error(BadRequest("send JSON text messages, not binary")))
                continue
            if len(text) > MAX_WS_MESSAGE_BYTES:
                await end_socket(websocket, TooLarge(f"a message is at most {MAX_WS_MESSAGE_BYTES // 1024} KiB"))
                return
            try:
                await socket.handle(text)
            except DarkroomError as exc:
                await socket.send(socket_error(exc))
    except (WebSocketDisconnect, RuntimeError):
        return
    finally:
        if forwarding is not None:
            forwarding.cancel()
        unsubscribe()
        await data_service.run_store(presence.leave, session, member.id)
