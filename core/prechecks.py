"""Structural pre-checks: read an image's container, never its pixels, and refuse what would cost too much.

A decoder's cost is not bounded by the file's size: a 50-byte GIF can ask Pillow for a 20000x20000
canvas, a 24 MiB JPEG can hold six million empty segments that Pillow walks one by one in Python.
``check_structure`` walks the container's blocks (GIF blocks, PNG chunks, RIFF chunks, TIFF IFDs,
JPEG markers, the BMP header, ISO-BMFF boxes) with ``struct`` only, in time linear in the file size,
and raises before any decoder runs:

* ``TooLarge`` (413) when something is over a limit: a canvas, frame, page or tile over
  ``settings.max_pixels``; more frames or pages than ``settings.max_frames``; more blocks, chunks,
  markers, scans or tag entries than the bounds below;
* ``CorruptImage`` (422) when the structure contradicts itself in a way decoders crash or loop on:
  a frame outside its canvas, a GIF cut off inside a frame, a TIFF page without a size or lying
  outside the file, a zero-sized image.

Frames are counted from the container (GIF image descriptors, APNG ``acTL`` and ``fcTL``, WebP
``ANMF``, TIFF IFDs), so ingest never seeks to count them (seeking decodes). Every frame rectangle
must lie inside its canvas (Pillow grows a GIF's canvas to fit a frame outside it): one whose far
corner is past the pixel cap is TooLarge, any other outside the canvas is CorruptImage.

Each walker reads the container exactly as its decoder does (Pillow's GIF, PNG, JPEG and TIFF
readers, libwebp's demuxer, libheif), quirks included: a walker that resynchronised differently
could miss a frame or a size the decoder then finds. ``tests/test_fuzz.py`` checks this: whatever
passes here, Pillow opens at no more pixels and frames than the limits.

Each message says exactly what was too large or wrong, e.g. "the GIF declares more than 1000
frames; the limit is 1000". Damage that decoders report cleanly (a truncated PNG chunk, a JPEG without
its end marker) is left to the decoder, so a file Pillow reads today is not refused for a harmless
quirk.

Bounds that are not settings (module constants):

* ``MAX_GIF_BLOCKS`` = 1,000,000: GIF extension blocks, data sub-blocks and stray bytes between
  blocks, together. Pillow skips each in a Python loop; a 25 MiB GIF written with the usual
  255-byte sub-blocks has about 100,000.
* ``MAX_PNG_CHUNKS`` = 10,000 chunks (or ``4 * max_frames`` if larger, so that APNGs at the frame
  limit fit): Pillow reads each in Python (the "2 million private chunks" PNG).
* ``MAX_WEBP_CHUNKS`` = 10,000 top-level RIFF chunks (or ``4 * max_frames``), for the same reason.
* ``MAX_JPEG_MARKERS`` = 10,000 markers (segments, stray ``FF xx`` pairs); ``MAX_JPEG_SCANS`` = 100
  start-of-scan markers (each progressive scan is a pass over the whole image in libjpeg);
  ``MAX_JPEG_JUNK_BYTES`` = 1 MiB of stray or fill bytes between segments before the first scan
  (Pillow skips them one byte at a time).
* ``MAX_TIFF_ENTRIES`` = 100,000 tag entries over all pages; ``MAX_TIFF_SEGMENTS`` = 1,000,000
  strips or tiles over all pages (Pillow builds one Python tuple per strip or tile on every page it
  visits); ``TILE_SLACK`` = 1024: a tile may be at most this many pixels wider or taller than its
  page (tiles are padded to multiples of 16, not to absurd sizes), and never over ``max_pixels``.
  An IFD chain that loops ends at the loop, as Pillow does. Out-of-line tag values are bounded by
  Pillow itself (their total may not exceed the file's size).
* ``MAX_BMP_RLE_PIXELS`` = 4,000,000: Pillow's BMP RLE decoder is pure Python, one interpreted step
  per output pixel (the end-of-line padding) and per input pair; an RLE BMP must be at most 4 MP and
  its RLE data at most what the worst honest encoding needs: ``RLE_BYTES_PER_PIXEL`` = 2 bytes per
  pixel (runs of one), 4 per row (end of line) and ``RLE_SLACK_BYTES`` = 1024.
* ``MAX_BMFF_BOXES`` = 10,000 ISO-BMFF boxes walked in an AVIF/HEIF file (top level and inside
  ``meta``/``iprp``/``ipco``); every ``ispe`` (image spatial extents) property and every ``clap``
  (clean aperture, which libheif reports as the image's size) must be within the cap.

Nothing here imports more than the standard library and ``core``: it runs before Pillow touches the
bytes, inside the decode worker.
"""

