"""A Python client for a Darkroom server: one workspace, from a script or a notebook.

    from core.client import Workspace

    with Workspace("http://127.0.0.1:8080") as workspace:  # a new workspace (POST /api/sessions)
        workspace.upload("photos/")  # over WS /api/ws/upload, with a progress bar on a terminal
        table = workspace.features(["basic", "sharpness"])  # a pandas DataFrame

``Workspace`` is synchronous; ``AsyncWorkspace`` is its asyncio twin with the same methods. Neither
holds protocol rules of its own: a REST call is a ``_Call`` (what to send, how to read the answer)
and the upload socket is ``UploadProtocol``, a sans-IO state machine; the two classes only move
bytes (``httpx`` for HTTP, ``websockets`` for the sockets). The session id travels in the
``X-Session-Id`` header, never in a URL.

Every error the server answers becomes an ``ApiError`` subclass chosen by its status (``NotFound``,
``TooLarge``, ``Unsupported``, ``Busy`` with ``retry_after``...), whose message is the server's
``detail`` and whose ``fields`` hold the rest of its body. The client bounds what it takes from the
server: a JSON answer of at most ``max_response_bytes``, socket messages of at most
``MAX_MESSAGE_BYTES``, an error body of at most ``MAX_ERROR_BODY_BYTES``; archives stream to disk.

Optional: ``pandas`` (``features`` returns a DataFrame; without it, a list of dicts) and ``tqdm``
(the upload's progress bar; without it, no bar). ``pip install ".[client]"`` brings both.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import io
import json
import os
import sys
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Generic, TypeVar
from urllib.parse import quote

import httpx
from websockets.asyncio.client import ClientConnection as AsyncConnection
from websockets.asyncio.client import connect as async_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from core.archive import is_os_junk
from core.sessions import InvalidSessionId, parse_session_id

__all__ = [
    "ApiError",
    "AsyncEventStream",
    "AsyncWorkspace",
    "BadRequest",
    "Busy",
    "Conflict",
    "ConnectionLost",
    "EventStream",
    "Forbidden",
    "InsufficientStorage",
    "NotFound",
    "RateLimited",
    "Rejection",
    "RequestTimeout",
    "ServerError",
    "TooLarge",
    "Unprocessable",
    "Unsupported",
    "UploadProtocol",
    "UploadReport",
    "Workspace",
    "collect_sources",
    "error_for",
]

SESSION_HEADER = "X-Session-Id"
DEFAULT_TIMEOUT_SECONDS = 60.0  # per request and per socket message
LONG_TIMEOUT_SECONDS = 900.0  # a whole workspace's feature table is computed before it is sent
MAX_RESPONSE_BYTES = 64 * 1024 * 1024  # a JSON answer (a feature table of ~20,000 images)
MAX_ERROR_BODY_BYTES = 64 * 1024
MAX_MESSAGE_BYTES = 1024 * 1024  # one socket message from the server (a result, an event)
MAX_QUEUED_MESSAGES = 16  # socket messages received and not yet read
DRAIN_SECONDS = 1.0  # a closed socket's unread messages are already here; never wait longer
CHUNK_BYTES = 1024 * 1024  # one binary message of a file (the server takes up to 16 MiB)
WINDOW_BYTES = 8 * 1024 * 1024  # bytes sent and not yet acknowledged, as the page keeps
MAX_CHUNKS_IN_FLIGHT = 8
MAX_FILES_IN_FLIGHT = 32  # files announced whose result has not come: bounds the unread answers

T = TypeVar("T")


# -- errors --
class ApiError(Exception):
    """The server refused a request: ``str(error)`` is its ``detail`` in plain words, ``status`` the
    HTTP status (or the socket message's), ``fields`` the rest of its body, ``retry_after`` when to
    try again (seconds), ``filename`` the file it is about (uploads)."""

    status: int | None = None

    def __init__(
        self,
        detail: str,
        status: int | None = None,
        fields: dict[str, Any] | None = None,
        retry_after: float | None = None,
        filename: str | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        if status is not None:
            self.status = status
        self.fields = fields or {}
        self.retry_after = retry_after
        self.filename = filename
        self.report: UploadReport | None = None  # set on an upload's error: what the upload did


class BadRequest(ApiError):
    status = 400


class Forbidden(ApiError):
    status = 403


class NotFound(ApiError):
    """No such image in this workspace (or no such workspace)."""

    status = 404


class RequestTimeout(ApiError):
    """The server stopped waiting for bytes that did not arrive in time."""

    status = 408


class Conflict(ApiError):
    """An annotation edit with a stale ``expected_version``; ``current`` holds the annotations now."""

    status = 409

    @property
    def current(self) -> dict[str, Any] | None:
        return self.fields.get("current")


class TooLarge(ApiError):
    """A file, image, archive, quota or answer over a limit."""

    status = 413


class Unsupported(ApiError):
    """Not an image, or a format outside the server's allow-list."""

    status = 415


class Unprocessable(ApiError):
    """A corrupt image, an unsafe archive, or a value that is not allowed."""

    status = 422


class Busy(ApiError):
    """The server cannot take this now: try again after ``retry_after`` seconds."""

    status = 503


class RateLimited(Busy):
    """Too many requests of one kind (annotation edits): try again after ``retry_after`` seconds."""

    status = 429


class InsufficientStorage(ApiError):
    """The server's memory cap for all workspaces is reached."""

    status = 507


class ServerError(ApiError):
    """A failure of the server itself (5xx)."""

    status = 500


class ConnectionLost(ApiError):
    """A socket closed without the server saying why in a message (``close_code``, ``reason``)."""

    def __init__(self, detail: str, close_code: int | None = None) -> None:
        super().__init__(detail)
        self.close_code = close_code


_BY_STATUS: dict[int, type[ApiError]] = {
    cls.status: cls  # type: ignore[misc]
    for cls in (
        BadRequest,
        Forbidden,
        NotFound,
        RequestTimeout,
        Conflict,
        TooLarge,
        Unsupported,
        Unprocessable,
        RateLimited,
        Busy,
        InsufficientStorage,
    )
}
_BY_STATUS[431] = TooLarge  # request head over the server's limit


def error_for(
    status: int, body: object = None, retry_after: float | None = None, filename: str | None = None
) -> ApiError:
    """The typed error for ``status`` with the server's body (``{"detail", **fields}``); a body that
    is not of that shape gets a plain message naming the status."""
    cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else ApiError)
    if isinstance(body, dict) and isinstance(body.get("detail"), str):
        fields = {k: v for k, v in body.items() if k not in ("detail", "type", "status")}
        if retry_after is None and isinstance(fields.get("retry_after"), int | float):
            retry_after = float(fields.pop("retry_after"))
        return cls(body["detail"], status, fields, retry_after, filename)
    return cls(f"the server answered HTTP {status}", status, None, retry_after, filename)


