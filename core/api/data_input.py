"""The data API: sessions, uploads (multipart, ZIP, WebSocket), images, health.

Routes stay thin: they read bytes and hand each part to the one upload pipeline (``core.uploads``);
reads go to ``core.workspace``. Decoding (validation, thumbnails) runs in the decode sandbox's
worker processes; storage I/O in the store's own threads
(``data_service.in_store_thread`` copies the context, so the session set by ``SessionScope`` is what
the service sees there too). Upload bodies are read through ``core.inflight``: one slot of the
client address's share, the budget for bytes in flight, the minimum rate; work done for an upload
stops when its client leaves.
"""

from __future__ import annotations

import asyncio
from urllib.parse import quote

from fastapi import APIRouter, Request, Response, WebSocket
from fastapi.responses import JSONResponse

from core import data_service, formats, restore, uploads, workspace
from core.api.models import (
    ERRORS,
    Health,
    ListedImageModel,
    SessionCreated,
    UploadResult,
    ZipUploadResult,
)
from core.api.multipart import boundary_of, iter_file_parts
from core.api.session_middleware import Session
from core.api.ws_upload import serve_upload_socket
from core.clients import current_client
from core.errors import BadRequest, ClientGone, DarkroomError, TooLarge
from core.inflight import IncomingBody, Reservation, receiving
from core.ingest import clean_filename
from core.presence import presence
from core.sessions import new_session_id
from core.storage.base import ImageRecord
from core.units import format_bytes

router = APIRouter(prefix="/api")

_MULTIPART_SLACK = 1024 * 1024  # part headers and boundaries around the file bytes
_ZIP_TYPES = {"application/zip", "application/x-zip-compressed", "application/octet-stream"}


def content_disposition(filename: str, disposition: str = "inline") -> str:
    """RFC 6266 header: an ASCII fallback plus the exact name in RFC 5987 encoding."""
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\;' else "_" for c in filename) or "image"
    return f"{disposition}; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def _image_response(body: bytes, media_type: str, filename: str | None = None) -> Response:
    headers = {"X-Content-Type-Options": "nosniff", "Cache-Control": "private, no-store"}
    if filename is not None:
        headers["Content-Disposition"] = content_disposition(filename)
    return Response(content=body, media_type=media_type, headers=headers)


def _mime(record: ImageRecord) -> str:
    return formats.get(record.format).mime


def upload_response(body: dict[str, object], report: uploads.UploadReport) -> JSONResponse:
    """An upload's answer: 503 only when every file was refused for a busy server (the decoders),
    and then with ``Retry-After`` like every other 503. When an archive held Darkroom's
    ``annotations.json``, ``annotations`` says what was restored and skipped (``core.restore``)."""
    retry_after = report.retry_after
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    if report.restore is not None:
        body = {**body, "annotations": report.restore.to_public()}
    return JSONResponse(body, status_code=report.status_code, headers=headers)


async def restores(request: Request) -> bool:
    """Whether this upload's archives restore their ``annotations.json``: asked for with
    ``restore_annotations=true`` (400 for a value that is not true or false), or the workspace
    held nothing when the upload began (the round trip into a new workspace)."""
    if restore.parse_flag(request.query_params.get(restore.RESTORE_QUERY)):
        return True
    return await data_service.run_store(workspace.session_bytes_held) == 0


@router.post("/sessions", response_model=SessionCreated, status_code=201, tags=["sessions"])
async def create_session() -> SessionCreated:
    """A new private workspace. Keep the id secret: whoever has it sees the workspace."""
    session_id = new_session_id()
    await data_service.run_store(workspace.start_session, session_id, sessions_only=True)
    return SessionCreated(session_id=session_id)


@router.post(
    "/images",
    response_model=UploadResult,
    responses={k: v for k, v in ERRORS.items() if k != 404},
    tags=["images"],
)
async def upload_images(request: Request) -> JSONResponse:
    """Upload images as multipart/form-data, one or more parts named ``files``.

    Each file is checked on its own: the answer lists what was accepted, rejected (with the
    status it alone would get) and already present. 200 when anything was accepted, otherwise
    the status of the first rejection. A file over the size limit stops the upload at once (413)
    and nothing of it is stored. (``restore_annotations`` is for the ZIP routes: photos sent here
    are never unpacked.)"""
    report = await receive_files(request)
    return upload_response(UploadResult.body(report), report)


async def receive_files(request: Request, archives: bool = False, progressive: bool = False) -> uploads.UploadReport:
    """Stream the multipart parts named ``files`` into the current session, validating each while
    the next arrives. With ``archives``, a part that is a ZIP archive is unpacked (the page's drop
    zone takes photos and archives together). Files are stored in the order sent: all at the end
    (so a limit breach mid-stream stores nothing), or with ``progressive`` each as soon as it and
    those before it are ready (the page shows every photo as it lands).

    The request takes one of its address's upload slots and its body comes out of the budget for
    bytes in flight (503 with ``Retry-After`` past either), must arrive at the minimum rate (408),
    and a part's bytes are given back as it is stored. When the client leaves, pending decodes are
    cancelled and nothing more is stored.

    An archive holding Darkroom's ``annotations.json`` restores its annotations into a workspace
    that held nothing when the upload began, or when the query asks ``restore_annotations=true``."""
    boundary = boundary_of(request)
    restore_notes = await restores(request) if archives else False
    with receiving(request) as body:
        return await _receive_parts(request, body, boundary, archives, progressive, restore_notes)


