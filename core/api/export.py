"""Download: every original of the workspace as one ZIP archive, streamed from RAM in small pieces.

The archive is written by the standard library's ``zipfile`` into a write-only sink, one batch of at
most ``ARCHIVE_BATCH_BYTES`` at a time, in a worker thread: CRC, headers and the joins of small parts
never run on the event loop. Member data reaches the sink as memoryview slices of the stored
original, never copied, and leaves it in pieces of at most ``ARCHIVE_PIECE_BYTES``. The next batch
is written only once every piece of this one has been handed to ``send``, and uvicorn's ``send``
waits while the socket's buffer is full, so a reader, however slow, holds about one batch plus one
piece in the socket's buffer (under 1 MiB), never a member. A reader that leaves stops the writing.

Members are stored as uploaded (``ZIP_STORED``: photos are already compressed), byte for byte,
under their upload names made safe and unique; ZIP64 records are used when a member or the archive
needs them, exactly as ``ZipFile.writestr`` writes them. Archive downloads streaming at once are
capped per session and in all (``DARKROOM_ARCHIVE_DOWNLOADS_PER_SESSION``,
``DARKROOM_ARCHIVE_DOWNLOADS``): past either, 503 with ``Retry-After``; a slot is held until the
stream ends or its client leaves.

Left for later: the central directory (about 100 bytes per member) is written in one go at the end,
and a store that reads from disk, SQL or Redis hands over a whole original, which the stream holds
until its last piece is sent (memory mode holds only references to the stored bytes).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import weakref
import zipfile
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import aclosing
from datetime import datetime
from typing import Any

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from core import data_service, workspace
from core.api.data_input import content_disposition
from core.api.models import ERRORS, ErrorModel
from core.errors import NotFound, ServiceBusy
from core.restore import ANNOTATIONS_MEMBER  # beside the originals when any image has annotations; read back on upload
from core.sessions import LEGACY_KEY, current_session_id
from core.storage.base import ImageRecord

router = APIRouter(prefix="/api")

ARCHIVE_MEDIA_TYPE = "application/zip"
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a ZIP header can hold
_MAX_MEMBER_NAME = 240  # characters; the ZIP format allows 65535 bytes, file systems far fewer
ARCHIVE_PIECE_BYTES = 256 * 1024  # the most of the archive handed to the socket at once
# Archive bytes one worker-thread hop writes: the most a reader holds beside the socket's buffer.
ARCHIVE_BATCH_BYTES = 512 * 1024
# A local header with its ZIP64 extra field and data descriptor, without the name: what an empty
# member adds to a batch (so a workspace of tiny files is batched by count too).
_LOCAL_RECORD_BYTES = 30 + 20 + 24
ARCHIVE_RETRY_AFTER_SECONDS = 10  # a busy download slot: archives take a while to stream

Piece = bytes | memoryview


class _ReaderGone(OSError):
    """Raised into ``zipfile`` by an abandoned sink, so it stops writing at its next write."""


class _Sink:
    """A write-only file for ``zipfile``: what it writes is kept as written (headers as bytes,
    member data as the memoryview slices it was given: nothing is copied) until drained."""

    def __init__(self) -> None:
        self._parts: list[Piece] = []
        self.refused = False  # set once the reader is gone: every later write raises

    def write(self, data: Piece) -> int:
        if self.refused:
            raise _ReaderGone("the archive's reader has gone")
        self._parts.append(data)
        return len(data)

    def flush(self) -> None:
        """Nothing to flush: the bytes wait in memory for ``drain``."""

    def drain(self) -> deque[Piece]:
        """The written bytes as pieces of at most ``ARCHIVE_PIECE_BYTES``: consecutive small parts
        (headers, small members) joined, a part of the piece size passed on as it is. Every part is
        at most a piece (member data is written in piece-sized slices). Call from a worker thread."""
        pieces: deque[Piece] = deque()
        group: list[Piece] = []
        size = 0
        for part in self._parts:
            if group and size + len(part) > ARCHIVE_PIECE_BYTES:
                pieces.append(group[0] if len(group) == 1 else b"".join(group))
                group, size = [], 0
            group.append(part)
            size += len(part)
        if group:
            pieces.append(group[0] if len(group) == 1 else b"".join(group))
        self._parts.clear()
        return pieces

    def clear(self) -> None:
        self._parts.clear()


class _Span:
    """Up to ``ARCHIVE_BATCH_BYTES`` of one member, and whether it begins or ends the member."""

    __slots__ = ("data", "first", "info", "last")

    def __init__(self, info: zipfile.ZipInfo, data: memoryview, first: bool, last: bool) -> None:
        self.info, self.data, self.first, self.last = info, data, first, last


class _ZipWriter:
    """``zipfile`` writing members in pieces into a ``_Sink``. ``write`` and ``close`` run in worker
    threads, one at a time; ``abandon`` may come from the event loop while one of them runs."""

    def __init__(self) -> None:
        self.sink = _Sink()
        self._archive = zipfile.ZipFile(self.sink, "w", compression=zipfile.ZIP_STORED, allowZip64=True)  # type: ignore[arg-type]
        self._member: Any = None  # the open member's writer
        self._lock = threading.Lock()  # held while zipfile writes; abandon never waits for it

    def write(self, spans: list[_Span]) -> deque[Piece]:
        """Write ``spans`` (each member's first span opens it, its last closes it) and drain."""
        try:
            with self._lock:
                for span in spans:
                    if span.first:
                        # file_size is set: ZIP64 is decided as writestr decides it
                        self._member = self._archive.open(span.info, "w")
                    for start in range(0, len(span.data), ARCHIVE_PIECE_BYTES):
                        self._member.write(span.data[start : start + ARCHIVE_PIECE_BYTES])
                    if span.last:
                        self._member.close()  # the data descriptor: sizes and CRC
                        self._member = None
                return self.sink.drain()
        finally:
            self._discard_if_abandoned()  # abandon came while this ran: finish it here

    def close(self) -> deque[Piece]:
        """The central directory (ZIP64 end records past 65535 members or 4 GiB), drained."""
        try:
            with self._lock:
                self._archive.close()
                return self.sink.drain()
        finally:
            self._discard_if_abandoned()

    def abandon(self) -> None:
        """Stop for good, without waiting for a write in progress (it stops at its next write and
        discards the rest itself); a no-op once the archive is closed. Safe from the event loop: an
        abandoned archive writes no central directory, not even when garbage-collected."""
        self.sink.refused = True
        self._discard_if_abandoned()

    def _discard_if_abandoned(self) -> None:
        # Whoever releases the lock after ``refused`` is set (abandon, or the thread it found
        # writing) discards: both try, so one of them always gets the lock.
        if self.sink.refused and self._lock.acquire(blocking=False):
            try:
                with contextlib.suppress(_ReaderGone):  # the data descriptor, refused
                    if self._member is not None:
                        self._member.close()
                self._member = None
                with contextlib.suppress(_ReaderGone):  # the central directory, refused
                    self._archive.close()
                self.sink.clear()
            finally:
                self._lock.release()


async def zip_pieces(
    members: AsyncIterator[tuple[zipfile.ZipInfo, bytes]],
) -> AsyncGenerator[Piece, None]:
    """The ZIP of ``members`` (info, data) in pieces of at most ``ARCHIVE_PIECE_BYTES``, byte for
    byte what ``ZipFile.writestr`` writes for them into an unseekable file. Each batch of up to
    ``ARCHIVE_BATCH_BYTES`` is written in a worker thread once every piece of the batch before has
    been taken; closing this generator early stops the writing (nothing more is written)."""
    writer = _ZipWriter()
    try:
        spans: list[_Span] = []
        batched = 0  # archive bytes in ``spans``: at most ARCHIVE_BATCH_BYTES plus one local header
        async for info, data in members:
            info.file_size = len(data)
            view = memoryview(data)
            opened, start = False, 0
            while not opened or start < len(view):  # an empty member still gets its one span
                if batched >= ARCHIVE_BATCH_BYTES:
                    pieces = await asyncio.to_thread(writer.write, spans)
                    spans, batched = [], 0
                    while pieces:
                        yield pieces.popleft()
                if not opened:
                    batched += _LOCAL_RECORD_BYTES + len(info.filename.encode("utf-8"))
                end = min(len(view), start + max(ARCHIVE_BATCH_BYTES - batched, 0))
                spans.append(_Span(info, view[start:end], first=not opened, last=end == len(view)))
                batched += end - start
                opened, start = True, end
            del view, data
        pieces = await asyncio.to_thread(writer.write, spans)
        while pieces:
            yield pieces.popleft()
        pieces = await asyncio.to_thread(writer.close)
        while pieces:
            yield pieces.popleft()
    finally:
        writer.abandon()  # a no-op once closed; else nothing more is written, now or at collection


def member_name(
    filename: str, taken: set[str], fallback: str = "image", last_number: dict[str, int] | None = None
) -> str:
    """A safe, unique member name for ``filename``: folders are kept (a photo uploaded from a
    folder keeps its relative path), but never absolute, never ``..``, forward slashes only; a
    name already used (compared without case, as Windows and macOS do) gets `` (2)``, `` (3)``...
    ``last_number`` (one dict per archive) remembers the last number tried per name, so many
    uploads of one name cost linear time, not quadratic."""
    parts = [p for p in filename.replace("\\", "/").split("/") if p not in {"", ".", ".."}]
    name = "/".join(parts)[-_MAX_MEMBER_NAME:].lstrip("/") or fallback
    stem, dot, ext = name.rpartition(".")
    if not dot or "/" in ext:
        stem, ext = name, ""
    numbers = {} if last_number is None else last_number
    candidate, number = name, numbers.get(name.lower(), 1)
    if number > 1:
        candidate = f"{stem} ({number}).{ext}" if ext else f"{stem} ({number})"
    while candidate.lower() in taken:
        number += 1
        candidate = f"{stem} ({number}).{ext}" if ext else f"{stem} ({number})"
    numbers[name.lower()] = number
    taken.add(candidate.lower())
    return candidate


def _date_time(uploaded_at: str) -> tuple[int, int, int, int, int, int]:
    try:
        moment = datetime.fromisoformat(uploaded_at.replace("Z", "+00:00"))
    except ValueError:
        return _ZIP_EPOCH
    return max(_ZIP_EPOCH, moment.timetuple()[:6])


async def iter_archive(session_id: str | None, records: list[ImageRecord]) -> AsyncGenerator[Piece, None]:
    """The ZIP of ``records``' originals in pieces (``zip_pieces``), and ``annotations.json`` (per
    annotated image: its member name, id, tags, rating, note...) when any image has annotations.
    It reads in the current session, which the request's setter (``SessionScope``, or
    ``PageSession`` for the page's download) holds for the whole response, stream included; an
    image deleted meanwhile is left out. Closing this generator closes the ones it drives at once."""
    if current_session_id() != session_id:  # a stream moved out of its request would read elsewhere
        raise RuntimeError("an archive is streamed only inside its own session's request")
    annotated = await data_service.run_store(workspace.list_annotations)

    async def members() -> AsyncGenerator[tuple[zipfile.ZipInfo, bytes], None]:
        taken: set[str] = {ANNOTATIONS_MEMBER} if annotated else set()  # an image never takes its name
        last_number: dict[str, int] = {}
        notes: list[dict[str, object]] = []
        for record in records:
            try:
                _, body = await data_service.run_store(workspace.load_image, record.id)
            except NotFound:
                continue
            name = member_name(record.filename, taken, last_number=last_number)
            info = zipfile.ZipInfo(name, date_time=_date_time(record.uploaded_at))
            if record.id in annotated:
                notes.append({"file": info.filename, "id": record.id, **annotated[record.id].to_public()})
            info.compress_type = zipfile.ZIP_STORED
            info.external_attr = 0o644 << 16
            yield info, body
            del body
        if notes:
            info = zipfile.ZipInfo(ANNOTATIONS_MEMBER, date_time=time.gmtime()[:6])
            info.external_attr = 0o644 << 16
            yield info, await asyncio.to_thread(_annotations_json, notes)

    async with aclosing(members()) as member_stream, aclosing(zip_pieces(member_stream)) as pieces:
        async for piece in pieces:
            yield piece


def _annotations_json(notes: list[dict[str, object]]) -> bytes:
    return json.dumps(notes, ensure_ascii=False, indent=1).encode("utf-8")


def archive_filename() -> str:
    return f"darkroom-images-{time.strftime('%Y%m%d-%H%M%S')}.zip"


class DownloadSlots:
    """The archive downloads streaming now, per session and in all. ``take`` refuses one past
    either share with ``ServiceBusy`` (503, ``Retry-After``); the slot it gives is released once,
    however many times its release is called."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_session: dict[str, int] = {}
        self._total = 0

    def take(self, key: str, per_session: int, in_all: int) -> Callable[[], None]:
        """A slot for session ``key`` (``LEGACY_KEY`` for the legacy folder); returns its release."""
        with self._lock:
            held = self._by_session.get(key, 0)
            if held >= per_session:
                raise ServiceBusy(
                    f"this workspace is already downloading {held} archives at once, its most; "
                    "let one finish and try again",
                    retry_after=ARCHIVE_RETRY_AFTER_SECONDS,
                )
            if self._total >= in_all:
                raise ServiceBusy(
                    "the server is streaming as many archives as it can at once; try again in a moment",
                    retry_after=ARCHIVE_RETRY_AFTER_SECONDS,
                )
            self._by_session[key] = held + 1
            self._total += 1
        released = False

        def release() -> None:
            nonlocal released
            with self._lock:
                if released:
                    return
                released = True
                self._total -= 1
                if self._by_session[key] == 1:
                    del self._by_session[key]
                else:
                    self._by_session[key] -= 1

        return release

    def streaming(self, key: str | None = None) -> int:
        """How many archive downloads hold a slot now: in all, or of session ``key``."""
        with self._lock:
            return self._total if key is None else self._by_session.get(key, 0)


download_slots = DownloadSlots()


class ArchiveResponse(StreamingResponse):
    """A streamed archive that stops writing and gives its download slot back as soon as the
    stream ends or its client leaves (Starlette cancels the stream on the disconnect), and also
    when it is dropped without ever being sent."""

    def __init__(self, content: AsyncGenerator[Piece, None], release: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self._release = weakref.finalize(self, release)  # runs once: here or when garbage-collected

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release()
            await self.body_iterator.aclose()  # type: ignore[attr-defined]  # our own async generator


async def archive_response() -> StreamingResponse:
    """The current session's archive as a download (the legacy shared folder without a session);
    503 with ``Retry-After`` when the session or the server streams as many archives as it may."""
    session_id = current_session_id()
    records = await data_service.run_store(workspace.list_images)
    settings = data_service.settings()
    headers = {
        "Content-Disposition": content_disposition(archive_filename(), "attachment"),
        "Cache-Control": "private, no-store",
        "X-Content-Type-Options": "nosniff",
    }
    release = download_slots.take(
        session_id or LEGACY_KEY, settings.archive_downloads_per_session, settings.archive_downloads
    )
    # Nothing between take and here can fail: the response owns the slot from now on.
    return ArchiveResponse(iter_archive(session_id, records), release, media_type=ARCHIVE_MEDIA_TYPE, headers=headers)


@router.get(
    "/images/archive",
    response_class=StreamingResponse,
    responses={
        200: {"content": {ARCHIVE_MEDIA_TYPE: {}}, "description": "A ZIP of every original"},
        400: ERRORS[400],
        503: {"model": ErrorModel, "description": "As many archives stream as the session or server may"},
    },
    tags=["images"],
)
async def download_archive() -> StreamingResponse:
    """Every original of the workspace as one ZIP, streamed: members byte-identical to the
    uploads, stored uncompressed, named as uploaded (made unique: ``a.jpg``, ``a (2).jpg``).
    An empty workspace gives an empty archive. Without a session id: the legacy shared folder's
    images (400 when that folder is switched off), like ``GET /api/images``. At most
    ``DARKROOM_ARCHIVE_DOWNLOADS_PER_SESSION`` per session and ``DARKROOM_ARCHIVE_DOWNLOADS`` in all
    stream at once; past either: 503 with ``Retry-After``."""
    return await archive_response()