from __future__ import annotations

import re
import struct

from core.config import Settings
from core.errors import CorruptImage, TooLarge

MAX_GIF_BLOCKS = 1_000_000
MAX_PNG_CHUNKS = 10_000
MAX_WEBP_CHUNKS = 10_000
CHUNKS_PER_FRAME = 4
MAX_JPEG_MARKERS = 10_000
MAX_JPEG_SCANS = 100
MAX_JPEG_JUNK_BYTES = 1024 * 1024
MAX_TIFF_ENTRIES = 100_000
MAX_TIFF_SEGMENTS = 1_000_000
TILE_SLACK = 1024
MAX_BMP_RLE_PIXELS = 4_000_000
RLE_BYTES_PER_PIXEL = 2
RLE_SLACK_BYTES = 1024
MAX_BMFF_BOXES = 10_000

_LABELS = {"WEBP": "WebP"}

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# In entropy-coded JPEG data 0xFF is stuffed as FF 00 and restart markers are FF D0..D7; anything else
# after an FF is a marker (or a fill byte, handled by the caller).
_JPEG_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7]")
_JPEG_FILL = re.compile(rb"\xff+")
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})
# Pillow reads a frame size from each of these (DHP included); it reads no length after JPG/JPGn markers.
_JPEG_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF, 0xDE})
_JPEG_NO_LENGTH = frozenset({0xC8, *range(0xF0, 0xFE)})
_JPEG_SOS, _JPEG_EOI, _JPEG_SOI = 0xDA, 0xD9, 0xD8

# TIFF field types -> bytes per value (Pillow's table, classic TIFF).
_TIFF_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4, 16: 8, 17: 8}
_TIFF_INTEGER_FORMATS = {1: "B", 3: "H", 4: "I", 16: "Q"}
_TIFF_WIDTH, _TIFF_LENGTH = 256, 257
_TIFF_STRIP_OFFSETS, _TIFF_TILE_OFFSETS = 273, 324
_TIFF_TILE_WIDTH, _TIFF_TILE_LENGTH = 322, 323
_TIFF_SIZE_TAGS = frozenset({_TIFF_WIDTH, _TIFF_LENGTH, _TIFF_TILE_WIDTH, _TIFF_TILE_LENGTH})
_TIFF_SEGMENT_TAGS = frozenset({_TIFF_STRIP_OFFSETS, _TIFF_TILE_OFFSETS})

_BMP_HEADER_SIZES = frozenset({12, 16, 40, 52, 56, 64, 108, 124})
_BMP_RLE = {1: "RLE8", 2: "RLE4"}

_BMFF_CONTAINERS = frozenset({b"meta", b"iprp", b"ipco"})


def check_structure(data: bytes, fmt: str, settings: Settings) -> None:
    """Refuse ``data`` (already sniffed as ``fmt``, Pillow's format name) if its container declares more
    than the limits allow. Raises TooLarge (413) or CorruptImage (422) naming the problem; returns None
    when decoding may proceed. Cost: linear in ``len(data)``, no pixel is decoded."""
    checker = _CHECKERS.get(fmt)
    if checker is not None:
        checker(data, settings)


