"""Download: every original of the workspace as one ZIP archive, streamed from RAM.

The archive is written by the standard library's ``zipfile`` into a write-only buffer that is
emptied after each member, so the server holds one original (plus its ZIP headers) at a time and
nothing is written to a file. Members are stored as uploaded (``ZIP_STORED``: photos are already
compressed), byte for byte, under their upload names made safe and unique; ZIP64 records are used
when a member or the archive needs them.
"""

from __future__ import annotations

import json
import time
import zipfile
from collections.abc import AsyncIterator
from datetime import datetime

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from core import data_service
from core.api.data_input import content_disposition
from core.api.models import ERRORS
from core.errors import NotFound
from core.sessions import current_session_id, session_scope
from core.storage.base import ImageRecord

router = APIRouter(prefix="/api")

ARCHIVE_MEDIA_TYPE = "application/zip"
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a ZIP header can hold
ANNOTATIONS_MEMBER = "annotations.json"  # beside the originals when any image has annotations
_MAX_MEMBER_NAME = 240  # characters; the ZIP format allows 65535 bytes, file systems far fewer


class _Sink:
    """A write-only file for ``zipfile``: what it writes is collected until drained."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        """Nothing to flush: the bytes wait in memory for ``drain``."""

    def drain(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


def member_name(filename: str, taken: set[str], fallback: str = "image") -> str:
    """A safe, unique member name for ``filename``: folders are kept (a photo uploaded from a
    folder keeps its relative path), but never absolute, never ``..``, forward slashes only; a
    name already used (compared without case, as Windows and macOS do) gets `` (2)``, `` (3)``..."""
    parts = [p for p in filename.replace("\\", "/").split("/") if p not in {"", ".", ".."}]
    name = "/".join(parts)[-_MAX_MEMBER_NAME:].lstrip("/") or fallback
    stem, dot, ext = name.rpartition(".")
    if not dot or "/" in ext:
        stem, ext = name, ""
    candidate, number = name, 1
    while candidate.lower() in taken:
        number += 1
        candidate = f"{stem} ({number}).{ext}" if ext else f"{stem} ({number})"
    taken.add(candidate.lower())
    return candidate


def _date_time(uploaded_at: str) -> tuple[int, int, int, int, int, int]:
    try:
        moment = datetime.fromisoformat(uploaded_at.replace("Z", "+00:00"))
    except ValueError:
        return _ZIP_EPOCH
    return max(_ZIP_EPOCH, moment.timetuple()[:6])


async def iter_archive(session_id: str | None, records: list[ImageRecord]) -> AsyncIterator[bytes]:
    """The ZIP of ``records``' originals, in pieces of about one member, and ``annotations.json``
    (per annotated image: its member name, id, tags, rating, note...) when any image has
    annotations. The session is entered for each read only (never across a ``yield``); an image
    deleted meanwhile is left out."""
    sink = _Sink()
    with session_scope(session_id):
        annotated = await data_service.run_store(data_service.list_annotations)
    taken: set[str] = {ANNOTATIONS_MEMBER} if annotated else set()  # an image never takes its name
    notes: list[dict[str, object]] = []
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:  # type: ignore[arg-type]
        for record in records:
            with session_scope(session_id):
                try:
                    _, body = await data_service.run_store(data_service.load_image, record.id)
                except NotFound:
                    continue
            info = zipfile.ZipInfo(member_name(record.filename, taken), date_time=_date_time(record.uploaded_at))
            if record.id in annotated:
                notes.append({"file": info.filename, "id": record.id, **annotated[record.id].to_public()})
            info.compress_type = zipfile.ZIP_STORED
            info.external_attr = 0o644 << 16
            archive.writestr(info, body)  # ZIP64 extra fields when the size needs them
            del body
            yield sink.drain()
        if notes:
            info = zipfile.ZipInfo(ANNOTATIONS_MEMBER, date_time=time.gmtime()[:6])
            info.external_attr = 0o644 << 16
            archive.writestr(info, json.dumps(notes, ensure_ascii=False, indent=1).encode("utf-8"))
    yield sink.drain()  # the central directory (ZIP64 end records past 65535 members or 4 GiB)


def archive_filename() -> str:
    return f"darkroom-images-{time.strftime('%Y%m%d-%H%M%S')}.zip"


async def archive_response() -> StreamingResponse:
    """The current session's archive as a download (the legacy shared folder without a session)."""
    session_id = current_session_id()
    records = await data_service.run_store(data_service.list_images)
    headers = {
        "Content-Disposition": content_disposition(archive_filename(), "attachment"),
        "Cache-Control": "private, no-store",
        "X-Content-Type-Options": "nosniff",
    }
    return StreamingResponse(iter_archive(session_id, records), media_type=ARCHIVE_MEDIA_TYPE, headers=headers)


@router.get(
    "/images/archive",
    response_class=StreamingResponse,
    responses={
        200: {"content": {ARCHIVE_MEDIA_TYPE: {}}, "description": "A ZIP of every original"},
        400: ERRORS[400],
    },
    tags=["images"],
)
async def download_archive() -> StreamingResponse:
    """Every original of the workspace as one ZIP, streamed: members byte-identical to the
    uploads, stored uncompressed, named as uploaded (made unique: ``a.jpg``, ``a (2).jpg``).
    An empty workspace gives an empty archive. Without a session id: the legacy shared folder's
    images (400 when that folder is switched off), like ``GET /api/images``."""
    return await archive_response()
