"""Guarded ZIP reading: every check on the whole archive before one byte is decompressed.

Python's ``zipfile`` trusts too much for an upload endpoint (it raises on badly flagged UTF-8
names and does not refuse overlapping members), so the central directory is parsed here:

* refused as a whole (422): not a ZIP, unsafe member paths (absolute, drive letters, ``..``),
  symbolic links, encryption, compression other than stored and deflate, duplicate names,
  overlapping members;
* refused as a whole (413): more entries than allowed, declared total or ratio over the limits,
  and a member that unpacks to more than its header declares (a lying header is a bomb);
* one member refused (413) without inflating a byte: declared over the per-file limit.

No member is ever inflated past its declared size + 1 byte, so the bytes produced are bounded by
the declared total (checked first) and nothing is inflated in full just to be refused.
* skipped silently: directories and OS junk (``__MACOSX/``, ``.DS_Store``, ``Thumbs.db``, ...);
* skipped and reported: nested archives (never opened).
"""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from core.config import Settings
from core.errors import CorruptImage, TooLarge, UnsafeArchive
from core.units import format_bytes

_EOCD = struct.Struct("<4sHHHHIIH")
_EOCD64_LOCATOR = struct.Struct("<4sIQI")
_EOCD64 = struct.Struct("<4sQHHIIQQQQ")
_CENTRAL = struct.Struct("<4sHHHHHHIIIHHHHHII")
_LOCAL = struct.Struct("<4sHHHHHIIIHH")

# What operating systems leave beside files; skipped silently in archives and in the page's folder drops.
OS_JUNK_NAMES = frozenset({".ds_store", "thumbs.db", "desktop.ini", "ehthumbs.db", ".directory", "icon\r"})
OS_JUNK_FOLDERS = ("__MACOSX",)  # a folder of these names holds junk only
OS_JUNK_PREFIXES = ("._",)  # macOS resource forks: "._photo.jpg"
_ARCHIVE_SUFFIXES = (".zip", ".7z", ".rar", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".zst", ".cbz", ".jar")
_ARCHIVE_MAGIC = (b"PK\x03\x04", b"\x1f\x8b", b"7z\xbc\xaf\x27\x1c", b"Rar!", b"BZh", b"\xfd7zXZ")
_DRIVE = re.compile(r"^[A-Za-z]:")
_CHUNK = 64 * 1024
# Members producing less than this are not ratio-checked: a tiny flat image can compress 1000:1
# and still be harmless. Larger output must stay under the configured ratio.
RATIO_FLOOR_BYTES = 1024 * 1024


@dataclass(frozen=True)
class ZipEntry:
    name: str  # as stored in the archive (leniently decoded), '/' separators
    method: int
    flags: int
    crc: int
    compressed_size: int
    size: int
    data_offset: int


@dataclass(frozen=True)
class ZipMember:
    name: str
    data: bytes


@dataclass(frozen=True)
class ZipProblem:
    """A member that is not taken: ``status`` None means skipped (not an image), else rejected."""

    name: str
    reason: str
    status: int | None = None


def _fail(message: str) -> UnsafeArchive:
    return UnsafeArchive(f"the archive was refused: {message}")


def _decode_name(raw: bytes, flags: int) -> str:
    if flags & 0x800:
        return raw.decode("utf-8", errors="replace")
    try:
        return raw.decode("utf-8")  # many tools write UTF-8 without setting the flag
    except UnicodeDecodeError:
        return raw.decode("cp437")


def _zip64_values(extra: bytes, wanted: int) -> list[int]:
    pos = 0
    while pos + 4 <= len(extra):
        tag, length = struct.unpack_from("<HH", extra, pos)
        if tag == 0x0001:
            body = extra[pos + 4 : pos + 4 + length]
            if len(body) < 8 * wanted:
                break
            return list(struct.unpack_from(f"<{wanted}Q", body))
        pos += 4 + length
    raise _fail("a ZIP64 size field is missing")


def _is_unsafe_path(name: str) -> bool:
    path = name.replace("\\", "/")
    if path.startswith("/") or _DRIVE.match(path):
        return True
    return any(part == ".." for part in path.split("/"))