# --- shared helpers -----------------------------------------------------------------------------


def _label(fmt: str) -> str:
    return _LABELS.get(fmt, fmt)


def check_area(what: str, width: int, height: int, settings: Settings) -> None:
    """``what`` ("the GIF canvas", "page 3 of the TIFF") must have a positive size within the cap."""
    if width <= 0 or height <= 0:
        raise CorruptImage(f"{what} has an impossible size {width}x{height}")
    if width * height > settings.max_pixels:
        raise TooLarge(
            f"{what} has too many pixels: {width}x{height} is {width * height / 1e6:.1f} megapixels; "
            f"the limit is {settings.max_pixels / 1e6:g} megapixels"
        )


def _check_frame_count(count: int, what: str, settings: Settings) -> None:
    if count > settings.max_frames:
        raise TooLarge(f"too many frames: {what}; the limit is {settings.max_frames}")


def _check_rectangle(
    what: str, left: int, top: int, width: int, height: int, canvas: tuple[int, int], settings: Settings
) -> None:
    """A frame must lie inside its canvas; one whose far corner is even past the pixel cap is TooLarge."""
    right, bottom = left + width, top + height
    if right * bottom > settings.max_pixels:
        raise TooLarge(
            f"{what} lies at {left},{top} ({width}x{height}), outside its {canvas[0]}x{canvas[1]} canvas: "
            f"covering it would take {right}x{bottom} pixels, too many pixels ({right * bottom / 1e6:.1f} "
            f"megapixels; the limit is {settings.max_pixels / 1e6:g} megapixels)"
        )
    if right > canvas[0] or bottom > canvas[1]:
        raise CorruptImage(
            f"{what} lies at {left},{top} ({width}x{height}), outside its {canvas[0]}x{canvas[1]} canvas"
        )


def _chunk_limit(base: int, settings: Settings) -> int:
    return max(base, CHUNKS_PER_FRAME * settings.max_frames)


# --- GIF ----------------------------------------------------------------------------------------


def _check_gif(data: bytes, settings: Settings) -> None:
    """Walk the GIF's blocks without LZW: count frames and blocks, place every frame in the canvas."""
    if len(data) < 13:
        raise CorruptImage("the GIF is cut off inside its header")
    screen_w, screen_h, flags = struct.unpack_from("<HHB", data, 6)
    check_area("the GIF canvas", screen_w, screen_h, settings)
    pos = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    frames = 0
    blocks = 0
    end = len(data)
    while pos < end:
        blocks += 1
        if blocks > MAX_GIF_BLOCKS:
            raise TooLarge(f"the GIF has more than {MAX_GIF_BLOCKS} blocks; the limit is {MAX_GIF_BLOCKS}")
        introducer = data[pos]
        if introducer == 0x3B:  # trailer
            return
        if introducer == 0x21:  # extension: label, then sub-blocks
            pos, blocks = _skip_gif_extension(data, pos + 1, frames == 0, blocks)
        elif introducer == 0x2C:  # image descriptor
            frames += 1
            _check_frame_count(frames, f"the GIF declares more than {settings.max_frames} frames", settings)
            what = f"frame {frames} of the GIF"
            if pos + 10 > end:
                raise CorruptImage(f"the GIF is cut off inside the header of its frame {frames}")
            left, top, width, height, frame_flags = struct.unpack_from("<HHHHB", data, pos + 1)
            _check_rectangle(what, left, top, width, height, (screen_w, screen_h), settings)
            pos += 10 + (3 << ((frame_flags & 7) + 1) if frame_flags & 0x80 else 0)
            if pos >= end:  # no room for the LZW code size: Pillow fails with an IndexError here
                raise CorruptImage(f"the GIF is cut off right after the header of its frame {frames}")
            pos, blocks = _skip_gif_sub_blocks(data, pos + 1, blocks, f"its frame {frames}")
        else:  # Pillow skips stray bytes between blocks one at a time; so do we, counting them
            pos += 1