def _retry_after(headers: httpx.Headers) -> float | None:
    try:
        return float(headers["Retry-After"])
    except (KeyError, ValueError):
        return None


# -- REST calls, described once for both clients --
@dataclass(frozen=True)
class _Answer:
    status: int
    headers: httpx.Headers
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            raise ServerError(f"the server's answer (HTTP {self.status}) is not JSON", self.status) from None

    def error(self) -> ApiError:
        try:
            body = json.loads(self.body)
        except ValueError:
            body = None
        return error_for(self.status, body, _retry_after(self.headers))


@dataclass(frozen=True)
class _Call(Generic[T]):
    """One REST call: what to send and how to read the answer (an error status raises its
    ``ApiError`` unless ``errors_are_answers``)."""

    method: str
    path: str
    read: Callable[[_Answer], T]
    params: dict[str, str] | None = None
    json: object = None
    long: bool = False  # computed before it is sent: waits up to LONG_TIMEOUT_SECONDS
    errors_are_answers: bool = False

    def finish(self, answer: _Answer) -> T:
        if answer.status >= 400 and not self.errors_are_answers:
            raise answer.error()
        return self.read(answer)


class _Body:
    """An answer's bytes as they arrive, refused past ``limit``."""

    def __init__(self, status: int, limit: int) -> None:
        self.limit = limit if status < 400 else min(limit, MAX_ERROR_BODY_BYTES)
        self.parts: list[bytes] = []
        self.size = 0

    def feed(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.limit:
            raise TooLarge(f"the server's answer is over the client's {self.limit:,} byte limit (max_response_bytes)")
        self.parts.append(chunk)

    def data(self) -> bytes:
        return b"".join(self.parts)


def _json_of(answer: _Answer) -> Any:
    return answer.json()


def _nothing(answer: _Answer) -> None:
    return None


def _image_path(image_id: str, suffix: str = "") -> str:
    return f"/api/images/{quote(image_id, safe='')}{suffix}"


def _group_names(groups: str | Iterable[str] | None) -> dict[str, str] | None:
    if groups is None:
        return None
    return {"groups": groups if isinstance(groups, str) else ",".join(groups)}


def _table(answer: _Answer) -> Any:
    """The feature table as a pandas DataFrame (columns in the server's order), or without pandas
    the list of row dicts."""
    body = answer.json()
    try:
        import pandas
    except ImportError:
        return body["rows"]
    return pandas.DataFrame(body["rows"], columns=body["columns"])


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()  # an annotation field left as it is (None clears a rating or a pick)


def _annotation_patch(
    tags_add: Iterable[str],
    tags_remove: Iterable[str],
    rating: Any,
    note: str | None,
    expected_version: int | None,
    pick: Any = UNSET,
) -> dict[str, Any]:
    patch: dict[str, Any] = {}
    if tags_add:
        patch["tags_add"] = list(tags_add)
    if tags_remove:
        patch["tags_remove"] = list(tags_remove)
    if rating is not UNSET:
        patch["rating"] = rating
    if pick is not UNSET:
        patch["pick"] = pick
    if note is not None:
        patch["note"] = note
    if expected_version is not None:
        patch["expected_version"] = expected_version
    return patch


def _similar_results(answer: _Answer) -> list[dict[str, Any]]:
    return answer.json()["results"]


def _image_groups(answer: _Answer) -> list[dict[str, Any]]:
    return answer.json()["groups"]


def _session_created(answer: _Answer) -> str:
    return parse_session_id(answer.json()["session_id"])


def _checked_session_id(session_id: str) -> str:
    """The server's own session-id rule, applied before anything is sent (its words if broken)."""
    try:
        return parse_session_id(session_id)
    except InvalidSessionId as exc:
        raise BadRequest(str(exc), 400) from None


def _batch_results(response: httpx.Response) -> list[dict[str, Any]]:
    return _json_of(response)["results"]


def _verdicts(best_id: str, others: Iterable[str]) -> list[dict[str, Any]]:
    """The edits of "keep the best, reject the rest"."""
    return [{"image_id": best_id, "pick": "picked"}] + [
        {"image_id": image_id, "pick": "rejected"} for image_id in others if image_id != best_id
    ]


class _Calls:
    """The REST calls of a workspace, shared by both clients."""

    create = _Call("POST", "/api/sessions", _session_created)
    images = _Call("GET", "/api/images", _json_of)
    clear = _Call("DELETE", "/api/session", _nothing)

    @staticmethod
    def features(groups: str | Iterable[str] | None) -> _Call[Any]:
        return _Call("GET", "/api/features", _table, params=_group_names(groups), long=True)

    @staticmethod
    def annotate(image_id: str, patch: dict[str, Any]) -> _Call[dict[str, Any]]:
        return _Call("PATCH", _image_path(image_id, "/annotations"), _json_of, json=patch)

    @staticmethod
    def annotate_many(edits: list[dict[str, Any]]) -> _Call[list[dict[str, Any]]]:
        return _Call("PATCH", "/api/annotations", _batch_results, json={"edits": edits})

    @staticmethod
    def delete(image_id: str) -> _Call[None]:
        return _Call("DELETE", _image_path(image_id), _nothing)

    @staticmethod
    def similar(image_id: str, k: int) -> _Call[list[dict[str, Any]]]:
        return _Call("GET", _image_path(image_id, "/similar"), _similar_results, params={"k": str(k)}, long=True)

    @staticmethod
    def groups(gap: float | None, distance: int | None, near: int | None) -> _Call[list[dict[str, Any]]]:
        given = {"gap": gap, "distance": distance, "near": near}
        params = {name: str(value) for name, value in given.items() if value is not None}
        return _Call("GET", "/api/groups", _image_groups, params=params, long=True)


# -- what to upload --
@dataclass(frozen=True)
class _Source:
    """One file to upload: its name in the workspace, its size, and how to read it."""

    name: str
    size: int
    path: Path | None = None
    data: bytes | None = None

    def open(self) -> IO[bytes]:
        if self.data is not None:
            return io.BytesIO(self.data)
        assert self.path is not None
        return self.path.open("rb")


def _folder_sources(folder: Path) -> Iterator[_Source]:
    """Every file under ``folder`` (sorted, symlinked folders not followed), named
    ``folder/relative/path`` as the page names a dropped folder's files; OS junk is skipped, by the
    rule the server applies to ZIP members."""
    top = folder.resolve().name or "folder"
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            path = Path(root) / name
            relative = path.relative_to(folder)
            if not is_os_junk(relative.as_posix()) and path.is_file():
                yield _Source(f"{top}/{relative.as_posix()}", path.stat().st_size, path=path)


UploadItem = str | os.PathLike[str] | tuple[str, bytes]


def collect_sources(items: UploadItem | Iterable[UploadItem]) -> list[_Source]:
    """What ``upload`` sends: files, folders (walked) and ``(name, bytes)`` pairs, in order."""
    if isinstance(items, str | os.PathLike) or _is_pair(items):
        items = [items]  # type: ignore[list-item]
    sources: list[_Source] = []
    for item in items:  # type: ignore[union-attr]
        if _is_pair(item):
            name, data = item  # type: ignore[misc]
            sources.append(_Source(name, len(data), data=bytes(data)))
            continue
        path = Path(item)  # type: ignore[arg-type]
        if path.is_dir():
            sources.extend(_folder_sources(path))
        else:
            sources.append(_Source(path.name, path.stat().st_size, path=path))  # a missing file: OSError now
    return sources


def _is_pair(item: object) -> bool:
    return isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], bytes | bytearray | memoryview)


