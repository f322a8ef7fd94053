"""The WebSocket upload protocol, for scripts (``/api/ws/upload``) and the page's drop zone.

Per file the client sends a JSON header ``{"filename": ..., "size": ...}`` and then the file's bytes
as binary messages; ``{"type": "done"}`` ends the upload. The server answers ``ready`` once,
``progress`` per chunk, one ``result`` per file (in the API's words) and a ``summary`` after
``done``. A protocol breach is answered with an ``error`` message and a close code
(1007 bad JSON, 1008 a malformed header or order, 1009 too large).

Every queue has a bound. The socket is not read while ``workers + 1`` files are being validated
or their bytes pass the per-socket cap or the session's remaining quota, so a fast client is slowed
down by TCP instead of filling the server's memory. When the client leaves, pending decodes are
cancelled (their workers are stopped).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Callable
from typing import Any

from fastapi import WebSocket, WebSocketDisconnect
from starlette import status

from core import data_service
from core.errors import BadRequest, DarkroomError, ServiceBusy, TooLarge
from core.ingest import is_zip
from core.sessions import current_session_id
from core.storage.base import ImageRecord, workspace_full
from core.units import format_bytes

MAX_MESSAGE_BYTES = 16 * 1024 * 1024  # uvicorn's default ``ws_max_size``
MAX_HEADER_CHARS = 4096
# Bytes of received files waiting for validation on one socket (also capped by the session's quota).
MAX_QUEUED_BYTES = 64 * 1024 * 1024

ReportListener = Callable[[data_service.UploadReport], None]


class InFlight:
    """Bytes announced by upload sockets and not yet stored, per session and in all: a session's
    sockets together stay inside its quota, and all sockets together inside the memory cap (the
    bytes are in RAM whatever the storage mode), however many sockets a client opens."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_session: dict[str, int] = {}
        self.total = 0

    def reserve(self, key: str, size: int, session_room: int, server_room: int) -> str | None:
        """Reserve ``size`` bytes for ``key``; None when done, else what is full."""
        with self._lock:
            if self._by_session.get(key, 0) + size > session_room:
                return "session"
            if self.total + size > server_room:
                return "server"
            self._by_session[key] = self._by_session.get(key, 0) + size
            self.total += size
            return None

    def held(self, key: str) -> int:
        with self._lock:
            return self._by_session.get(key, 0)

    def release(self, key: str, size: int) -> None:
        with self._lock:
            left = self._by_session.get(key, 0) - size
            if left > 0:
                self._by_session[key] = left
            else:
                self._by_session.pop(key, None)
            self.total -= size


in_flight = InFlight()
LEGACY_KEY = "legacy"


class ProtocolError(BadRequest):
    """The client broke the protocol; ``close_code`` says how."""

    def __init__(self, message: str, close_code: int = status.WS_1008_POLICY_VIOLATION) -> None:
        super().__init__(message)
        self.close_code = close_code


class _Done(Exception):
    """The client said it has nothing more to send."""