def _skip_gif_extension(data: bytes, pos: int, first_frame: bool, blocks: int) -> tuple[int, int]:
    """Position after the extension whose label is at ``pos``, read exactly as Pillow reads it: a comment
    is one sub-block chain; any other extension is its first sub-block (two for the first frame's
    NETSCAPE2.0 block), then a chain, so an extension that starts with an empty sub-block swallows
    the chain after it. Reading it any other way would let frames hide from the count."""
    what = "an extension block"
    if pos >= len(data):
        raise CorruptImage(f"the GIF is cut off inside {what}")
    label = data[pos]
    if label == 0xFE:
        return _skip_gif_sub_blocks(data, pos + 1, blocks, what)
    first_at = pos + 1
    pos, blocks = _skip_gif_sub_block(data, first_at, blocks, what)
    if label == 0xFF and first_frame and data[first_at] and data[first_at + 1 : first_at + 12] == b"NETSCAPE2.0":
        pos, blocks = _skip_gif_sub_block(data, pos, blocks, what)
    return _skip_gif_sub_blocks(data, pos, blocks, what)


def _skip_gif_sub_block(data: bytes, pos: int, blocks: int, what: str) -> tuple[int, int]:
    """Position after the one sub-block (or terminator) at ``pos``."""
    if pos >= len(data):
        raise CorruptImage(f"the GIF is cut off inside {what}")
    blocks += 1
    if blocks > MAX_GIF_BLOCKS:
        raise TooLarge(f"the GIF has more than {MAX_GIF_BLOCKS} blocks; the limit is {MAX_GIF_BLOCKS}")
    return pos + 1 + data[pos], blocks


def _skip_gif_sub_blocks(data: bytes, pos: int, blocks: int, what: str) -> tuple[int, int]:
    """Position after the sub-block chain starting at ``pos`` (ended by a zero length byte)."""
    end = len(data)
    while True:
        if pos >= end:
            raise CorruptImage(f"the GIF is cut off inside {what}")
        size = data[pos]
        pos += 1 + size
        if size == 0:
            return pos, blocks
        blocks += 1
        if blocks > MAX_GIF_BLOCKS:
            raise TooLarge(f"the GIF has more than {MAX_GIF_BLOCKS} blocks; the limit is {MAX_GIF_BLOCKS}")


# --- PNG / APNG ---------------------------------------------------------------------------------


def _check_png(data: bytes, settings: Settings) -> None:
    """Walk the PNG's chunks: IHDR size, chunk count, APNG frame count and frame rectangles."""
    if len(data) < 33 or data[12:16] != b"IHDR":
        raise CorruptImage("the PNG has no IHDR header chunk")
    width, height = struct.unpack_from(">II", data, 16)
    check_area("the PNG", width, height, settings)
    limit = _chunk_limit(MAX_PNG_CHUNKS, settings)
    pos = len(_PNG_SIGNATURE)
    end = len(data)
    chunks = 0
    frame_controls = 0
    declared: int | None = None
    while pos + 12 <= end:
        length, kind = struct.unpack_from(">I4s", data, pos)
        chunks += 1
        if chunks > limit:
            raise TooLarge(f"the PNG has more than {limit} chunks; the limit is {limit}")
        body = pos + 8
        if body + length > end:
            return  # truncated: the decoder reports it
        if kind == b"acTL" and length >= 8:
            (count,) = struct.unpack_from(">I", data, body)
            _check_frame_count(count, f"the PNG (APNG) declares {count} frames", settings)
            declared = max(declared or 0, count)
        elif kind == b"IDAT" and declared is not None and frame_controls == 0:
            # A default image without its own fcTL is one frame more for Pillow.
            _check_frame_count(
                declared + 1, f"the PNG (APNG) declares {declared} frames and a separate default image", settings
            )
            declared = None
        elif kind == b"fcTL" and length >= 20:
            frame_controls += 1
            _check_frame_count(frame_controls, f"the PNG (APNG) has more than {settings.max_frames} frames", settings)
            fw, fh, fx, fy = struct.unpack_from(">IIII", data, body + 4)
            what = f"frame {frame_controls} of the PNG (APNG)"
            if fw == 0 or fh == 0:
                raise CorruptImage(f"{what} has an impossible size {fw}x{fh}")
            _check_rectangle(what, fx, fy, fw, fh, (width, height), settings)
        elif kind == b"IEND":
            return
        pos = body + length + 4