# -- what an upload did --
@dataclass(frozen=True)
class Rejection:
    """A file the server refused, and why (``error`` is the typed error, in the server's words)."""

    filename: str
    error: ApiError

    @property
    def status(self) -> int | None:
        return self.error.status

    @property
    def detail(self) -> str:
        return self.error.detail


@dataclass
class UploadReport:
    """What an upload did: ``accepted`` image records, ``duplicates`` (``{"filename", "existing"}``:
    bytes the workspace already held), ``rejected`` files, ``skipped`` archive members
    (``{"filename", "reason"}``), as the HTTP API reports them; ``annotations``, one per Darkroom
    archive with an ``annotations.json``: ``{"filename": the archive, "restored": [image names],
    "skipped": [{"filename", "reason"}], "detail": in plain words}``."""

    accepted: list[dict[str, Any]] = field(default_factory=list)
    duplicates: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    annotations: list[dict[str, Any]] = field(default_factory=list)

    @property
    def restored(self) -> list[str]:
        """The images whose annotations the upload's archives restored, by name."""
        return [name for restore in self.annotations for name in restore["restored"]]

    def raise_for_rejections(self) -> None:
        """Raise the first rejection's error (carrying this report as ``report``), if any."""
        if self.rejected:
            error = self.rejected[0].error
            error.report = self
            raise error