def is_os_junk(name: str) -> bool:
    """Whether the path ``name`` is something an operating system left there (``OS_JUNK_*``)."""
    parts = [p for p in name.replace("\\", "/").split("/") if p]
    if not parts:
        return True
    if any(p in OS_JUNK_FOLDERS for p in parts):
        return True
    base = parts[-1].lower()
    return base in OS_JUNK_NAMES or base.startswith(OS_JUNK_PREFIXES)


def read_central_directory(data: bytes, settings: Settings) -> list[ZipEntry]:
    """All members, after every whole-archive check. Raises UnsafeArchive (422) or TooLarge (413)."""
    if len(data) > settings.zip_max_archive_bytes:
        raise TooLarge(
            f"the archive is {format_bytes(len(data))}; the limit is {format_bytes(settings.zip_max_archive_bytes)}"
        )
    eocd_pos = data.rfind(b"PK\x05\x06", max(0, len(data) - 65557))
    if eocd_pos < 0 or len(data) - eocd_pos < _EOCD.size:
        raise UnsafeArchive("not a valid ZIP archive (no end-of-archive record; is it truncated?)")
    _, disk, cd_disk, _, total, cd_size, cd_offset, _ = _EOCD.unpack_from(data, eocd_pos)
    cd_end = eocd_pos
    zip64_at = eocd_pos - _EOCD64_LOCATOR.size - _EOCD64.size
    if (total == 0xFFFF or cd_size == 0xFFFFFFFF or cd_offset == 0xFFFFFFFF) and zip64_at >= 0:
        loc = _EOCD64_LOCATOR.unpack_from(data, eocd_pos - _EOCD64_LOCATOR.size)
        if loc[0] == b"PK\x06\x07":
            # Read the ZIP64 record where it must sit (right before its locator), as zipfile does:
            # the locator's offset does not count bytes prepended to the archive.
            rec = _EOCD64.unpack_from(data, zip64_at)
            if rec[0] != b"PK\x06\x06":
                raise UnsafeArchive("not a valid ZIP archive (damaged ZIP64 record)")
            disk, cd_disk, total, cd_size, cd_offset = rec[4], rec[5], rec[7], rec[8], rec[9]
            cd_end = zip64_at
    if disk != 0 or cd_disk != 0:
        raise _fail("multi-part (spanned) archives are not supported")
    if total > settings.zip_max_entries:
        raise TooLarge(f"the archive has {total} entries; the limit is {settings.zip_max_entries}")
    # Bytes prepended to the archive (self-extractors) shift every offset by the same amount.
    shift = cd_end - cd_size - cd_offset
    if shift < 0 or cd_end - cd_size < 0:
        raise UnsafeArchive("not a valid ZIP archive (the central directory is out of bounds)")
    cd_start = cd_offset + shift
    entries = _parse_entries(data, cd_start, cd_end, shift, settings)
    if len(entries) != total:
        raise UnsafeArchive("not a valid ZIP archive (the entry count does not match the directory)")
    _check_layout(entries, data, cd_start)
    _check_declared_sizes(entries, settings)
    return entries


