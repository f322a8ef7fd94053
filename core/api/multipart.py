"""multipart/form-data read from ``request.stream()`` into RAM, with limits while streaming.

Starlette's ``request.form()`` and ``UploadFile`` spool parts over 1 MiB to a temporary file;
this reader never touches the disk. Each limit raises as soon as it is passed, so the rest of the
body is never read:

* every part counts: at most ``max_files`` parts with a wanted field name and
  ``MAX_OTHER_PARTS`` parts with any other name (their bytes are counted, never kept);
* a part's header block is at most ``MAX_PART_HEADER_BYTES``;
* a file part is at most ``max_file_bytes`` (a ZIP archive, with ``max_archive_bytes``, more),
  any other part at most ``MAX_FIELD_BYTES``.

The part's name comes from ``filename``; ``filename*`` is ignored, as RFC 7578 §4.2 requires of
form data. Work per byte is constant: the parser scans each chunk once, kept data is written into
one growing buffer per part that becomes the part's bytes without a copy (so a part is never held
twice), and per-part decisions are taken once, when its headers end.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass, field

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from core.errors import BadRequest, DarkroomError, TooLarge
from core.ingest import is_zip
from core.units import format_bytes

MAX_FIELD_BYTES = 64 * 1024  # non-file fields are small by nature
MAX_PART_HEADER_BYTES = 16 * 1024  # a Content-Disposition and a Content-Type need a few hundred bytes
MAX_OTHER_PARTS = 16  # form fields besides the files (a browser form may add a few)
_ZIP_SNIFF_BYTES = 4


@dataclass(frozen=True)
class FilePart:
    field_name: str
    filename: str | None
    data: bytes


@dataclass
class _PartState:
    header_field: bytearray = field(default_factory=bytearray)
    header_value: bytearray = field(default_factory=bytearray)
    header_bytes: int = 0
    headers: dict[str, bytes] = field(default_factory=dict)
    name: str = ""
    filename: str | None = None
    wanted: bool = False  # a part named in ``field_names``: its bytes are kept
    is_file: bool = False
    limit: int = MAX_FIELD_BYTES
    # grown in place and handed over without a copy (``getvalue``): a part is held once, not twice
    buffer: io.BytesIO = field(default_factory=io.BytesIO)
    size: int = 0
    head: bytes = b""


def _filename(params: dict[bytes, bytes]) -> str | None:
    """The part's file name from ``filename`` (``filename*`` is not used in form data)."""
    raw = params.get(b"filename")
    if raw is None:
        return None
    # Browsers escape exactly these three in multipart file names (HTML form-data encoding).
    for escaped, char in ((b"%22", b'"'), (b"%0D", b"\r"), (b"%0A", b"\n")):
        raw = raw.replace(escaped, char)
    return raw.decode("utf-8", "replace")


def boundary_of(request: Request) -> bytes:
    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    if content_type != b"multipart/form-data" or not params.get(b"boundary"):
        raise BadRequest("expected a multipart/form-data body (an HTML form or curl -F)")
    return params[b"boundary"]


def _too_large(limit: int) -> TooLarge:
    return TooLarge(f"a file is over the {format_bytes(limit)} limit per file")


