"""The WebSocket upload protocol, for scripts (``/api/ws/upload``) and the page's drop zone.

Per file the client sends a JSON header ``{"filename": ..., "size": ...}`` and then the file's bytes
as binary messages; ``{"type": "done"}`` ends the upload. The server answers ``ready`` once,
``progress`` per chunk, one ``result`` per file (in the API's words) and a ``summary`` after
``done``. A protocol breach is answered with an ``error`` message and a close code
(1007 bad JSON, 1008 a malformed header or order, 1009 too large).

Where archives are taken (both sockets), a file that is a ZIP archive (told by its content) is
unpacked: a ``result`` per member (``"member": true``), a ``skipped`` per member not taken, and
for Darkroom's own archive one ``annotations`` message (``core.restore``: what was restored from its
``annotations.json`` and what was skipped). It restores into a workspace that held nothing when the
socket's first file was announced, or anyway with ``?restore_annotations=true`` on the socket's URL.

The page's socket (``thumbnails``) follows the ``result`` of each stored image with that image's
thumbnail as one binary message (the result's ``thumbnail`` is its size in bytes, ``thumbnail_mime``
its type): the page shows
the card from it instead of fetching it again, one request per file. Scripts' sockets do not.
A file announced over the per-file limit for images but within the archive limit is read until
its first bytes tell: not a ZIP, it is refused then (its ``result`` comes before its bytes are all
acknowledged; send no more of it), as a file over both limits is refused from its header.

Every queue has a bound. The socket is not read while ``DecodePool.one_caller`` files (workers + 1,
within the session's and the address's decode shares) are being validated or their bytes pass the
per-socket cap or the session's remaining quota, so a fast client is slowed down by TCP instead of
filling the server's memory. When the client leaves, pending decodes are
cancelled (their workers are stopped).

Fair share (``core.inflight``): a socket takes one of its client address's upload slots before it
reads anything; past the share it gets an ``error`` (503, ``retry_after``) and close 1013 (try again
later). An announced file reserves its size in the budget shared with multipart bodies (past it: a
503 ``result`` with ``retry_after`` for that file). Its bytes must arrive at the minimum rate, timed
from when the server starts reading them; a file that stalls gets an ``error`` (408) and the socket
is closed (1008). A socket with no file arriving and no work of its own in progress that receives
nothing for ``DARKROOM_UPLOAD_IDLE_SECONDS`` gets an ``error`` (408) and is closed (1008). One timer
per socket, moved on each message, does both. Every reservation is given back when its file is
stored, refused or the socket ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from fastapi import WebSocket, WebSocketDisconnect
from starlette import status

from core import data_service, restore, uploads, workspace
from core.api.errors import end_socket
from core.errors import WS_POLICY_VIOLATION, BadRequest, DarkroomError, RequestTimeout, ServiceBusy, TooLarge
from core.inflight import MinimumRate, SessionRoom, budget, budget_key, server_room, upload_slot
from core.ingest import IngestedImage, clean_filename, is_zip
from core.storage.base import ImageRecord
from core.units import format_bytes

MAX_MESSAGE_BYTES = 16 * 1024 * 1024  # uvicorn's default ``ws_max_size``
MAX_HEADER_CHARS = 4096
# Bytes of received files waiting for validation on one socket (also capped by the session's quota).
MAX_QUEUED_BYTES = 64 * 1024 * 1024

ReportListener = Callable[[uploads.UploadReport], None]
Attachment = Callable[[], AbstractContextManager[object]]


in_flight = budget  # the one budget for bytes in flight (``core.inflight``), as tests and benchmarks name it


class ProtocolError(BadRequest):
    """The client broke the protocol; ``close_code`` says how."""

    def __init__(self, message: str, close_code: int = WS_POLICY_VIOLATION) -> None:
        super().__init__(message)
        self.close_code = close_code


class _Done(Exception):
    """The client said it has nothing more to send."""


def _idle(seconds: float) -> RequestTimeout:
    return RequestTimeout(f"the upload socket received nothing for {seconds:g} s; it is closed")


class WebSocketUpload:
    """One open upload socket of the current session."""

    def __init__(
        self,
        websocket: WebSocket,
        archives: bool,
        on_report: ReportListener | None,
        restore_asked: bool = False,
        thumbnails: bool = False,
    ) -> None:
        self.websocket = websocket
        self.archives = archives
        self.thumbnails = thumbnails
        self.on_report = on_report
        self.restore_asked = restore_asked
        self.was_empty: bool | None = None  # whether the workspace held nothing before this socket's first file
        self.settings = data_service.settings()
        self.largest = (
            max(self.settings.max_file_bytes, self.settings.zip_max_archive_bytes)
            if archives
            else self.settings.max_file_bytes
        )
        self.send_lock = asyncio.Lock()
        self.pending: set[asyncio.Task[None]] = set()
        self.queued_bytes = 0
        self.key = budget_key()
        self.reserved = 0  # bytes of this socket in the budget, released as files are stored
        self.counts = {"accepted": 0, "rejected": 0, "duplicates": 0}
        self.filename: str | None = None
        self.headers = 0  # file headers read: a result's "file" is its header's index, from 0
        self.index = 0  # the index of the file whose bytes are arriving
        self.size = 0
        self.chunks: list[bytes] = []
        self.received = 0
        self.discarding = 0  # bytes still expected for a file refused from its header (or its first bytes)
        self.head_checked = True  # whether the arriving file is known to be in its limit (see add_bytes)
        self.deadline: asyncio.Timeout | None = None  # the socket's one timer (idle, or the file's rate)
        self.loop = asyncio.get_running_loop()
        self.last_activity = self.loop.time()
        self.rate = MinimumRate.of(self.settings)  # of the file whose bytes are arriving
        self.file_started = self.last_activity

    async def send(self, message: dict[str, Any], attached: bytes | None = None) -> None:
        """Send ``message``, and ``attached`` as the binary message right after it (nothing between)."""
        async with self.send_lock:
            await self.websocket.send_text(json.dumps(message))
            if attached is not None:
                await self.websocket.send_bytes(attached)

    # -- reading --
    async def serve(self) -> None:
        """Read the client's messages until it is done, under the socket's timer."""
        await self.send({"type": "ready", "max_file_bytes": self.largest, "max_message_bytes": MAX_MESSAGE_BYTES})
        try:
            async with asyncio.timeout(None) as deadline:
                self.deadline = deadline
                self._rearm()
                try:
                    await self._read()
                except _Done:
                    await self.finish()
        except TimeoutError:
            if not deadline.expired():
                raise
            if self.filename is not None:
                raise self.rate.too_slow() from None
            raise _idle(self.settings.upload_idle_seconds) from None
        finally:
            self.deadline = None

    async def _read(self) -> None:
        while True:
            message = await self.websocket.receive()
            if message["type"] == "websocket.disconnect":
                raise WebSocketDisconnect(message.get("code", status.WS_1000_NORMAL_CLOSURE))
            self.last_activity = self.loop.time()
            if message.get("bytes") is not None:
                await self.add_bytes(message["bytes"])
            elif message.get("text") is not None:
                await self.start_file(message["text"])
            self._rearm()

    def _rearm(self) -> None:
        """Move the timer: a file's bytes are due at its minimum rate; with no file arriving and no
        work in progress, the next message within the idle time; with work in progress, none."""
        if self.deadline is None:
            return
        if self.filename is not None:
            allowed = self.rate.allowed()
            self.deadline.reschedule(None if allowed is None else self.file_started + allowed)
        elif self.pending:
            self.deadline.reschedule(None)  # the client waits for its results
        else:
            self.deadline.reschedule(self.last_activity + self.settings.upload_idle_seconds)

    def _work_done(self, task: asyncio.Task[None]) -> None:
        self.pending.discard(task)
        if not self.pending:
            self.last_activity = self.loop.time()  # the idle time runs from the last result
            self._rearm()

    async def start_file(self, text: str) -> None:
        header = _parse_header(text)
        if header.get("type") == "done":
            raise _Done()
        if self.filename is not None:
            raise ProtocolError("a new header arrived before the previous file's bytes were complete")
        self.discarding = 0
        size = header.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ProtocolError("the header needs 'size', the file's length in bytes")
        raw_name = header.get("filename")
        filename = raw_name if isinstance(raw_name, str) and raw_name else "upload"
        self.index, self.headers = self.headers, self.headers + 1
        if size > self.largest:
            refusal = TooLarge(f"the file is over the {format_bytes(self.largest)} limit per file")
            await self._refuse_before_bytes(filename, refusal, size)
            return
        stored = await data_service.run_store(workspace.session_bytes_held)
        if self.was_empty is None:  # before any file of this socket can have been stored
            self.was_empty = stored == 0
        session = SessionRoom(stored, self.settings.session_quota_bytes)
        try:
            budget.reserve(self.key, size, await server_room(), session)
        except DarkroomError as refusal:
            await self._refuse_before_bytes(filename, refusal, size)
            return
        self.reserved += size
        await self._wait_for_room(size)
        self.filename, self.size, self.chunks, self.received = filename, size, [], 0
        self.queued_bytes += size
        self.rate = MinimumRate.of(self.settings)
        self.file_started = self.loop.time()  # its bytes are timed from when the server reads them
        self.head_checked = size <= self.settings.max_file_bytes  # else only a ZIP may be this large
        if size == 0:
            self._finish_file()

    async def add_bytes(self, data: bytes) -> None:
        if self.filename is None and self.discarding >= len(data):
            self.discarding -= len(data)
            return
        if self.filename is None:
            raise ProtocolError('binary data arrived without a header; send {"filename", "size"} first')
        if not self.head_checked and await self._refused_by_head(data):
            return
        self.received += len(data)
        if self.received > self.size:
            raise TooLarge(f"more bytes arrived than the {self.size} declared for {self.filename!r}")
        # the timer refuses a stalled file; this refuses one whose bytes came late all the same
        self.rate.arrived(len(data), self.loop.time() - self.file_started - self.rate.waited)
        self.chunks.append(data)
        await self.send({"type": "progress", "filename": self.filename, "received": self.received, "size": self.size})
        if self.received == self.size:
            self._finish_file()

    async def _refused_by_head(self, data: bytes) -> bool:
        """A file announced over the per-file limit is taken only as a ZIP archive: once its first
        bytes tell it is not one, it is refused (its reservation goes, the rest of its bytes are
        read and dropped) rather than received whole to be refused then."""
        head = (b"".join(self.chunks) + data[:4])[:4] if self.received < 4 else b""
        if self.received < 4 and len(head) < 4 and self.received + len(data) < self.size:
            return False  # too few bytes yet to tell
        self.head_checked = True
        if head == b"" or is_zip(head):
            return False
        filename, size, arrived = self.filename, self.size, self.received + len(data)
        self.filename, self.chunks = None, []
        self.queued_bytes -= size
        self.reserved -= size
        budget.release(self.key, size)
        refusal = TooLarge(
            f"the file is over the {format_bytes(self.settings.max_file_bytes)} limit per file "
            "(only a ZIP archive may be larger)"
        )
        await self._refuse_before_bytes(filename or "upload", refusal, size - arrived)
        return True

    async def _wait_for_room(self, size: int) -> None:
        """Backpressure: stop reading until the files already received are validated (the client
        is not timed meanwhile: the server holds it back)."""
        limit = data_service.sandbox().one_caller
        while self.pending and (len(self.pending) >= limit or self.queued_bytes + size > MAX_QUEUED_BYTES):
            if self.deadline is not None:
                self.deadline.reschedule(None)
            await asyncio.wait(self.pending, return_when=asyncio.FIRST_COMPLETED)

    async def _refuse_before_bytes(self, filename: str, refusal: DarkroomError, size: int) -> None:
        """Answer a file refused from its header; bytes sent for it anyway are read and dropped."""
        self.counts["rejected"] += 1
        self.discarding = size
        await self._result(
            self.index,
            filename,
            refusal.status_code,
            detail=f"{refusal.message}; do not send it",
            retry_after=getattr(refusal, "retry_after", None),
        )

    # -- validating and storing --
    def _finish_file(self) -> None:
        filename, data = self.filename, b"".join(self.chunks)
        self.filename, self.chunks = None, []
        task = asyncio.create_task(self._store(self.index, filename, data))
        self.pending.add(task)
        task.add_done_callback(self._work_done)

    async def _store(self, index: int, filename: str | None, data: bytes) -> None:
        part = uploads.Part.arrived(data, filename, self.archives)
        held = len(data)  # reserved from the file's header; an archive's members are reserved here
        try:
            if part.archive:
                unpacked = await uploads.unpacked_size(data)
                try:
                    budget.reserve(self.key, unpacked, await server_room())
                except DarkroomError as refusal:
                    self.counts["rejected"] += 1
                    await self._result(
                        index, clean_filename(filename), refusal.status_code, detail=refusal.message,
                        retry_after=refusal.retry_after_seconds,
                    )  # fmt: skip
                    return
                held += unpacked
                self.reserved += unpacked
            prepared, skipped = await uploads.prepare_part(part)
            restores = self.restore_asked or bool(self.was_empty)
            report = await uploads.store(prepared, uploads.UploadReport(skipped=skipped), restores)
        finally:
            self.queued_bytes -= len(data)
            self.reserved -= held
            budget.release(self.key, held)
        if self.on_report is not None:
            self.on_report(report)
        same_bytes = {d.filename: d.existing for d in reversed(report.duplicates)}  # the first of each name
        thumbnails = {item.sha256: item.thumbnail for item in prepared if isinstance(item, IngestedImage)}
        for record in report.accepted:
            self.counts["accepted"] += 1
            duplicate_of = same_bytes.get(record.filename)
            thumbnail = thumbnails.get(record.sha256) if self.thumbnails else None
            await self._result(
                index, record.filename, 200, part.archive, image=record, duplicate_of=duplicate_of, thumbnail=thumbnail
            )
        accepted_names = {record.filename for record in report.accepted}
        for duplicate in report.duplicates:
            if duplicate.filename not in accepted_names:
                self.counts["duplicates"] += 1
                await self._result(index, duplicate.filename, 200, part.archive, duplicate_of=duplicate.existing)
        for rejection in report.rejected:
            self.counts["rejected"] += 1
            await self._result(
                index,
                rejection.filename,
                rejection.status,
                part.archive,
                detail=rejection.detail,
                retry_after=rejection.retry_after,
            )
        for skip in report.skipped:
            await self.send({"type": "skipped", "file": index, "filename": skip.filename, "detail": skip.reason})
        if report.restore is not None:
            await self.send({"type": "annotations", "file": index, **report.restore.to_public()})

    async def _result(
        self,
        index: int,
        filename: str,
        status_code: int,
        member: bool = False,
        image: ImageRecord | None = None,
        duplicate_of: ImageRecord | None = None,
        detail: str | None = None,
        retry_after: int | None = None,
        thumbnail: bytes | None = None,
    ) -> None:
        result: dict[str, Any] = {
            "type": "result",
            "file": index,  # the index of the file's header on this socket
            "member": member,  # a file from inside the ZIP sent as file ``index``
            "filename": filename,
            "status": status_code,
            "image": image.to_public() if image else None,
            "duplicate_of": duplicate_of.to_public() if duplicate_of else None,
            "detail": detail,
        }
        if retry_after is not None:  # a 503: when to send the file again, as HTTP's Retry-After
            result["retry_after"] = retry_after
        if thumbnail is not None and image is not None:
            result["thumbnail"] = len(thumbnail)  # its bytes are the next message
            result["thumbnail_mime"] = image.thumbnail_mime
        await self.send(result, thumbnail)

    async def finish(self) -> None:
        if self.filename is not None:
            raise ProtocolError(f"'done' arrived before all bytes of {self.filename!r}")
        await asyncio.gather(*self.pending)
        await self.send({"type": "summary", **self.counts})

    def cancel_pending(self) -> None:
        for task in self.pending:
            task.cancel()

    def abandon_partial(self) -> None:
        """The file whose bytes were still arriving will not be stored: its reservation goes."""
        if self.filename is not None:
            budget.release(self.key, self.size)
            self.reserved -= self.size
            self.filename, self.chunks = None, []

    async def release(self) -> None:
        """Stop pending work and give back every byte this socket reserved and did not store."""
        self.cancel_pending()
        await asyncio.gather(*self.pending, return_exceptions=True)  # their ``finally`` releases theirs
        if self.reserved:
            budget.release(self.key, self.reserved)
            self.reserved = 0


def _parse_header(text: str) -> dict[str, Any]:
    if len(text) > MAX_HEADER_CHARS:
        raise ProtocolError(f"a header is at most {MAX_HEADER_CHARS} characters", status.WS_1009_MESSAGE_TOO_BIG)
    try:
        header = json.loads(text)
    except (ValueError, RecursionError):
        raise ProtocolError(
            'expected a JSON header such as {"filename": "a.jpg", "size": 1234}',
            status.WS_1007_INVALID_FRAME_PAYLOAD_DATA,
        ) from None
    if not isinstance(header, dict):
        raise ProtocolError("the header must be a JSON object")
    return header


async def serve_upload_socket(
    websocket: WebSocket,
    *,
    archives: bool = False,
    on_report: ReportListener | None = None,
    attach: Attachment | None = None,
    thumbnails: bool = False,
) -> None:
    """Accept ``websocket`` and run the upload protocol for the current session until the client
    is done or leaves. With ``archives``, a file that is a ZIP archive is unpacked (the page's drop
    zone); ``on_report`` sees each file's outcome as it is stored; ``attach`` is entered around the
    upload (the script's presence), once the address's share of upload sockets let it in;
    ``thumbnails`` sends each stored image's thumbnail after its result (the page's socket). The
    query's ``restore_annotations`` (true or false) asks archives to restore their annotations
    into a workspace that is not empty; a bad value is an ``error`` (400) and close 1008."""
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(upload_slot())
        except ServiceBusy as busy:
            await _refuse_socket(websocket, busy)
            return
        if attach is not None:
            held.enter_context(attach())
        await websocket.accept()
        try:
            restore_asked = restore.parse_flag(websocket.query_params.get(restore.RESTORE_QUERY))
        except BadRequest as refusal:
            await end_socket(websocket, refusal)
            return
        upload = WebSocketUpload(websocket, archives, on_report, restore_asked, thumbnails)
        try:
            await _serve(websocket, upload)
        finally:
            await upload.release()


async def _refuse_socket(websocket: WebSocket, busy: ServiceBusy) -> None:
    """Past the address's share: say so and when to try again, then close 1013, before reading."""
    await websocket.accept()
    await end_socket(websocket, busy)


async def _serve(websocket: WebSocket, upload: WebSocketUpload) -> None:
    try:
        await upload.serve()
        await websocket.close(code=status.WS_1000_NORMAL_CLOSURE)
    except DarkroomError as exc:
        upload.cancel_pending()
        upload.abandon_partial()  # a stalled file's reservation goes before the answer is sent
        await end_socket(websocket, exc, upload.send)
    except WebSocketDisconnect:
        upload.cancel_pending()  # the client left: its decodes stop, nothing more is stored
    except BaseException:
        upload.cancel_pending()
        raise
    finally:
        upload.abandon_partial()