# --- WebP ---------------------------------------------------------------------------------------


def _check_webp(data: bytes, settings: Settings) -> None:
    """Walk the RIFF chunks: canvas (VP8X) or bitstream size, ANMF frame count and rectangles."""
    limit = _chunk_limit(MAX_WEBP_CHUNKS, settings)
    (riff_size,) = struct.unpack_from("<I", data, 4)
    end = min(len(data), 8 + riff_size)
    pos = 12
    chunks = 0
    frames = 0
    canvas: tuple[int, int] | None = None
    while pos + 8 <= end:
        kind, size = struct.unpack_from("<4sI", data, pos)
        chunks += 1
        if chunks > limit:
            raise TooLarge(f"the WebP has more than {limit} chunks; the limit is {limit}")
        body = pos + 8
        if body + size > end:
            return  # truncated: the decoder reports it
        if kind == b"VP8X" and size >= 10 and canvas is None:
            canvas = (_u24(data, body + 4) + 1, _u24(data, body + 7) + 1)
            check_area("the WebP canvas", canvas[0], canvas[1], settings)
        elif kind == b"ANMF" and size >= 16:
            frames += 1
            _check_frame_count(frames, f"the WebP declares more than {settings.max_frames} frames", settings)
            left, top = 2 * _u24(data, body), 2 * _u24(data, body + 3)
            width, height = _u24(data, body + 6) + 1, _u24(data, body + 9) + 1
            what = f"frame {frames} of the WebP"
            if canvas is None:
                raise CorruptImage(f"{what} comes before the WebP's canvas (VP8X) header")
            _check_rectangle(what, left, top, width, height, canvas, settings)
            pos = _webp_frame_end(data, body + 16, end)
            continue
        elif kind in (b"VP8 ", b"VP8L") and canvas is None:
            size_wh = _vp8_size(data, body, size) if kind == b"VP8 " else _vp8l_size(data, body, size)
            if size_wh is not None:
                check_area("the WebP", size_wh[0], size_wh[1], settings)
        pos = body + size + (size & 1)


def _webp_frame_end(data: bytes, pos: int, end: int) -> int:
    """Where libwebp's demuxer goes on after an ANMF frame header at ``pos - 16``: past at most one ALPH
    and one VP8/VP8L chunk, wherever the ANMF's declared size ends (skipping to that end instead would
    let frames hidden inside a too-long ANMF escape the count)."""
    alpha = image = False
    while pos + 8 <= end:
        kind, size = struct.unpack_from("<4sI", data, pos)
        if kind == b"ALPH" and not alpha:
            alpha = True
        elif kind in (b"VP8 ", b"VP8L") and not image:
            image = True
        else:
            break
        pos += 8 + size + (size & 1)
    return pos


def _u24(data: bytes, pos: int) -> int:
    return data[pos] | data[pos + 1] << 8 | data[pos + 2] << 16


def _vp8_size(data: bytes, body: int, size: int) -> tuple[int, int] | None:
    if size < 10 or data[body + 3 : body + 6] != b"\x9d\x01\x2a":
        return None
    width, height = struct.unpack_from("<HH", data, body + 6)
    return width & 0x3FFF, height & 0x3FFF


