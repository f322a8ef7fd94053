"""multipart/form-data read from ``request.stream()`` into RAM, with limits while streaming.

Starlette's ``request.form()`` and ``UploadFile`` spool parts over 1 MiB to a temporary file;
this reader never touches the disk. Each limit raises as soon as it is passed, so the rest of the
body is never read.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import unquote_to_bytes

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from core.errors import BadRequest, DarkroomError, TooLarge
from core.ingest import is_zip

_MAX_FIELD_BYTES = 64 * 1024  # non-file fields are small by nature


@dataclass(frozen=True)
class FilePart:
    field_name: str
    filename: str | None
    data: bytes


@dataclass
class _PartState:
    header_field: bytearray = field(default_factory=bytearray)
    header_value: bytearray = field(default_factory=bytearray)
    headers: dict[str, bytes] = field(default_factory=dict)
    chunks: list[bytes] = field(default_factory=list)
    size: int = 0
    head: bytes = b""


_EXTENDED_FILENAME = re.compile(rb"filename\*\s*=\s*([^;]+)", re.IGNORECASE)


def _filename(disposition: bytes, params: dict[bytes, bytes]) -> str | None:
    """The part's file name, preferring RFC 5987 ``filename*=UTF-8''...`` when present."""
    extended = _EXTENDED_FILENAME.search(disposition)
    if extended:
        charset, _, rest = extended.group(1).strip().strip(b'"').partition(b"'")
        _, _, encoded = rest.partition(b"'")
        try:
            return unquote_to_bytes(encoded).decode(charset.decode("ascii") or "utf-8", "replace")
        except LookupError:
            pass
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


def _size(n: int) -> str:
    return f"{n / 2**20:.0f} MiB" if n >= 2**20 else f"{n / 1024:.0f} KiB"


def _too_large(limit: int) -> TooLarge:
    return TooLarge(f"a file is over the {_size(limit)} limit per file")


async def iter_file_parts(
    request: Request,
    boundary: bytes,
    field_names: set[str],
    max_file_bytes: int,
    max_files: int,
    max_body_bytes: int,
    max_archive_bytes: int | None = None,
) -> AsyncIterator[FilePart]:
    """Yield each part named in ``field_names`` as soon as it is complete. With
    ``max_archive_bytes``, a file whose content starts like a ZIP archive may grow to that size."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_body_bytes:
        raise TooLarge(
            f"the upload is {int(declared) / 2**20:.1f} MiB; at most "
            f"{max_body_bytes / 2**20:.0f} MiB can be sent at once"
        )
    state = _PartState()
    done: list[FilePart] = []
    count = 0

    def on_part_begin() -> None:
        nonlocal state
        state = _PartState()

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state.header_field += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state.header_value += data[start:end]

    def on_header_end() -> None:
        state.headers[bytes(state.header_field).lower().decode("latin-1")] = bytes(state.header_value)
        state.header_field.clear()
        state.header_value.clear()

    def on_part_data(data: bytes, start: int, end: int) -> None:
        state.size += end - start
        if len(state.head) < 4:
            state.head += data[start : min(end, start + 4 - len(state.head))]
        is_file = b"filename" in state.headers.get("content-disposition", b"")
        limit = max_file_bytes if is_file else _MAX_FIELD_BYTES
        if is_file and max_archive_bytes is not None and is_zip(state.head):
            limit = max_archive_bytes
        if state.size > limit:
            raise _too_large(limit) if is_file else BadRequest("a form field is too long")
        state.chunks.append(data[start:end])

    def on_part_end() -> None:
        nonlocal count
        _, params = parse_options_header(state.headers.get("content-disposition", b""))
        name = params.get(b"name", b"").decode("utf-8", "replace")
        if name not in field_names:
            return
        count += 1
        if count > max_files:
            raise TooLarge(f"at most {max_files} files can be sent at once")
        filename = _filename(state.headers.get("content-disposition", b""), params)
        done.append(FilePart(name, filename, b"".join(state.chunks)))
        state.chunks = []

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        },
    )
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > max_body_bytes:
            raise TooLarge(f"at most {max_body_bytes / 2**20:.0f} MiB can be sent at once")
        failure: DarkroomError | None = None
        try:
            parser.write(chunk)
        except MultipartParseError as exc:
            failure = BadRequest(f"the multipart body is malformed ({exc})")
        except DarkroomError as exc:
            failure = exc
        while done:  # parts completed before the failure in the same chunk still count
            yield done.pop(0)
        if failure is not None:
            raise failure
    try:
        parser.finalize()
    except MultipartParseError as exc:
        raise BadRequest(f"the multipart body is malformed ({exc})") from None
    while done:
        yield done.pop(0)