def _parse_entries(data: bytes, start: int, end: int, shift: int, settings: Settings) -> list[ZipEntry]:
    entries: list[ZipEntry] = []
    seen: set[str] = set()
    pos = start
    while pos < end:
        if pos + _CENTRAL.size > end:
            raise UnsafeArchive("not a valid ZIP archive (truncated central directory)")
        fields = _CENTRAL.unpack_from(data, pos)
        if fields[0] != b"PK\x01\x02":
            raise UnsafeArchive("not a valid ZIP archive (damaged central directory)")
        (
            _,
            made_by,
            _,
            flags,
            method,
            _,
            _,
            crc,
            csize,
            usize,
            name_len,
            extra_len,
            comment_len,
            _,
            _,
            ext_attr,
            offset,
        ) = fields
        name_start = pos + _CENTRAL.size
        raw_name = data[name_start : name_start + name_len]
        extra = data[name_start + name_len : name_start + name_len + extra_len]
        pos = name_start + name_len + extra_len + comment_len
        if pos > end:
            raise UnsafeArchive("not a valid ZIP archive (truncated central directory)")
        if len(entries) >= settings.zip_max_entries:
            raise TooLarge(f"the archive has more than {settings.zip_max_entries} entries")
        wanted = [usize == 0xFFFFFFFF, csize == 0xFFFFFFFF, offset == 0xFFFFFFFF]
        if any(wanted):
            values = iter(_zip64_values(extra, sum(wanted)))
            usize = next(values) if wanted[0] else usize
            csize = next(values) if wanted[1] else csize
            offset = next(values) if wanted[2] else offset
        name = _decode_name(raw_name, flags)
        shown = name.replace("\\", "/")
        if _is_unsafe_path(name):
            raise _fail(f"member {_quote(shown)} has an unsafe path (absolute or with '..')")
        if (made_by >> 8) in (3, 19) and (ext_attr >> 16) & 0o170000 == 0o120000:
            raise _fail(f"member {_quote(shown)} is a symbolic link")
        if flags & 0x1 or method == 99:
            raise _fail(f"member {_quote(shown)} is encrypted")
        if method not in (0, 8):
            raise _fail(
                f"member {_quote(shown)} uses compression method {method}; only stored and deflate members are read"
            )
        if shown in seen:
            raise _fail(f"the name {_quote(shown)} appears twice")
        seen.add(shown)
        entries.append(ZipEntry(shown, method, flags, crc, csize, usize, offset + shift))
    return entries


def _check_layout(entries: list[ZipEntry], data: bytes, cd_start: int) -> None:
    """Resolve each member's data offset from its local header; refuse overlapping members."""
    ordered = sorted(range(len(entries)), key=lambda i: entries[i].data_offset)
    previous_end = 0
    for i in ordered:
        entry = entries[i]
        header_at = entry.data_offset
        if header_at < previous_end:
            raise _fail("members overlap (a known ZIP-bomb construction)")
        if header_at + _LOCAL.size > cd_start:
            raise UnsafeArchive("not a valid ZIP archive (a member lies outside the archive)")
        local = _LOCAL.unpack_from(data, header_at)
        if local[0] != b"PK\x03\x04":
            raise UnsafeArchive("not a valid ZIP archive (damaged member header)")
        data_at = header_at + _LOCAL.size + local[9] + local[10]
        data_end = data_at + entry.compressed_size
        if data_end > cd_start:
            raise UnsafeArchive("not a valid ZIP archive (a member runs past the end; is it truncated?)")
        previous_end = data_end
        entries[i] = ZipEntry(
            entry.name, entry.method, entry.flags, entry.crc, entry.compressed_size, entry.size, data_at
        )


def _check_declared_sizes(entries: list[ZipEntry], settings: Settings) -> None:
    total = sum(e.size for e in entries)
    if total > settings.zip_max_total_bytes:
        raise TooLarge(
            f"the archive would unpack to {format_bytes(total)}; the limit is "
            f"{format_bytes(settings.zip_max_total_bytes)}"
        )
    for e in entries:
        if e.size > _ratio_cap(e, settings):
            raise _ratio_error(e, settings)


def inflate_bounded(raw: bytes | memoryview, limit: int) -> tuple[bytes, bool]:
    """Inflate a raw deflate stream, producing at most ``limit + 1`` bytes (so ``len(out) > limit``
    tells the caller the stream holds more), in bounded chunks. Returns the output and whether the
    stream ended. Raises CorruptImage when the deflate data is damaged."""
    view = memoryview(raw)
    inflater = zlib.decompressobj(-15)
    parts: list[bytes] = []
    produced = 0
    offset = 0
    tail: bytes | memoryview = b""
    try:
        while produced <= limit and not inflater.eof:
            if not tail and offset < len(view):
                tail = view[offset : offset + _CHUNK]
                offset += len(tail)
            before = offset - len(tail)
            piece = inflater.decompress(tail, min(_CHUNK, limit + 1 - produced))
            tail = inflater.unconsumed_tail
            if not piece and offset - len(tail) == before:
                break  # no input left and no output pending: the stream is cut short
            produced += len(piece)
            parts.append(piece)
    except zlib.error as exc:
        raise CorruptImage(f"the compressed data is damaged ({exc})") from None
    return b"".join(parts), inflater.eof