def _vp8l_size(data: bytes, body: int, size: int) -> tuple[int, int] | None:
    if size < 5 or data[body] != 0x2F:
        return None
    (bits,) = struct.unpack_from("<I", data, body + 1)
    return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1


# --- TIFF ---------------------------------------------------------------------------------------


def _check_tiff(data: bytes, settings: Settings) -> None:
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
        _check_frame_count(pages, f"the TIFF has more than {settings.max_frames} pages", settings)
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
        values, segments = _read_tiff_ifd(data, order, offset + 2, count)
        segments_total += segments
        if segments_total > MAX_TIFF_SEGMENTS:
            raise TooLarge(
                f"the TIFF's pages hold more than {MAX_TIFF_SEGMENTS} strips or tiles in total; "
                f"the limit is {MAX_TIFF_SEGMENTS}"
            )
        _check_tiff_page(what, values, settings)
        offset = struct.unpack_from(order + "I", data, entries_end)[0] if entries_end + 4 <= end else 0


def _read_tiff_ifd(data: bytes, order: str, pos: int, count: int) -> tuple[dict[int, int | None], int]:
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
        unit = _TIFF_TYPE_SIZES.get(kind)
        if unit is None:
            continue
        if tag in _TIFF_SIZE_TAGS and n >= 1 and tag not in values:
            value_at = at + 8 if n * unit <= 4 else inline
            if value_at + n * unit > end:
                continue
            integer = _TIFF_INTEGER_FORMATS.get(kind)
            values[tag] = struct.unpack_from(order + integer, data, value_at)[0] if integer else None
        elif tag in _TIFF_SEGMENT_TAGS:
            segments += n
    return values, segments


def _check_tiff_page(what: str, values: dict[int, int | None], settings: Settings) -> None:
    if _TIFF_WIDTH not in values or _TIFF_LENGTH not in values:
        raise CorruptImage(f"{what} has no size (ImageWidth and ImageLength tags)")
    if None in values.values():
        raise CorruptImage(f"{what} gives a size (image or tile) that is not an integer")
    width, height = values[_TIFF_WIDTH] or 0, values[_TIFF_LENGTH] or 0
    check_area(what, width, height, settings)
    if _TIFF_TILE_WIDTH in values or _TIFF_TILE_LENGTH in values:
        tile_w, tile_h = values.get(_TIFF_TILE_WIDTH) or 0, values.get(_TIFF_TILE_LENGTH) or 0
        tiles = f"each tile of {what}"
        check_area(tiles, tile_w, tile_h, settings)
        if tile_w > width + TILE_SLACK or tile_h > height + TILE_SLACK:
            raise TooLarge(
                f"{tiles} is {tile_w}x{tile_h}, far larger than the {width}x{height} page "
                f"(at most {TILE_SLACK} pixels more per side)"
            )


# --- JPEG ---------------------------------------------------------------------------------------