async def _receive_parts(
    request: Request, body: IncomingBody, boundary: bytes, archives: bool, progressive: bool, restore_notes: bool
) -> uploads.UploadReport:
    settings = data_service.settings()
    in_validation = data_service.sandbox().one_caller  # more waits: the body is not read meanwhile
    largest = max(settings.max_file_bytes, settings.zip_max_archive_bytes) if archives else settings.max_file_bytes
    report = uploads.UploadReport()
    pending: list[asyncio.Task[tuple[list[uploads.Prepared], list[uploads.Skipped]]]] = []
    part_bytes: list[int] = []  # each pending part's size, given back to the budget once it is stored
    committed = 0

    async def commit_in_order(wait: bool) -> None:
        nonlocal committed
        while committed < len(pending) and (wait or pending[committed].done()):
            items, skipped = await pending[committed]
            committed += 1
            report.skipped.extend(skipped)
            await uploads.store(items, report, restore_notes)
            body.reservation.release(part_bytes[committed - 1])

    try:
        async for part in iter_file_parts(
            request,
            boundary,
            {"files"},
            max_file_bytes=settings.max_file_bytes,
            max_files=settings.max_files_per_request,
            max_body_bytes=max(settings.session_quota_bytes, largest) + _MULTIPART_SLACK,
            max_archive_bytes=settings.zip_max_archive_bytes if archives else None,
            chunks=body.chunks(),
        ):
            upload = uploads.Part.arrived(part.data, part.filename, archives)
            report.parts.append(clean_filename(part.filename))
            unpacked = await _cover_members(body.reservation, upload.data) if upload.archive else 0
            pending.append(asyncio.create_task(uploads.prepare_part(upload)))
            part_bytes.append(len(upload.data) + unpacked)
            if progressive:
                await commit_in_order(wait=False)
            busy = [task for task in pending[committed:] if not task.done()]
            if len(busy) >= in_validation:
                await asyncio.wait(busy, return_when=asyncio.FIRST_COMPLETED)
        if not pending:
            raise BadRequest("no files were sent: use one or more form parts named 'files'")
        await body.unless_client_leaves(commit_in_order(wait=True))
    except ClientGone:  # nobody reads the answer: stop the decodes, store nothing more
        for task in pending[committed:]:
            task.cancel()
        # their threads let go of the bytes before the budget gets them back
        await asyncio.gather(*pending[committed:], return_exceptions=True)
        raise
    except DarkroomError as exc:
        if progressive:  # every file that arrived whole before the failure is kept
            await commit_in_order(wait=True)
        for task in pending[committed:]:
            task.cancel()
        stored = len(report.accepted)
        outcome = f"the {stored} file(s) before it were stored" if stored else "nothing was stored"
        raise exc.with_message(f"{exc.message}; {outcome}") from None
    except BaseException:
        for task in pending[committed:]:
            task.cancel()
        raise
    return report


def _archive_too_large(limit: int) -> TooLarge:
    return TooLarge(f"the archive is over the {format_bytes(limit)} limit; nothing was stored")


async def _read_body(body: IncomingBody, limit: int) -> bytes:
    declared = body.request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _archive_too_large(limit)
    chunks: list[bytes] = []
    received = 0
    async for chunk in body.chunks():
        received += len(chunk)
        if received > limit:
            raise _archive_too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def _cover_members(reservation: Reservation, archive: bytes) -> int:
    """Reserve what the archive's members unpack to, beside the archive; returns the bytes reserved."""
    unpacked = await uploads.unpacked_size(archive)
    await reservation.grow(unpacked)
    return unpacked


async def _store_archive(archive: bytes, reservation: Reservation, restore_notes: bool) -> uploads.UploadReport:
    """Unpack, validate and store a ZIP archive in the current session (and, with
    ``restore_notes``, its ``annotations.json``); cancelled (the client left), nothing more of it
    is inflated or decoded and its queued decodes are cancelled."""
    await _cover_members(reservation, archive)
    prepared, skipped = await uploads.prepare_archive(archive)
    report = uploads.UploadReport(skipped=skipped)
    return await uploads.store(prepared, report, restore_notes)