# -- the upload socket's protocol, without I/O --
class UploadProtocol:
    """``WS /api/ws/upload`` as a state machine: feed it what the server sends (``received``), send
    what ``outgoing`` returns (None: wait for the server's next message), until ``finished``.

    Per file a JSON header, then its bytes in ``CHUNK_BYTES`` messages; ``{"type": "done"}`` after
    the last. The server acknowledges every binary message with one ``progress``, in order, and
    answers each file with a ``result`` (by its header's index); a ZIP archive, sent like any file,
    is unpacked and answered with a ``result`` per member (and ``skipped``, ``annotations``). At
    most ``WINDOW_BYTES`` and ``MAX_CHUNKS_IN_FLIGHT`` chunks are unacknowledged and
    ``MAX_FILES_IN_FLIGHT`` files await their result, so neither side's buffers grow with the
    upload. A file the server refuses from its header or its first bytes (over a limit, or over the
    quota) is not sent further; one over the ``ready``
    message's ``max_file_bytes`` is announced but never sent, so the server says why in its words.
    An ``error`` message raises its ``ApiError``. ``progress`` is told each byte that is done
    (acknowledged, or refused)."""

    def __init__(self, sources: list[_Source], progress: Callable[[int], None] | None = None) -> None:
        self.sources = sources
        self.progress = progress or (lambda done: None)
        self.report = UploadReport()
        self.max_file_bytes: int | None = None
        self.chunk_bytes = CHUNK_BYTES
        self.announced = 0  # headers sent; the next file's index
        self.current: int | None = None  # the file whose bytes are being sent
        self.file: IO[bytes] | None = None
        self.remaining = 0  # its bytes not yet sent
        self.in_flight: deque[tuple[int, int]] = deque()  # (file index, chunk length) not yet acknowledged
        self.unacked_bytes = 0
        self.awaiting: set[int] = set()  # files announced whose result has not come
        self.done_sent = False
        self.finished = False
        self.summary: dict[str, Any] | None = None
        self.order: dict[str, list[int]] = {"accepted": [], "duplicates": [], "rejected": []}  # file indexes

    # -- what to send --
    def outgoing(self) -> str | bytes | None:
        if self.max_file_bytes is None or self.finished:
            return None  # the server's ``ready`` first
        if self.current is not None:
            return self._next_chunk()
        if self.announced < len(self.sources):
            if len(self.awaiting) >= MAX_FILES_IN_FLIGHT:
                return None
            return self._header()
        if not self.done_sent:
            self.done_sent = True
            return json.dumps({"type": "done"})
        return None

    def _header(self) -> str:
        index = self.announced
        source = self.sources[index]
        self.announced += 1
        self.awaiting.add(index)
        if 0 < source.size <= self.max_file_bytes:  # type: ignore[operator]
            self.current, self.file, self.remaining = index, source.open(), source.size
        return json.dumps({"filename": source.name, "size": source.size})

    def _next_chunk(self) -> bytes | None:
        length = min(self.chunk_bytes, self.remaining)
        if self.in_flight and (
            len(self.in_flight) >= MAX_CHUNKS_IN_FLIGHT or self.unacked_bytes + length > WINDOW_BYTES
        ):
            return None
        assert self.file is not None and self.current is not None
        chunk = self.file.read(length)
        if len(chunk) != length:
            name = self.sources[self.current].name
            self._stop_file()
            raise OSError(f"{name} changed while it was being uploaded")
        self.in_flight.append((self.current, length))
        self.unacked_bytes += length
        self.remaining -= length
        if self.remaining == 0:
            self._stop_file()
        return chunk

    def _stop_file(self) -> None:
        if self.file is not None:
            self.file.close()
        self.current, self.file, self.remaining = None, None, 0

    def close(self) -> None:
        """Close the file being read (the upload ended early)."""
        self._stop_file()

    # -- what the server said --
    def received(self, message: str | bytes) -> None:
        try:
            answer = json.loads(message)
        except ValueError:
            raise ServerError("the server sent a message that is not JSON on the upload socket") from None
        if not isinstance(answer, dict):
            raise ServerError("the server sent a message that is not a JSON object on the upload socket")
        kind = answer.get("type")
        if kind == "ready":
            self.max_file_bytes = int(answer.get("max_file_bytes") or 0)
            self.chunk_bytes = max(1, min(CHUNK_BYTES, int(answer.get("max_message_bytes") or CHUNK_BYTES)))
        elif kind == "progress":
            self._acknowledged()
        elif kind == "result":
            self._result(answer)
        elif kind == "skipped":
            self.report.skipped.append({"filename": answer.get("filename"), "reason": answer.get("detail")})
        elif kind == "annotations":
            self._annotations(answer)
        elif kind == "summary":
            self.summary = answer
            self.finished = True
        elif kind == "error":
            raise error_for(int(answer.get("status", 0)), answer)

    def _acknowledged(self) -> None:
        if not self.in_flight:
            raise ServerError("the server acknowledged bytes that were not sent")
        _, length = self.in_flight.popleft()
        self.unacked_bytes -= length
        self.progress(length)

    def _result(self, answer: dict[str, Any]) -> None:
        index = answer.get("file")
        if not isinstance(index, int) or not 0 <= index < self.announced:
            raise ServerError("the server sent a result for a file that was not announced")
        self.awaiting.discard(index)
        self._forget_unacknowledged(index)
        source = self.sources[index]
        filename = answer.get("filename") or source.name
        status = int(answer.get("status", 0))
        if status == 200:
            image, existing = answer.get("image"), answer.get("duplicate_of")
            if image:
                self._report("accepted", index, image)
            if existing:
                self._report("duplicates", index, {"filename": filename, "existing": existing})
        else:
            self._report("rejected", index, Rejection(filename, error_for(status, answer, filename=filename)))

    def _annotations(self, answer: dict[str, Any]) -> None:
        index = answer.get("file")
        if not isinstance(index, int) or not 0 <= index < self.announced:
            raise ServerError("the server sent annotations for a file that was not announced")
        restored, skipped = answer.get("restored"), answer.get("skipped")
        self.report.annotations.append(
            {
                "filename": self.sources[index].name,
                "restored": [str(name) for name in restored] if isinstance(restored, list) else [],
                "skipped": [item for item in skipped if isinstance(item, dict)] if isinstance(skipped, list) else [],
                "detail": str(answer.get("detail") or ""),
            }
        )

    def _report(self, kind: str, index: int, item: Any) -> None:
        """Add ``item`` to the report's list ``kind`` in the order the files were given (results
        come as each file's validation ends)."""
        order = self.order[kind]
        position = bisect.bisect_right(order, index)
        order.insert(position, index)
        getattr(self.report, kind).insert(position, item)

    def _forget_unacknowledged(self, index: int) -> None:
        """A result before all of a file's bytes were acknowledged means the server refused it from
        its header and drops its bytes: they will never be acknowledged, and the rest is not sent."""
        if self.current == index:
            self.progress(self.remaining)
            self._stop_file()
        dropped = [length for file, length in self.in_flight if file == index]
        if dropped:
            self.in_flight = deque(item for item in self.in_flight if item[0] != index)
            self.unacked_bytes -= sum(dropped)
            self.progress(sum(dropped))
        source = self.sources[index]
        if source.size > (self.max_file_bytes or 0):
            self.progress(source.size)  # announced only: never sent


