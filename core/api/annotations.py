"""The collaboration API: shared annotations per image, who is in the workspace, and a WebSocket
that streams the workspace's changes to scripts (and lists them in the page's presence).

- ``GET /api/images/{id}/annotations`` and ``PATCH`` it: ``{"tags", "rating", "note", "version",
  "updated_at", "updated_by"}``. Merge rules in ``core.annotations``. 404 for an image of another
  workspace; 409 with ``current`` for a stale ``expected_version``; 400/413/422 for bad input;
  429 when one client edits too fast.
- ``GET /api/annotations``: every annotated image and the workspace's tags (for autocomplete).
- ``GET /api/presence``: who is in the workspace.
- ``WS /api/ws/events``: a script joins the workspace's presence and receives its events as JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, WebSocket, WebSocketDisconnect, status
from fastapi.responses import JSONResponse, Response

from core import data_service
from core.annotations import (
    MAX_PATCH_BODY_BYTES,
    Annotations,
    StaleVersion,
    parse_patch,
    tag_counts,
)
from core.api.errors import end_socket, refuse_handshake, socket_error
from core.api.models import ERRORS
from core.api.session_middleware import Session
from core.clients import current_client
from core.errors import BadRequest, DarkroomError, NotFound, TooLarge
from core.events import EventQueue, bus
from core.presence import Member, presence

router = APIRouter(prefix="/api", tags=["collaboration"])

SCRIPT_AUTHOR = "a script"  # updated_by for an HTTP edit that names no member of the workspace
MAX_WS_MESSAGE_BYTES = MAX_PATCH_BODY_BYTES + 1024  # one annotate message with its envelope
log = logging.getLogger(__name__)
SEND_TIMEOUT_SECONDS = 30  # a script's socket that takes longer to accept an event is closed
MAX_QUEUED_EVENTS = 1000  # a script that does not read its events is disconnected, not buffered forever
ANNOTATION_EXAMPLE = {
    "tags": ["keep", "sharp"],
    "rating": 4,
    "note": "best of the series",
    "version": 7,
    "updated_at": "2026-11-30T05:00:00.000Z",
    "updated_by": "Blue Heron",
}
_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/json": {"example": ANNOTATION_EXAMPLE}}},
    400: ERRORS[400],
    404: ERRORS[404],
}


def _no_cache(body: dict[str, Any], status_code: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        body, status_code=status_code, headers={"Cache-Control": "private, no-store", **(headers or {})}
    )


async def _json_body(request: Request) -> object:
    received = bytearray()
    async for chunk in request.stream():
        received += chunk
        if len(received) > MAX_PATCH_BODY_BYTES:
            raise TooLarge(f"an annotation patch is at most {MAX_PATCH_BODY_BYTES // 1024} KiB of JSON")
    if not received:
        raise BadRequest('send a JSON object, e.g. {"tags_add": ["keep"], "rating": 4}')
    try:
        return json.loads(received)
    except (ValueError, RecursionError):  # nesting too deep is not valid JSON for us either
        raise BadRequest("the body is not valid JSON") from None


def _editor(session: str | None, client_id: str | None, request: Request) -> tuple[str, str]:
    """(author, rate-limit key) of an HTTP edit: the member named by ``X-Darkroom-Client`` if it is
    in this workspace, else a script keyed by its address."""
    member = presence.member(session, client_id) if session else None
    if member is not None:
        presence.seen(session, member.id)  # type: ignore[arg-type]
        return member.name, member.id
    host = request.client.host if request.client else "unknown"
    return SCRIPT_AUTHOR, f"http:{host}"


@router.get("/images/{image_id}/annotations", responses=_RESPONSES)
async def get_annotations(image_id: str, session: Session) -> JSONResponse:
    """The image's shared tags, rating (0-5 or null) and note, with the version to send back as
    ``expected_version`` and who changed them last."""
    annotations: Annotations = await data_service.run_store(data_service.get_annotations, image_id)
    return _no_cache(annotations.to_public())


@router.patch(
    "/images/{image_id}/annotations",
    responses={
        **_RESPONSES,
        409: {"description": "expected_version is stale: 'current' holds the annotations as they are"},
        413: ERRORS[413],
        422: {"description": "A value that is not allowed (a rating of 7, an empty tag)"},
        429: {"description": "Too many edits from this client; retry after Retry-After seconds"},
    },
)
async def patch_annotations(
    image_id: str,
    request: Request,
    session: Session,
    x_darkroom_client: Annotated[
        str | None, Header(description="Your member id from WS /api/ws/events, so edits carry your name")
    ] = None,
) -> JSONResponse:
    """Edit the image's annotations with a JSON object holding any of ``tags_add``, ``tags_remove``
    (lists of tags), ``rating`` (0-5, null clears), ``note`` and ``expected_version``. Tags merge as
    sets and an add wins over a concurrent remove; rating and note are last-writer-wins: with a
    stale ``expected_version`` they are refused (409, with ``current``). Every tab of the workspace
    shows the change at once."""
    patch = parse_patch(await _json_body(request))
    author, client = _editor(session, x_darkroom_client, request)
    result = await data_service.run_store(data_service.patch_annotations, image_id, patch, author, client)
    return _no_cache(result.to_public())  # a StaleVersion (409, ``current``) or RateLimited (429) is the app's


@router.get("/annotations", responses={400: ERRORS[400]})
async def list_annotations(session: Session) -> Response:
    """Every annotated image of the workspace (``images``: id -> annotations) and its tags, most used
    first (``tags``: ``[{"tag", "count"}]``)."""
    body = await data_service.in_store_thread(_annotations_body)  # a loop over the whole workspace
    return Response(body, media_type="application/json", headers={"Cache-Control": "private, no-store"})


def _annotations_body() -> bytes:
    """The encoded answer of ``GET /api/annotations`` for the current session (a store thread's work)."""
    found = data_service.list_annotations()
    body = {
        "images": {image_id: value.to_public() for image_id, value in found.items()},
        "tags": [{"tag": tag, "count": count} for tag, count in tag_counts(found)],
    }
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _session_required(session: str | None) -> str:
    if session is None:
        raise BadRequest("a session id is required: presence is per workspace")
    return session


@router.get("/presence", responses={400: ERRORS[400]})
async def get_presence(session: Session) -> JSONResponse:
    """Who is in the workspace: each open tab, and each script connected to ``WS /api/ws/events``
    now or in the last minute (``{"members": [{"id", "name", "colour", "kind"}]}``)."""
    members = presence.members(_session_required(session))
    return _no_cache({"members": [m.to_public() for m in members]})


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
                data_service.patch_annotations, image_id, patch, self.member.name, self.member.id
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
    if not await data_service.run_store(data_service.session_exists):
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