def _check_jpeg(data: bytes, settings: Settings) -> None:
    """Walk the JPEG's markers to the end of the first image: marker, scan and stray-byte counts, frame size."""
    end = len(data)
    pos = 2
    markers = 0
    scans = 0
    junk = 0
    in_scan = False
    while pos < end:
        if in_scan:  # entropy-coded data (stuffed FF 00, restarts FF D0..D7) is skipped in C
            found = _JPEG_NEXT_MARKER.search(data, pos)
            if found is None:
                return
            pos = found.start()
        elif data[pos] != 0xFF:
            found_ff = data.find(b"\xff", pos)
            if found_ff < 0:
                return
            junk += found_ff - pos
            pos = found_ff
        fill = _JPEG_FILL.match(data, pos)  # data[pos] is 0xFF: fill bytes may repeat it
        fill_end = fill.end() if fill else pos + 1
        junk += fill_end - pos - 1
        pos = fill_end
        if scans == 0 and junk > MAX_JPEG_JUNK_BYTES:  # before the first scan Pillow skips them one by one
            raise TooLarge(
                f"the JPEG has more than {MAX_JPEG_JUNK_BYTES} stray bytes between its segments; "
                f"the limit is {MAX_JPEG_JUNK_BYTES}"
            )
        if pos >= end:
            return
        marker = data[pos]
        pos += 1
        markers += 1
        if markers > MAX_JPEG_MARKERS:
            raise TooLarge(f"the JPEG has more than {MAX_JPEG_MARKERS} markers; the limit is {MAX_JPEG_MARKERS}")
        if marker == _JPEG_EOI:
            if scans:
                return
            continue  # before any scan Pillow reads on past an end marker, looking for the frame
        if marker == 0x00 or marker == _JPEG_SOI or marker in _JPEG_STANDALONE:
            continue  # no segment follows; inside a scan, the scan goes on
        if marker in _JPEG_NO_LENGTH and scans == 0:
            continue  # as Pillow reads the header (libjpeg refuses these markers)
        if marker < 0xC0 or marker in _JPEG_NO_LENGTH:
            return  # Pillow (before the first scan) or libjpeg (after it) refuses the file here
        in_scan = False
        if pos + 2 > end:
            return
        (length,) = struct.unpack_from(">H", data, pos)
        if length < 2:
            raise CorruptImage(f"the JPEG has a segment (marker FF{marker:02X}) with an impossible length {length}")
        if marker in _JPEG_SOF and pos + 7 <= end:
            height, width = struct.unpack_from(">HH", data, pos + 3)
            check_area("the JPEG", width, height, settings)
        pos += length
        if marker == _JPEG_SOS:
            scans += 1
            if scans > MAX_JPEG_SCANS:
                raise TooLarge(f"the JPEG has more than {MAX_JPEG_SCANS} scans; the limit is {MAX_JPEG_SCANS}")
            in_scan = True


# --- BMP ----------------------------------------------------------------------------------------


def _check_bmp(data: bytes, settings: Settings) -> None:
    """Header size, image size, and RLE only where Pillow's pure-Python RLE decoder stays cheap."""
    if len(data) < 18:
        raise CorruptImage("the BMP is cut off inside its header")
    (header_size,) = struct.unpack_from("<I", data, 14)
    if header_size not in _BMP_HEADER_SIZES:
        raise CorruptImage(f"the BMP header has an unknown size of {header_size} bytes")
    if len(data) < 14 + header_size:
        raise CorruptImage("the BMP is cut off inside its header")
    if header_size == 12:
        width, height = struct.unpack_from("<HH", data, 18)
        compression = 0
    else:
        width, height = struct.unpack_from("<II", data, 18)
        if data[25] == 0xFF:  # a top-down bitmap's negative height, read as Pillow reads it
            height = 2**32 - height
        compression = struct.unpack_from("<I", data, 30)[0] if header_size >= 20 else 0
    check_area("the BMP", width, height, settings)
    if compression in _BMP_RLE:
        kind = _BMP_RLE[compression]
        if width * height > MAX_BMP_RLE_PIXELS:
            raise TooLarge(
                f"the BMP is {kind}-compressed at {width}x{height}, {width * height / 1e6:.1f} megapixels; "
                f"{kind} BMPs are read only up to {MAX_BMP_RLE_PIXELS / 1e6:g} megapixels"
            )
        (pixel_offset,) = struct.unpack_from("<I", data, 10)
        rle_bytes = len(data) - min(pixel_offset, len(data))
        if rle_bytes > RLE_BYTES_PER_PIXEL * width * height + 4 * height + RLE_SLACK_BYTES:
            raise TooLarge(f"the BMP's {kind} data is {rle_bytes} bytes, more than a {width}x{height} image can need")


# --- AVIF / HEIF (ISO-BMFF) ---------------------------------------------------------------------