class _FormReader:
    """The parser's callbacks for one body: every part counted, the wanted ones kept (``done``),
    each limit raised from inside the parser as soon as it is passed."""

    def __init__(
        self, field_names: set[str], max_file_bytes: int, max_files: int, max_archive_bytes: int | None
    ) -> None:
        self.field_names = field_names
        self.max_file_bytes = max_file_bytes
        self.max_files = max_files
        self.max_archive_bytes = max_archive_bytes
        self.state = _PartState()
        self.done: list[FilePart] = []  # parts completed and not yet handed out
        self.files = 0
        self.others = 0

    def callbacks(self) -> dict[str, Callable[..., None]]:
        return {
            "on_part_begin": self.on_part_begin,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
        }

    def on_part_begin(self) -> None:
        self.state = _PartState()

    def count_header_bytes(self, amount: int) -> None:
        self.state.header_bytes += amount
        if self.state.header_bytes > MAX_PART_HEADER_BYTES:
            raise TooLarge(f"a part's headers are over {format_bytes(MAX_PART_HEADER_BYTES)}")

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.count_header_bytes(end - start)
        self.state.header_field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.count_header_bytes(end - start)
        self.state.header_value += data[start:end]

    def on_header_end(self) -> None:
        state = self.state
        state.headers[bytes(state.header_field).lower().decode("latin-1")] = bytes(state.header_value)
        state.header_field.clear()
        state.header_value.clear()

    def on_headers_finished(self) -> None:
        state = self.state
        disposition = state.headers.get("content-disposition", b"")
        _, params = parse_options_header(disposition)
        state.name = params.get(b"name", b"").decode("utf-8", "replace")
        state.wanted = state.name in self.field_names
        state.filename = _filename(params)
        state.is_file = b"filename" in disposition  # a part with only ``filename*`` is still a file
        state.limit = self.max_file_bytes if state.is_file else MAX_FIELD_BYTES
        if state.wanted:
            self.files += 1
            if self.files > self.max_files:
                raise TooLarge(f"at most {self.max_files} files can be sent at once")
        else:
            self.others += 1
            if self.others > MAX_OTHER_PARTS:
                expected = " or ".join(repr(name) for name in sorted(self.field_names))
                raise TooLarge(
                    f"at most {MAX_OTHER_PARTS} form fields besides the files can be sent at once; "
                    f"send each file in a part named {expected}"
                )

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        state = self.state
        state.size += end - start
        if state.is_file and len(state.head) < _ZIP_SNIFF_BYTES:
            state.head += data[start : min(end, start + _ZIP_SNIFF_BYTES - len(state.head))]
            if self.max_archive_bytes is not None and is_zip(state.head):
                state.limit = self.max_archive_bytes
        if state.size > state.limit:
            raise _too_large(state.limit) if state.is_file else BadRequest("a form field is too long")
        if state.wanted:
            state.buffer.write(memoryview(data)[start:end])

    def on_part_end(self) -> None:
        state = self.state
        if not state.wanted:
            return
        self.done.append(FilePart(state.name, state.filename, state.buffer.getvalue()))
        state.buffer = io.BytesIO()

    def take_done(self) -> list[FilePart]:
        """The parts completed since the last call."""
        ready, self.done = self.done, []
        return ready


async def iter_file_parts(
    request: Request,
    boundary: bytes,
    field_names: set[str],
    max_file_bytes: int,
    max_files: int,
    max_body_bytes: int,
    max_archive_bytes: int | None = None,
    chunks: AsyncIterable[bytes] | None = None,
) -> AsyncIterator[FilePart]:
    """Yield each part named in ``field_names`` as soon as it is complete. With
    ``max_archive_bytes``, a file whose content starts like a ZIP archive may grow to that size.
    The body is read from ``chunks`` (default: ``request.stream()``; uploads pass
    ``core.inflight.IncomingBody.chunks()``, which is only started once the declared length passed).
    Raises TooLarge (413) or BadRequest (400) as soon as a limit is passed."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_body_bytes:
        raise TooLarge(
            f"the upload is {format_bytes(int(declared))}; at most {format_bytes(max_body_bytes)} can be sent at once"
        )
    reader = _FormReader(field_names, max_file_bytes, max_files, max_archive_bytes)
    parser = MultipartParser(boundary, reader.callbacks())
    received = 0
    async for chunk in request.stream() if chunks is None else chunks:
        received += len(chunk)
        if received > max_body_bytes:
            raise TooLarge(f"at most {format_bytes(max_body_bytes)} can be sent at once")
        failure: DarkroomError | None = None
        try:
            parser.write(chunk)
        except MultipartParseError as exc:
            failure = BadRequest(f"the multipart body is malformed ({exc})")
        except DarkroomError as exc:
            failure = exc
        for part in reader.take_done():  # parts completed before the failure in the same chunk still count
            yield part
        if failure is not None:
            raise failure
    try:
        parser.finalize()
    except MultipartParseError as exc:
        raise BadRequest(f"the multipart body is malformed ({exc})") from None
    for part in reader.take_done():
        yield part
