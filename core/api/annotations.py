"""The annotations API: shared tags, rating, pick and note per image (presence and the events socket
are in ``core.api.live``).

- ``GET /api/images/{id}/annotations`` and ``PATCH`` it: ``{"tags", "rating", "pick", "note", "version",
  "updated_at", "updated_by"}``. Merge rules in ``core.annotations``. 404 for an image of another
  workspace; 409 with ``current`` for a stale ``expected_version``; 400/413/422 for bad input;
  429 when one client edits too fast.
- ``GET /api/annotations``: every annotated image and the workspace's tags (for autocomplete).
- ``PATCH /api/annotations``: a batch of edits (keep the best of a burst, reject the rest), each
  answered on its own.
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse, Response

from core import data_service, workspace
from core.annotations import (
    MAX_BATCH_BODY_BYTES,
    MAX_PATCH_BODY_BYTES,
    Annotations,
    parse_batch,
    parse_patch,
    tag_counts,
)
from core.api.models import ERRORS
from core.api.session_middleware import Session
from core.errors import BadRequest, TooLarge
from core.presence import presence

router = APIRouter(prefix="/api", tags=["collaboration"])

# X-Darkroom-Client: who edits, so that edits carry a member's name (and its rate limit)
MemberHeader = Annotated[
    str | None, Header(description="Your member id from WS /api/ws/events, so edits carry your name")
]
SCRIPT_AUTHOR = "a script"  # updated_by for an HTTP edit that names no member of the workspace
ANNOTATION_EXAMPLE = {
    "tags": ["keep", "sharp"],
    "rating": 4,
    "pick": "picked",
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


async def _body_bytes(request: Request, limit: int = MAX_PATCH_BODY_BYTES, what: str = "an annotation patch") -> bytes:
    received = bytearray()
    async for chunk in request.stream():
        received += chunk
        if len(received) > limit:
            raise TooLarge(f"{what} is at most {limit // 1024} KiB of JSON")
    if not received:
        raise BadRequest('send a JSON object, e.g. {"tags_add": ["keep"], "rating": 4}')
    return bytes(received)


def _decoded(received: bytes) -> object:
    try:
        return json.loads(received)
    except (ValueError, RecursionError):  # nesting too deep is not valid JSON for us either
        raise BadRequest("the body is not valid JSON") from None


async def _json_body(request: Request) -> object:
    return _decoded(await _body_bytes(request))


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
    annotations: Annotations = await data_service.run_store(workspace.get_annotations, image_id)
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
    x_darkroom_client: MemberHeader = None,
) -> JSONResponse:
    """Edit the image's annotations with a JSON object holding any of ``tags_add``, ``tags_remove``
    (lists of tags), ``rating`` (0-5, null clears), ``pick`` (``"picked"``, ``"rejected"``, null
    clears), ``note`` and ``expected_version``. Tags merge as sets and an add wins over a concurrent
    remove; rating, pick and note are last-writer-wins: with a
    stale ``expected_version`` they are refused (409, with ``current``). Every tab of the workspace
    shows the change at once."""
    patch = parse_patch(await _json_body(request))
    author, client = _editor(session, x_darkroom_client, request)
    result = await data_service.run_store(workspace.patch_annotations, image_id, patch, author, client)
    return _no_cache(result.to_public())  # a StaleVersion (409, ``current``) or RateLimited (429) is the app's


@router.get("/annotations", responses={400: ERRORS[400]})
async def list_annotations(session: Session) -> Response:
    """Every annotated image of the workspace (``images``: id -> annotations) and its tags, most used
    first (``tags``: ``[{"tag", "count"}]``)."""
    body = await data_service.in_store_thread(_annotations_body)  # a loop over the whole workspace
    return Response(body, media_type="application/json", headers={"Cache-Control": "private, no-store"})


def _annotations_body() -> bytes:
    """The encoded answer of ``GET /api/annotations`` for the current session (a store thread's work)."""
    found = workspace.list_annotations()
    body = {
        "images": {image_id: value.to_public() for image_id, value in found.items()},
        "tags": [{"tag": tag, "count": count} for tag, count in tag_counts(found)],
    }
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


@router.patch(
    "/annotations",
    responses={
        200: {"description": "One result per edit, in order: its annotations, or that image's error"},
        400: ERRORS[400],
        413: ERRORS[413],
        422: {"description": "An edit with a value that is not allowed; nothing of the batch is applied"},
        429: {"description": "Too many edits from this client; nothing of the batch is applied"},
    },
)
async def patch_many_annotations(
    request: Request,
    session: Session,
    x_darkroom_client: MemberHeader = None,
) -> JSONResponse:
    """A batch of edits, ``{"edits": [{"image_id": ..., <patch fields>}, ...]}``, at most 300:
    "keep the best of this burst, reject the rest" in one call. Every edit is checked first (a bad
    one refuses the batch, naming it); the batch costs one edit of the rate limit per 10 it holds,
    all or nothing. Then each edit is applied on its own and answered on its own in ``results``:
    ``{"image_id", "annotations"}``, or ``{"image_id", "status", "detail"}`` (404 an image deleted
    meanwhile, 409 with ``current``, 413 too many tags)."""
    received = await _body_bytes(request, MAX_BATCH_BODY_BYTES, "a batch of annotation edits")
    edits = await asyncio.to_thread(lambda: parse_batch(_decoded(received)))  # up to 1 MiB of JSON: off the loop
    author, client = _editor(session, x_darkroom_client, request)
    # up to MAX_BATCH_EDITS stores and events: a store thread's loop, never the event loop's
    outcomes = await data_service.in_store_thread(workspace.patch_many, edits, author, client)
    results = [
        {"image_id": image_id, "annotations": outcome.to_public()}
        if isinstance(outcome, Annotations)
        else {"image_id": image_id, "status": outcome.status_code, **outcome.body()}
        for image_id, outcome in outcomes
    ]
    return _no_cache({"results": results})