class WebSocketUpload:
    """One open upload socket of the current session."""

    def __init__(self, websocket: WebSocket, archives: bool, on_report: ReportListener | None) -> None:
        self.websocket = websocket
        self.archives = archives
        self.on_report = on_report
        self.settings = data_service.settings()
        self.largest = (
            max(self.settings.max_file_bytes, self.settings.zip_max_archive_bytes)
            if archives
            else self.settings.max_file_bytes
        )
        self.send_lock = asyncio.Lock()
        self.pending: set[asyncio.Task[None]] = set()
        self.queued_bytes = 0
        self.key = current_session_id() or LEGACY_KEY
        self.reserved = 0  # bytes of this socket in ``in_flight``, released as files are stored
        self.counts = {"accepted": 0, "rejected": 0, "duplicates": 0}
        self.filename: str | None = None
        self.headers = 0  # file headers read: a result's "file" is its header's index, from 0
        self.index = 0  # the index of the file whose bytes are arriving
        self.size = 0
        self.chunks: list[bytes] = []
        self.received = 0
        self.discarding = 0  # bytes still expected for a file refused from its header

    async def send(self, message: dict[str, Any]) -> None:
        async with self.send_lock:
            await self.websocket.send_text(json.dumps(message))

    # -- reading --
    async def serve(self) -> None:
        await self.send({"type": "ready", "max_file_bytes": self.largest, "max_message_bytes": MAX_MESSAGE_BYTES})
        while True:
            message = await self.websocket.receive()
            if message["type"] == "websocket.disconnect":
                raise WebSocketDisconnect(message.get("code", status.WS_1000_NORMAL_CLOSURE))
            if message.get("bytes") is not None:
                await self.add_bytes(message["bytes"])
            elif message.get("text") is not None:
                await self.start_file(message["text"])

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
            detail = f"the file is over the {format_bytes(self.largest)} limit per file; do not send it"
            await self._refuse_before_bytes(filename, TooLarge.status_code, detail, size)
            return
        stored = await data_service.run_store(data_service.session_bytes_held)
        quota = self.settings.session_quota_bytes
        full = in_flight.reserve(self.key, size, quota - stored, self.settings.memory_cap_bytes)
        if full == "session":
            held = stored + in_flight.held(self.key)
            refusal = workspace_full(held, quota, size)
            await self._refuse_before_bytes(filename, refusal.status_code, f"{refusal.message}; do not send it", size)
            return
        if full == "server":
            busy = "the server is receiving too many uploads right now; send it again in a moment"
            await self._refuse_before_bytes(filename, ServiceBusy.status_code, busy, size)
            return
        self.reserved += size
        await self._wait_for_room(size)
        self.filename, self.size, self.chunks, self.received = filename, size, [], 0
        self.queued_bytes += size
        if size == 0:
            self._finish_file()

    async def add_bytes(self, data: bytes) -> None:
        if self.filename is None and self.discarding >= len(data):
            self.discarding -= len(data)
            return
        if self.filename is None:
            raise ProtocolError('binary data arrived without a header; send {"filename", "size"} first')
        self.received += len(data)
        if self.received > self.size:
            raise TooLarge(f"more bytes arrived than the {self.size} declared for {self.filename!r}")
        self.chunks.append(data)
        await self.send({"type": "progress", "filename": self.filename, "received": self.received, "size": self.size})
        if self.received == self.size:
            self._finish_file()

    async def _wait_for_room(self, size: int) -> None:
        """Backpressure: stop reading until the files already received are validated."""
        limit = data_service.sandbox().workers + 1
        while self.pending and (len(self.pending) >= limit or self.queued_bytes + size > MAX_QUEUED_BYTES):
            await asyncio.wait(self.pending, return_when=asyncio.FIRST_COMPLETED)

    async def _refuse_before_bytes(self, filename: str, status_code: int, detail: str, size: int) -> None:
        """Answer a file refused from its header; bytes sent for it anyway are read and dropped."""
        self.counts["rejected"] += 1
        self.discarding = size
        await self._result(self.index, filename, status_code, detail=detail)

    # -- validating and storing --
    def _finish_file(self) -> None:
        filename, data = self.filename, b"".join(self.chunks)
        self.filename, self.chunks = None, []
        task = asyncio.create_task(self._store(self.index, filename, data))
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)

    async def _store(self, index: int, filename: str | None, data: bytes) -> None:
        archive = self.archives and is_zip(data)
        try:
            if archive:
                prepared, skipped = await data_service.prepare_archive_async(data, filename)
            else:
                prepared, skipped = [await data_service.prepare_image_async(data, filename)], []
            report = await data_service.run_store(
                data_service.commit, prepared, data_service.UploadReport(skipped=skipped)
            )
        finally:
            self.queued_bytes -= len(data)
            self.reserved -= len(data)
            in_flight.release(self.key, len(data))
        if self.on_report is not None:
            self.on_report(report)
        for record in report.accepted:
            self.counts["accepted"] += 1
            same_bytes = next((d.existing for d in report.duplicates if d.filename == record.filename), None)
            await self._result(index, record.filename, 200, archive, image=record, duplicate_of=same_bytes)
        accepted_names = {record.filename for record in report.accepted}
        for duplicate in report.duplicates:
            if duplicate.filename not in accepted_names:
                self.counts["duplicates"] += 1
                await self._result(index, duplicate.filename, 200, archive, duplicate_of=duplicate.existing)
        for rejection in report.rejected:
            self.counts["rejected"] += 1
            await self._result(index, rejection.filename, rejection.status, archive, detail=rejection.detail)
        for skip in report.skipped:
            await self.send({"type": "skipped", "file": index, "filename": skip.filename, "detail": skip.reason})

    async def _result(
        self,
        index: int,
        filename: str,
        status_code: int,
        member: bool = False,
        image: ImageRecord | None = None,
        duplicate_of: ImageRecord | None = None,
        detail: str | None = None,
    ) -> None:
        await self.send(
            {
                "type": "result",
                "file": index,  # the index of the file's header on this socket
                "member": member,  # a file from inside the ZIP sent as file ``index``
                "filename": filename,
                "status": status_code,
                "image": image.to_public() if image else None,
                "duplicate_of": duplicate_of.to_public() if duplicate_of else None,
                "detail": detail,
            }
        )

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
            in_flight.release(self.key, self.size)
            self.reserved -= self.size
            self.filename, self.chunks = None, []

    async def release(self) -> None:
        """Stop pending work and give back every byte this socket reserved and did not store."""
        self.cancel_pending()
        await asyncio.gather(*self.pending, return_exceptions=True)  # their ``finally`` releases theirs
        if self.reserved:
            in_flight.release(self.key, self.reserved)
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
    websocket: WebSocket, *, archives: bool = False, on_report: ReportListener | None = None
) -> None:
    """Accept ``websocket`` and run the upload protocol for the current session until the client
    is done or leaves. With ``archives``, a file that is a ZIP archive is unpacked (the page's drop
    zone); ``on_report`` sees each file's outcome as it is stored."""
    await websocket.accept()
    upload = WebSocketUpload(websocket, archives, on_report)
    try:
        await _serve(websocket, upload)
    finally:
        await upload.release()


async def _serve(websocket: WebSocket, upload: WebSocketUpload) -> None:
    try:
        try:
            await upload.serve()
        except _Done:
            await upload.finish()
            await websocket.close(code=status.WS_1000_NORMAL_CLOSURE)
    except DarkroomError as exc:
        upload.cancel_pending()
        if isinstance(exc, ProtocolError):
            code = exc.close_code
        elif isinstance(exc, TooLarge):
            code = status.WS_1009_MESSAGE_TOO_BIG
        else:
            code = status.WS_1008_POLICY_VIOLATION
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):
            await upload.send({"type": "error", "status": exc.status_code, "detail": exc.message})
            await websocket.close(code=code, reason=exc.message[:120])
    except WebSocketDisconnect:
        upload.cancel_pending()  # the client left: its decodes stop, nothing more is stored
    except BaseException:
        upload.cancel_pending()
        raise
    finally:
        upload.abandon_partial()