# -- progress bars --
def _interactive() -> bool:
    """A person watches: stderr is a terminal, or this runs in a Jupyter kernel."""
    return "ipykernel" in sys.modules or (hasattr(sys.stderr, "isatty") and sys.stderr.isatty())


class _Bar:
    """A tqdm bar of bytes done, or nothing when tqdm is missing or nobody watches."""

    def __init__(self, total: int, show: bool | None) -> None:
        self.bar: Any = None
        if show is False or (show is None and not _interactive()):
            return
        try:
            from tqdm.auto import tqdm
        except ImportError:
            return
        self.bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc="upload")

    def add(self, done: int) -> None:
        if self.bar is not None and done:
            self.bar.update(done)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class _Upload:
    """One ``upload`` call, shared by both clients: every file, photos and ZIP archives alike,
    goes through ``protocol`` (the socket, at ``path``); ``finish`` gives the report (or raises its
    first rejection). A context manager: the progress bar closes with it."""

    def __init__(
        self, items: UploadItem | Iterable[UploadItem], progress: bool | None, restore_annotations: bool = False
    ) -> None:
        sources = collect_sources(items)
        self.bar = _Bar(sum(source.size for source in sources), progress)
        self.protocol = UploadProtocol(sources, self.bar.add)
        self.report = self.protocol.report
        self.path = "/api/ws/upload" + ("?restore_annotations=true" if restore_annotations else "")

    def finish(self, strict: bool) -> UploadReport:
        if strict:
            self.report.raise_for_rejections()
        return self.report

    def __enter__(self) -> _Upload:
        return self

    def __exit__(self, kind: object, error: BaseException | None, trace: object) -> None:
        self.protocol.close()
        self.bar.close()
        if isinstance(error, ApiError) and error.report is None:
            error.report = self.report  # what was stored before the upload broke off


class _Download:
    """An archive streamed to ``path``: written to ``path.part``, renamed once complete; an error
    answer's body is kept (bounded) to raise its error."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.target = Path(path)
        self.partial = self.target.with_name(self.target.name + ".part")
        self.call: _Call[None] = _Call("GET", "/api/images/archive", _nothing, long=True)
        self.status = 0
        self.error_body: _Body | None = None
        self.file: IO[bytes] | None = None

    def begin(self, status: int) -> None:
        self.status = status
        if status >= 400:
            self.error_body = _Body(status, MAX_ERROR_BODY_BYTES)
        else:
            self.file = self.partial.open("wb")

    def feed(self, chunk: bytes) -> None:
        if self.file is not None:
            self.file.write(chunk)
        elif self.error_body is not None:
            self.error_body.feed(chunk)

    def end(self, headers: httpx.Headers) -> Path:
        if self.error_body is not None:
            raise _Answer(self.status, headers, self.error_body.data()).error()
        assert self.file is not None
        self.file.close()
        self.file = None
        self.partial.replace(self.target)
        return self.target

    def abandon(self) -> None:
        """The download failed: no partial file is left behind."""
        if self.file is not None:
            self.file.close()
            self.file = None
            self.partial.unlink(missing_ok=True)


# -- events --
def _event(message: str | bytes) -> dict[str, Any]:
    """One message of ``WS /api/ws/events`` as a dict with its ``type``; an ``error`` raises."""
    try:
        event = json.loads(message)
    except ValueError:
        raise ServerError("the server sent an event that is not JSON") from None
    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
        raise ServerError("the server sent an event without a type")
    if event["type"] == "error":
        raise error_for(int(event.get("status", 0)), event)
    return event


def _lost(closed: ConnectionClosed, what: str) -> ConnectionLost:
    frame = closed.rcvd if closed.rcvd is not None else closed.sent  # sent: this side refused a message
    code, reason = (frame.code, frame.reason) if frame is not None else (None, "")
    detail = f"the server closed the {what} socket" + (f" ({code}: {reason})" if reason else f" ({code})")
    return ConnectionLost(detail, code)


def _refused_socket(refused: InvalidStatus, what: str) -> ApiError:
    """A handshake the server refused: its HTTP status carries no words, so say what it means."""
    status = refused.response.status_code
    if status == Forbidden.status and what == "events":
        # the session id was checked here, and scripts send no Origin: the workspace is unknown
        return NotFound("no such workspace: the session id is unknown or has expired", NotFound.status)
    return error_for(status, None)


class EventStream:
    """The workspace's live events (``WS /api/ws/events``), as dicts with a ``type``: first
    ``hello``, then ``image_added``, ``image_removed``, ``session_cleared``, ``progress``,
    ``annotation_changed``, ``presence_changed``. Iterate it; ``timeout`` bounds each wait
    (TimeoutError). Close it (or use ``with``) to leave the workspace's presence."""

    def __init__(self, connection: ClientConnection, held: ExitStack, timeout: float | None) -> None:
        self.connection = connection
        self.held = held
        self.timeout = timeout
        self.closed = False

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self

    def __next__(self) -> dict[str, Any]:
        if self.closed:
            raise StopIteration
        try:
            return _event(self.connection.recv(timeout=self.timeout))
        except ConnectionClosed as closed:
            if self.closed:
                raise StopIteration from None
            raise _lost(closed, "events") from None

    def close(self) -> None:
        self.closed = True
        self.held.close()

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncEventStream:
    """``EventStream`` for asyncio: ``async with workspace.events() as events: async for ...``
    (the socket opens on ``async with``, or on the first event)."""

    def __init__(self, workspace: AsyncWorkspace, name: str | None, timeout: float | None) -> None:
        self.workspace = workspace
        self.name = name
        self.timeout = timeout
        self.connection: AsyncConnection | None = None
        self.closed = False

    async def open(self) -> AsyncEventStream:
        if self.connection is None:
            self.connection = await self.workspace._connect("/api/ws/events", "events", self.name)
        return self

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self

    async def __anext__(self) -> dict[str, Any]:
        if self.closed:
            raise StopAsyncIteration
        connection = self.connection or (await self.open()).connection
        assert connection is not None
        try:
            async with asyncio.timeout(self.timeout):
                return _event(await connection.recv())
        except ConnectionClosed as closed:
            if self.closed:
                raise StopAsyncIteration from None
            raise _lost(closed, "events") from None

    async def aclose(self) -> None:
        self.closed = True
        if self.connection is not None:
            await self.connection.close()

    async def __aenter__(self) -> AsyncEventStream:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