@router.post(
    "/images/zip",
    response_model=ZipUploadResult,
    responses={k: v for k, v in ERRORS.items() if k != 404},
    tags=["images"],
)
async def upload_zip(request: Request) -> JSONResponse:
    """Upload a ZIP archive: a multipart part named ``file``, or the raw archive as an
    ``application/zip`` body. Unsafe archives are refused whole (422); each image inside is
    checked like a single upload; members that are not images are listed in ``skipped``.

    Darkroom's own archive (``GET /api/images/archive``) comes back with its annotations: its
    ``annotations.json`` is applied to the images it names (tags, rating, note, pick) when the
    workspace held nothing before, or anyway with ``?restore_annotations=true``; ``annotations``
    in the answer says what was restored and what was skipped."""
    limit = data_service.settings().zip_max_archive_bytes
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    multipart = content_type == "multipart/form-data"
    if not multipart and content_type not in _ZIP_TYPES:
        raise BadRequest("send the archive as multipart/form-data (part 'file') or as an application/zip body")
    boundary = boundary_of(request) if multipart else b""
    restore_notes = await restores(request)
    with receiving(request) as body:
        if multipart:
            parts = [
                part
                async for part in iter_file_parts(
                    request,
                    boundary,
                    {"file"},
                    max_file_bytes=limit,
                    max_files=1,
                    max_body_bytes=limit + _MULTIPART_SLACK,
                    chunks=body.chunks(),
                )
            ]
            if not parts:
                raise BadRequest("no archive was sent: use a form part named 'file'")
            archive = parts[0].data
        else:
            archive = await _read_body(body, limit)
        report = await body.unless_client_leaves(_store_archive(archive, body.reservation, restore_notes))
    return upload_response(ZipUploadResult.body(report), report)


@router.get("/images", response_model=list[ListedImageModel], responses={400: ERRORS[400]}, tags=["images"])
async def list_images() -> Response:
    """The workspace's images, in upload order, each with its shared ``annotations``."""
    # Each record is serialised once; the decorator's response_model documents the shape.
    return Response(await workspace.listing_json_async(), media_type="application/json")


@router.get(
    "/images/{image_id}",
    response_class=Response,
    responses={
        200: {"content": {"image/*": {}}, "description": "The original bytes"},
        400: ERRORS[400],
        404: ERRORS[404],
    },
    tags=["images"],
)
async def get_image(image_id: str) -> Response:
    """The original file, byte for byte, with its real Content-Type."""
    record, body = await data_service.run_store(workspace.load_image, image_id)
    return _image_response(body, _mime(record), record.filename)


@router.get(
    "/images/{image_id}/thumbnail",
    response_class=Response,
    responses={
        200: {"content": {"image/jpeg": {}, "image/png": {}}, "description": "The upright preview"},
        400: ERRORS[400],
        404: ERRORS[404],
    },
    tags=["images"],
)
async def get_thumbnail(image_id: str) -> Response:
    """The preview made at upload (longest side 256 px by default), upright."""
    record, body = await data_service.run_store(workspace.load_thumbnail, image_id)
    return _image_response(body, record.thumbnail_mime)


@router.delete("/images/{image_id}", status_code=204, responses={400: ERRORS[400], 404: ERRORS[404]}, tags=["images"])
async def delete_image(image_id: str) -> Response:
    """Delete one image and everything computed from it."""
    await data_service.in_store_thread(workspace.delete_image, image_id)
    return Response(status_code=204)


@router.delete("/session", status_code=204, responses={400: ERRORS[400]}, tags=["sessions"])
async def clear_session() -> Response:
    """Delete everything in the workspace (a session id is required)."""
    await data_service.in_store_thread(workspace.clear_session)
    return Response(status_code=204)


@router.get("/health", response_model=Health, tags=["service"])
async def health() -> Health:
    """Service status and totals (never ids)."""
    totals = await data_service.run_store(workspace.totals, sessions_only=True)
    settings = data_service.settings()
    return Health(
        storage=settings.storage,
        sessions=totals.sessions,
        images=totals.images,
        bytes_held=totals.bytes_held,
        capacity_bytes=totals.capacity_bytes,
        legacy_fallback=settings.legacy_fallback,
    )


@router.websocket("/ws/upload")
async def websocket_upload(websocket: WebSocket, session: Session) -> None:
    """Streaming upload for scripts (see the README): per file a JSON header
    ``{"filename": ..., "size": ...}`` then binary chunks; the server answers ``progress`` per chunk
    and one ``result`` per file, and ``summary`` after ``{"type": "done"}``. Limits are enforced
    mid-stream: a breach is answered with an ``error`` message and the socket is closed (1009).
    A ZIP archive (told by its content) is unpacked as ``POST /api/images/zip`` unpacks it: one
    ``result`` per member, a ``skipped`` per member not taken, and for Darkroom's own archive an
    ``annotations`` message (restored as there; ``?restore_annotations=true`` asks for it).
    While it is open, the script is listed in the workspace's presence (once its address's share
    of upload sockets let it in)."""
    client = current_client()
    attach = (lambda: presence.attached(session, "script", client=client)) if session is not None else None
    await serve_upload_socket(websocket, archives=True, attach=attach)