def _check_bmff(data: bytes, settings: Settings, fmt: str) -> None:
    """Walk the boxes down to ``meta/iprp/ipco``; every ``ispe`` image size must be within the cap."""
    label = _label(fmt)
    boxes = 0
    stack = [(0, len(data))]
    while stack:
        pos, end = stack.pop()
        while pos + 8 <= end:
            boxes += 1
            if boxes > MAX_BMFF_BOXES:
                raise TooLarge(f"the {label} has more than {MAX_BMFF_BOXES} boxes; the limit is {MAX_BMFF_BOXES}")
            size, kind = struct.unpack_from(">I4s", data, pos)
            header = 8
            if size == 1:
                if pos + 16 > end:
                    break
                (size,) = struct.unpack_from(">Q", data, pos + 8)
                header = 16
            elif size == 0:
                size = end - pos
            if size < header or pos + size > end:
                break  # damaged or truncated: the decoder reports it; walk the containers found so far
            if kind in _BMFF_CONTAINERS:
                stack.append((pos + header + (4 if kind == b"meta" else 0), pos + size))
            elif kind == b"ispe" and size >= header + 12:
                width, height = struct.unpack_from(">II", data, pos + header + 4)
                check_area(f"an image in the {label}", width, height, settings)
            elif kind == b"clap" and size >= header + 16:  # libheif reports the clean aperture's size
                width_n, width_d, height_n, height_d = struct.unpack_from(">IIII", data, pos + header)
                width, height = -(-width_n // max(width_d, 1)), -(-height_n // max(height_d, 1))
                if width * height > settings.max_pixels:
                    check_area(f"the clean aperture of an image in the {label}", width, height, settings)
            pos += size


_CHECKERS = {
    "GIF": _check_gif,
    "PNG": _check_png,
    "WEBP": _check_webp,
    "TIFF": _check_tiff,
    "JPEG": _check_jpeg,
    "BMP": _check_bmp,
    "AVIF": lambda data, settings: _check_bmff(data, settings, "AVIF"),
    "HEIF": lambda data, settings: _check_bmff(data, settings, "HEIF"),
}


# --- size at a glance (for the decode scheduler) ------------------------------------------------

_GLANCE_JPEG_SEGMENTS = 64  # segments skipped looking for the frame header before giving up


def pixels_at_a_glance(data: bytes, fmt: str) -> int | None:
    """Width x height as the first header declares it, read in O(1) (a JPEG: at most
    ``_GLANCE_JPEG_SEGMENTS`` segment headers) without checking anything; None when the format
    does not tell so cheaply (TIFF, HEIF, AVIF) or the header is cut off. The decode scheduler
    uses it to tell big decodes from small ones; the checks above and the decoder decide what is
    allowed."""
    try:
        if fmt == "PNG" and data[12:16] == b"IHDR":
            width, height = struct.unpack_from(">II", data, 16)
        elif fmt == "GIF":
            width, height = struct.unpack_from("<HH", data, 6)
        elif fmt == "BMP":
            width, height = struct.unpack_from("<ii", data, 18)
        elif fmt == "WEBP":
            kind, size = struct.unpack_from("<4sI", data, 12)
            if kind == b"VP8X":
                width, height = _u24(data, 24) + 1, _u24(data, 27) + 1
            else:
                found = (_vp8_size if kind == b"VP8 " else _vp8l_size)(data, 20, size)
                if found is None:
                    return None
                width, height = found
        elif fmt == "JPEG":
            pos = 2
            for _ in range(_GLANCE_JPEG_SEGMENTS):
                while data[pos] == 0xFF and data[pos + 1] == 0xFF:  # fill bytes
                    pos += 1
                if data[pos] != 0xFF:
                    return None
                marker = data[pos + 1]
                if marker in _JPEG_SOF:
                    height, width = struct.unpack_from(">HH", data, pos + 5)
                    break
                (length,) = struct.unpack_from(">H", data, pos + 2)
                pos += 2 + length
            else:
                return None
        else:
            return None
    except (struct.error, IndexError):
        return None
    return abs(width) * abs(height)