# -- the two clients --
class _Base:
    """What both clients share: the server's address, the session and the limits."""

    def __init__(self, url: str, session_id: str | None, timeout: float, max_response_bytes: int) -> None:
        self.url = url.rstrip("/")
        self.ws_url = "ws" + self.url[len("http") :] if self.url.startswith("http") else self.url
        self.session_id: str | None = None if session_id is None else _checked_session_id(session_id)
        self.timeout = timeout
        self.max_response_bytes = max_response_bytes

    def _timeout(self, call: _Call[Any]) -> httpx.Timeout:
        return httpx.Timeout(self.timeout, read=LONG_TIMEOUT_SECONDS if call.long else self.timeout)

    def _request(self, call: _Call[Any], send: dict[str, Any]) -> dict[str, Any]:
        """``httpx``'s ``build_request`` arguments for ``call`` (``send``: its body and headers)."""
        return {
            "method": call.method,
            "url": call.path,
            "params": call.params,
            "json": call.json,
            "headers": {**self._session_headers(), **send.pop("headers", {})},
            "timeout": self._timeout(call),
            **send,
        }

    def _session_headers(self) -> dict[str, str]:
        return {} if self.session_id is None else {SESSION_HEADER: self.session_id}

    def _socket_options(self, path: str, name: str | None) -> tuple[str, dict[str, Any]]:
        query = f"?name={quote(name)}" if name else ""
        options = {
            "additional_headers": self._session_headers(),
            "compression": None,  # per-message deflate makes image uploads many times slower
            "max_size": MAX_MESSAGE_BYTES,
            "max_queue": MAX_QUEUED_MESSAGES,
            "open_timeout": self.timeout,
        }
        return self.ws_url + path + query, options

    def __repr__(self) -> str:
        shown = f"{self.session_id[:8]}..." if self.session_id else None  # the id is a secret
        return f"{type(self).__name__}({self.url!r}, session_id={shown!r})"