def _read_member(data: bytes, entry: ZipEntry, limit: int) -> bytes:
    """The member's bytes, of which at most ``limit + 1`` are ever produced: a longer result means
    the member holds more than ``limit``. Raises CorruptImage when the data is damaged."""
    raw = memoryview(data)[entry.data_offset : entry.data_offset + entry.compressed_size]
    if entry.method == 0:
        if entry.compressed_size != entry.size:
            raise CorruptImage("the member is damaged (its stored size does not match the archive)")
        return bytes(raw[: limit + 1])
    out, _ = inflate_bounded(raw, limit)
    return out


def _check_content(entry: ZipEntry, content: bytes) -> None:
    if len(content) != entry.size or zlib.crc32(content) != entry.crc:
        raise CorruptImage("the member is damaged (its size or checksum does not match the archive)")


def _ratio_cap(entry: ZipEntry, settings: Settings) -> int:
    return max(RATIO_FLOOR_BYTES, int(settings.zip_max_ratio * max(entry.compressed_size, 1)))


def iter_members(
    data: bytes, settings: Settings, limits: Mapping[str, int] | None = None
) -> Iterator[ZipMember | ZipProblem]:
    """Yield each member's bytes, or why it is not taken, in archive order.

    Whole-archive problems raise before anything is yielded. A member is inflated no further than
    its declared size + 1 byte (and never past the archive's remaining budget or the ratio), so a
    header that lies raises TooLarge at that member, cheaply, while iterating: callers must not
    keep what was yielded when that happens. A member declared over the per-file limit (or over
    its own in ``limits``, by the name's last part: the round trip's ``annotations.json``) is refused (413)
    without being inflated; its declared size counts toward the unpacked total."""
    entries = read_central_directory(data, settings)
    produced_total = 0
    for entry in entries:
        if entry.name.endswith("/") or is_os_junk(entry.name):
            continue
        if entry.name.lower().endswith(_ARCHIVE_SUFFIXES):
            yield ZipProblem(entry.name, "nested archives are not opened")
            continue
        per_file = settings.max_file_bytes
        if limits is not None:
            per_file = limits.get(entry.name.rsplit("/", 1)[-1], per_file)
        if entry.size > per_file:
            produced_total += entry.size
            _check_total(produced_total, settings)
            yield ZipProblem(entry.name, f"the file is over the {format_bytes(per_file)} limit", 413)
            continue
        budget = settings.zip_max_total_bytes - produced_total
        limit = min(entry.size, budget, _ratio_cap(entry, settings))
        try:
            content = _read_member(data, entry, limit)
        except CorruptImage as exc:
            yield ZipProblem(entry.name, exc.message, 422)
            continue
        produced_total += len(content)
        if len(content) > limit:
            _check_total(produced_total, settings)
            if len(content) > _ratio_cap(entry, settings):
                raise _ratio_error(entry, settings)
            raise TooLarge(
                f"member {_quote(entry.name)} unpacks to more than the {entry.size} bytes its header declares "
                "(a likely ZIP bomb)"
            )
        try:
            _check_content(entry, content)
        except CorruptImage as exc:
            yield ZipProblem(entry.name, exc.message, 422)
            continue
        if content.startswith(_ARCHIVE_MAGIC):
            yield ZipProblem(entry.name, "nested archives are not opened")
            continue
        yield ZipMember(entry.name, content)


def _check_total(produced_total: int, settings: Settings) -> None:
    if produced_total > settings.zip_max_total_bytes:
        raise TooLarge(f"the archive unpacks to more than {format_bytes(settings.zip_max_total_bytes)}")


def _ratio_error(entry: ZipEntry, settings: Settings) -> TooLarge:
    return TooLarge(
        f"member {_quote(entry.name)} is compressed more than {settings.zip_max_ratio:g}:1 (a likely ZIP bomb)"
    )


def _quote(name: str) -> str:
    cleaned = "".join(ch if ch.isprintable() else "?" for ch in name)
    return repr(cleaned[:120])
