"""TIFF (classic, either byte order), one page or many.

Structure check: the IFD chain is walked as Pillow walks it: pages counted (against ``max_frames``),
a chain that loops ends at the loop, every page needs a size within the cap, and:

* ``MAX_TIFF_ENTRIES`` = 100,000 tag entries over all pages;
* ``MAX_TIFF_SEGMENTS`` = 1,000,000 strips or tiles over all pages (Pillow builds one Python tuple per
  strip or tile on every page it visits);
* ``TILE_SLACK`` = 1024: a tile may be at most this many pixels wider or taller than its page (tiles
  are padded to multiples of 16, not to absurd sizes), and never over ``max_pixels``.

Out-of-line tag values are bounded by Pillow itself (their total may not exceed the file's size).
BigTIFF is not on the allow-list (``core.formats._refused`` names it).

Decode: Pillow's own plugin. Integer and float pages are scaled to their own range for the thumbnail
(``core.ingest``); ``core.features.decode`` reads big uncompressed pages a band of rows at a time.
The size is not read at a glance (it sits in an IFD anywhere in the file).
"""

from __future__ import annotations

import struct

from core.config import Settings
from core.errors import CorruptImage, TooLarge
from core.formats._base import ImageFormat, check_area, check_frame_count

MAX_TIFF_ENTRIES = 100_000
MAX_TIFF_SEGMENTS = 1_000_000
TILE_SLACK = 1024

_BYTE_ORDERS = (b"II*\x00", b"MM\x00*")
# TIFF field types -> bytes per value (Pillow's table, classic TIFF).
_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4, 16: 8, 17: 8}
_INTEGER_FORMATS = {1: "B", 3: "H", 4: "I", 16: "Q"}
_WIDTH, _LENGTH = 256, 257
_STRIP_OFFSETS, _TILE_OFFSETS = 273, 324
_TILE_WIDTH, _TILE_LENGTH = 322, 323
_SIZE_TAGS = frozenset({_WIDTH, _LENGTH, _TILE_WIDTH, _TILE_LENGTH})
_SEGMENT_TAGS = frozenset({_STRIP_OFFSETS, _TILE_OFFSETS})


def _accept(prefix: bytes) -> bool:
    return prefix[:4] in _BYTE_ORDERS


def _check(data: bytes, settings: Settings) -> None:
    """Walk the IFD chain: page count, loop, entry budget, page sizes, tile sizes, strip/tile counts."""
    order = "<" if data[:2] == b"II" else ">"
    end = len(data)
    if end < 8:
        raise CorruptImage("the TIFF is cut off inside its header")
    (offset,) = struct.unpack_from(order + "I", data, 4)
    seen: set[int] = set()
    pages = 0
    entries_total = 0
    segments_total = 0
    while offset and offset not in seen:  # a chain that loops ends at the loop, as in Pillow
        seen.add(offset)
        pages += 1
        check_frame_count(pages, f"the TIFF has more than {settings.max_frames} pages", settings)
        what = f"page {pages} of the TIFF"
        if offset + 2 > end:
            raise CorruptImage(f"{what} lies outside the file (at byte {offset} of {end})")
        (count,) = struct.unpack_from(order + "H", data, offset)
        entries_total += count
        if entries_total > MAX_TIFF_ENTRIES:
            raise TooLarge(
                f"the TIFF's pages hold more than {MAX_TIFF_ENTRIES} tag entries in total; "
                f"the limit is {MAX_TIFF_ENTRIES}"
            )
        entries_end = offset + 2 + 12 * count
        if entries_end > end:
            raise CorruptImage(f"{what} is cut off (its {count} tag entries run past the end of the file)")
        values, segments = _read_ifd(data, order, offset + 2, count)
        segments_total += segments
        if segments_total > MAX_TIFF_SEGMENTS:
            raise TooLarge(
                f"the TIFF's pages hold more than {MAX_TIFF_SEGMENTS} strips or tiles in total; "
                f"the limit is {MAX_TIFF_SEGMENTS}"
            )
        _check_page(what, values, settings)
        offset = struct.unpack_from(order + "I", data, entries_end)[0] if entries_end + 4 <= end else 0


def _read_ifd(data: bytes, order: str, pos: int, count: int) -> tuple[dict[int, int | None], int]:
    """The page's size tags (first value; None when not an integer type) and its strip or tile count.

    As in Pillow, the first entry of a tag wins and entries of unknown types or with values outside
    the file are skipped."""
    values: dict[int, int | None] = {}
    segments = 0
    entry = struct.Struct(order + "HHII")
    end = len(data)
    for index in range(count):
        at = pos + 12 * index
        tag, kind, n, inline = entry.unpack_from(data, at)
        unit = _TYPE_SIZES.get(kind)
        if unit is None:
            continue
        if tag in _SIZE_TAGS and n >= 1 and tag not in values:
            value_at = at + 8 if n * unit <= 4 else inline
            if value_at + n * unit > end:
                continue
            integer = _INTEGER_FORMATS.get(kind)
            values[tag] = struct.unpack_from(order + integer, data, value_at)[0] if integer else None
        elif tag in _SEGMENT_TAGS:
            segments += n
    return values, segments


def _check_page(what: str, values: dict[int, int | None], settings: Settings) -> None:
    if _WIDTH not in values or _LENGTH not in values:
        raise CorruptImage(f"{what} has no size (ImageWidth and ImageLength tags)")
    if None in values.values():
        raise CorruptImage(f"{what} gives a size (image or tile) that is not an integer")
    width, height = values[_WIDTH] or 0, values[_LENGTH] or 0
    check_area(what, width, height, settings)
    if _TILE_WIDTH in values or _TILE_LENGTH in values:
        tile_w, tile_h = values.get(_TILE_WIDTH) or 0, values.get(_TILE_LENGTH) or 0
        tiles = f"each tile of {what}"
        check_area(tiles, tile_w, tile_h, settings)
        if tile_w > width + TILE_SLACK or tile_h > height + TILE_SLACK:
            raise TooLarge(
                f"{tiles} is {tile_w}x{tile_h}, far larger than the {width}x{height} page "
                f"(at most {TILE_SLACK} pixels more per side)"
            )


FORMAT = ImageFormat(
    name="TIFF",
    label="TIFF",
    mime="image/tiff",
    extensions=(".tif", ".tiff"),
    accept=_accept,
    check_structure=_check,
    rank=60,
)