class Workspace(_Base):
    """One Darkroom workspace. ``session_id=None`` makes a new one (``POST /api/sessions``); an id
    opens that workspace (any well-formed id is a workspace to the server; ``events`` tells an
    unknown one by ``NotFound``). Use it as a context manager, or ``close`` it."""

    def __init__(
        self,
        url: str,
        session_id: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
    ) -> None:
        super().__init__(url, session_id, timeout, max_response_bytes)
        self.http = httpx.Client(base_url=self.url, timeout=timeout)
        if self.session_id is None:
            try:
                self.session_id = self._run(_Calls.create)
            except BaseException:
                self.http.close()
                raise

    def _run(self, call: _Call[T], **send: Any) -> T:
        response = self.http.send(self.http.build_request(**self._request(call, send)), stream=True)
        try:
            body = _Body(response.status_code, self.max_response_bytes)
            for chunk in response.iter_bytes():
                body.feed(chunk)
        finally:
            response.close()
        return call.finish(_Answer(response.status_code, response.headers, body.data()))

    def images(self) -> list[dict[str, Any]]:
        """The workspace's image records, in upload order (``{id, filename, format, width, height,
        size_bytes, sha256, uploaded_at, annotations}``)."""
        return self._run(_Calls.images)

    def features(self, groups: str | Iterable[str] | None = None) -> Any:
        """The feature table, one row per image (``GET /api/features``; ``groups`` as named in the
        catalogue, all default groups when omitted; ``exif_gps`` only when named): a pandas
        DataFrame, or a list of row dicts when pandas is not installed."""
        return self._run(_Calls.features(groups))

    def annotate(
        self,
        image_id: str,
        *,
        tags_add: Iterable[str] = (),
        tags_remove: Iterable[str] = (),
        rating: int | None = UNSET,
        note: str | None = None,
        expected_version: int | None = None,
        pick: str | None = UNSET,
    ) -> dict[str, Any]:
        """Change an image's shared annotations (every tab sees it at once); ``rating=None`` clears
        the rating, ``pick`` is ``"picked"``, ``"rejected"`` or ``None`` (no verdict). Returns them as
        they are now; a stale ``expected_version`` raises ``Conflict``."""
        patch = _annotation_patch(tags_add, tags_remove, rating, note, expected_version, pick)
        return self._run(_Calls.annotate(image_id, patch))

    def annotate_many(self, edits: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """A batch of edits in one call (at most 300), each ``{"image_id": ..., <annotate's fields>}``
        (``tags_add``, ``rating``, ``pick``, ...). Every edit is checked first: a bad one raises and
        nothing is applied. Returns one result per edit, in order: ``{"image_id", "annotations"}``
        or, for that image alone, ``{"image_id", "status", "detail"}`` (deleted meanwhile: 404)."""
        return self._run(_Calls.annotate_many(list(edits)))

    def keep_best(self, best_id: str, others: Iterable[str]) -> list[dict[str, Any]]:
        """Pick ``best_id`` and reject the ``others`` (a burst's suggestion, from ``groups()``), in
        one batch; returns ``annotate_many``'s results."""
        return self.annotate_many(_verdicts(best_id, others))

    def delete(self, image_id: str) -> None:
        """Delete one image of the workspace (``NotFound`` if it is not there)."""
        self._run(_Calls.delete(image_id))

    def clear(self) -> None:
        """Delete every image of the workspace."""
        self._run(_Calls.clear)

    def similar(self, image_id: str, k: int = 12) -> list[dict[str, Any]]:
        """More like this: the ``k`` (1 to 100) images of the workspace nearest to ``image_id`` by
        the catalogue's ``similarity`` vector, nearest first; each is an image record with its
        ``distance`` (0 to sqrt 2). The first call computes the vectors of images that have none."""
        return self._run(_Calls.similar(image_id, k))

    def groups(
        self, *, gap: float | None = None, distance: int | None = None, near: int | None = None
    ) -> list[dict[str, Any]]:
        """Bursts and near duplicates (``GET /api/groups``), each ``{id, kind, members, member_ids,
        best, reason, max_distance}``: frames at most ``gap`` seconds apart (server default 2) and
        ``distance`` pHash bits (default 12), or ``near`` bits at any time (default the server's
        near-duplicate distance). ``best`` is the frame to keep, ``reason`` says why."""
        return self._run(_Calls.groups(gap, distance, near))

    def archive(self, path: str | os.PathLike[str]) -> Path:
        """Save every original of the workspace as one ZIP at ``path`` (streamed: nothing is held
        in memory; written to ``path.part`` and renamed when complete). Returns the path."""
        download = _Download(path)
        request = self.http.build_request(**self._request(download.call, {}))
        response = self.http.send(request, stream=True)
        try:
            download.begin(response.status_code)
            for chunk in response.iter_bytes():
                download.feed(chunk)
            return download.end(response.headers)
        finally:
            download.abandon()
            response.close()

    def upload(
        self,
        paths: UploadItem | Iterable[UploadItem],
        *,
        strict: bool = True,
        progress: bool | None = None,
        restore_annotations: bool = False,
    ) -> UploadReport:
        """Upload files, folders (walked; OS junk skipped; names keep the folder's path) and
        ``(name, bytes)`` pairs, in order, over ``WS /api/ws/upload``; the server unpacks ZIP
        archives (known by their content). A Darkroom archive (``archive``) brings its annotations
        back into a workspace that was empty, or into any with ``restore_annotations``: the
        report's ``annotations`` and ``restored`` say what was restored and skipped.
        ``progress``: a tqdm bar of the bytes done (None: only on a terminal or in a notebook, and
        only with tqdm installed). Every file is sent; then, with ``strict``, the first rejected
        file's error is raised (its ``report`` says what the upload did), else the report is
        returned."""
        with _Upload(paths, progress, restore_annotations) as upload:
            if upload.protocol.sources:
                self._stream(upload.protocol, upload.path)
        return upload.finish(strict)

    def _stream(self, protocol: UploadProtocol, path: str) -> None:
        socket, held = self._connect(path, "upload")
        with held:
            try:
                while not protocol.finished:
                    message = protocol.outgoing()
                    if message is None:
                        protocol.received(socket.recv(timeout=self.timeout))
                    else:
                        socket.send(message)
            except ConnectionClosed as closed:
                for message in _drain(socket):  # the server's error message, if it sent one
                    protocol.received(message)
                raise _lost(closed, "upload") from None

    def _connect(self, path: str, what: str, name: str | None = None) -> tuple[ClientConnection, ExitStack]:
        """An open socket, and what closes it (websockets wants its ``connect`` entered)."""
        uri, options = self._socket_options(path, name)
        held = ExitStack()
        try:
            return held.enter_context(connect(uri, **options)), held
        except InvalidStatus as refused:
            raise _refused_socket(refused, what) from None

    def events(self, *, name: str | None = None, timeout: float | None = None) -> EventStream:
        """Join the workspace's presence (as ``name``) and stream its live events (``EventStream``);
        the socket is open when this returns. An unknown workspace raises ``NotFound``."""
        return EventStream(*self._connect("/api/ws/events", "events", name), timeout)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _drain(socket: ClientConnection) -> Iterator[str | bytes]:
    """What the server sent before it closed, still unread."""
    with contextlib.suppress(ConnectionClosed, TimeoutError):
        while True:
            yield socket.recv(timeout=DRAIN_SECONDS)


class AsyncWorkspace(_Base):
    """``Workspace`` for asyncio: ``async with AsyncWorkspace(url) as workspace:`` makes (or, with
    ``session_id``, opens) the workspace; every method is a coroutine, ``events`` an
    ``AsyncEventStream``."""

    def __init__(
        self,
        url: str,
        session_id: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
    ) -> None:
        super().__init__(url, session_id, timeout, max_response_bytes)
        self.http = httpx.AsyncClient(base_url=self.url, timeout=timeout)

    async def open(self) -> AsyncWorkspace:
        """Make the workspace if no session id was given (``async with`` does this)."""
        if self.session_id is None:
            self.session_id = await self._run(_Calls.create)
        return self

    async def _run(self, call: _Call[T], **send: Any) -> T:
        response = await self.http.send(self.http.build_request(**self._request(call, send)), stream=True)
        try:
            body = _Body(response.status_code, self.max_response_bytes)
            async for chunk in response.aiter_bytes():
                body.feed(chunk)
        finally:
            await response.aclose()
        return call.finish(_Answer(response.status_code, response.headers, body.data()))

    async def images(self) -> list[dict[str, Any]]:
        """See ``Workspace.images``."""
        await self.open()
        return await self._run(_Calls.images)

    async def features(self, groups: str | Iterable[str] | None = None) -> Any:
        """See ``Workspace.features``."""
        await self.open()
        return await self._run(_Calls.features(groups))

    async def annotate(
        self,
        image_id: str,
        *,
        tags_add: Iterable[str] = (),
        tags_remove: Iterable[str] = (),
        rating: int | None = UNSET,
        note: str | None = None,
        expected_version: int | None = None,
        pick: str | None = UNSET,
    ) -> dict[str, Any]:
        """See ``Workspace.annotate``."""
        await self.open()
        patch = _annotation_patch(tags_add, tags_remove, rating, note, expected_version, pick)
        return await self._run(_Calls.annotate(image_id, patch))

    async def annotate_many(self, edits: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """See ``Workspace.annotate_many``."""
        await self.open()
        return await self._run(_Calls.annotate_many(list(edits)))

    async def keep_best(self, best_id: str, others: Iterable[str]) -> list[dict[str, Any]]:
        """See ``Workspace.keep_best``."""
        return await self.annotate_many(_verdicts(best_id, others))

    async def delete(self, image_id: str) -> None:
        """See ``Workspace.delete``."""
        await self.open()
        await self._run(_Calls.delete(image_id))

    async def clear(self) -> None:
        """See ``Workspace.clear``."""
        await self.open()
        await self._run(_Calls.clear)

    async def similar(self, image_id: str, k: int = 12) -> list[dict[str, Any]]:
        """See ``Workspace.similar``."""
        await self.open()
        return await self._run(_Calls.similar(image_id, k))

    async def groups(
        self, *, gap: float | None = None, distance: int | None = None, near: int | None = None
    ) -> list[dict[str, Any]]:
        """See ``Workspace.groups``."""
        await self.open()
        return await self._run(_Calls.groups(gap, distance, near))

    async def upload(
        self,
        paths: UploadItem | Iterable[UploadItem],
        *,
        strict: bool = True,
        progress: bool | None = None,
        restore_annotations: bool = False,
    ) -> UploadReport:
        """See ``Workspace.upload`` (local files are read in 1 MiB blocking reads)."""
        await self.open()
        with _Upload(paths, progress, restore_annotations) as upload:
            if upload.protocol.sources:
                await self._stream(upload.protocol, upload.path)
        return upload.finish(strict)

    async def _stream(self, protocol: UploadProtocol, path: str) -> None:
        socket = await self._connect(path, "upload")
        async with socket:
            try:
                while not protocol.finished:
                    message = protocol.outgoing()
                    if message is None:
                        async with asyncio.timeout(self.timeout):
                            protocol.received(await socket.recv())
                    else:
                        await socket.send(message)
            except ConnectionClosed as closed:
                with contextlib.suppress(ConnectionClosed, TimeoutError):
                    while True:  # the server's error message, if it sent one before closing
                        async with asyncio.timeout(DRAIN_SECONDS):
                            protocol.received(await socket.recv())
                raise _lost(closed, "upload") from None

    async def _connect(self, path: str, what: str, name: str | None = None) -> AsyncConnection:
        await self.open()
        uri, options = self._socket_options(path, name)
        try:
            return await async_connect(uri, **options)
        except InvalidStatus as refused:
            raise _refused_socket(refused, what) from None

    def events(self, *, name: str | None = None, timeout: float | None = None) -> AsyncEventStream:
        """See ``Workspace.events``: use ``async with`` so the socket is open before what you wait for."""
        return AsyncEventStream(self, name, timeout)

    async def archive(self, path: str | os.PathLike[str]) -> Path:
        """See ``Workspace.archive``."""
        await self.open()
        download = _Download(path)
        request = self.http.build_request(**self._request(download.call, {}))
        response = await self.http.send(request, stream=True)
        try:
            download.begin(response.status_code)
            async for chunk in response.aiter_bytes():
                download.feed(chunk)
            return download.end(response.headers)
        finally:
            download.abandon()
            await response.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> AsyncWorkspace:
        try:
            return await self.open()
        except BaseException:
            await self.aclose()
            raise

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
