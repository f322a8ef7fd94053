"""Builders of the hostile images of issue 9, made in memory from a few bytes of Python each.

Each returns the file's bytes; parameters default to the case as measured in the issue. The names are
stable: the hostile HTTP suite (``tests/test_hostile_*``), ``bench/hostile.py`` and
``tests/test_prechecks.py`` import them.

=============================  ===============================================================  ========
builder                        what it attacks                                                  pre-check
=============================  ===============================================================  ========
gif_canvas_grow                2nd frame at 19999,19999 of a 10x10 GIF: Pillow grows the canvas  413
gif_many_frames                10,000 frames of 4000x4000: counting frames by seeking decodes    413
gif_truncated_after_descriptor file ends right after a frame descriptor (IndexError in Pillow)   422
apng_many_frames               acTL declares 1001 frames of 7071x7071                           413
png_many_chunks                2 million empty private chunks, each read by Python               413
png_blank                      blank 7071x7071 RGB PNG (146 KB): within the cap, costly features passes
jpeg_many_scans                progressive JPEG with 2000 scans (each a pass over the image)    413
jpeg_many_app_segments         6 million empty APP0 segments (24 MB) before the image           413
tiff_overlapping_ifds          100 IFDs of 65535 entries sharing the same bytes                  413
tiff_ifd_without_size          1000 pages, then an IFD without ImageWidth/ImageLength            413/422
tiff_huge_tiles                151-byte TIFF declaring 46336x46336 tiles                        413
tiff_float                     32-bit float TIFF 7000x7000: within the cap, +1 GiB to decode     passes
bmp_rle_eol                    5 KB RLE8 BMP of 50000x1000: every end-of-line pads in Python     413
webp_many_frames               animated WebP with 1001 ANMF frames                              413
webp_frame_outside_canvas      ANMF frame placed outside the VP8X canvas                        413/422
=============================  ===============================================================  ========

The last column is what ``core.prechecks.check_structure`` answers at the default limits (413
TooLarge, 422 CorruptImage). ``png_blank`` and ``tiff_float`` pass it on purpose: they are bounded by
the decode sandbox and the feature pixel cap instead. (ZIP builders are in ``tests/helpers.py``.)
"""

from __future__ import annotations

import functools
import io
import struct
import zlib

from PIL import Image

# --- GIF ----------------------------------------------------------------------------------------

# LZW data of a 1x1 frame with minimum code size 2: clear, pixel 0, end of information.
_GIF_ONE_PIXEL = b"\x02\x02\x44\x01\x00"
_GIF_GCE = b"\x21\xf9\x04\x00\x0a\x00\x00\x00"  # graphic control: 0.1 s delay


def _gif_header(width: int, height: int) -> bytes:
    # Global colour table of 2 entries (black, white).
    return b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"


def _gif_frame(left: int, top: int, width: int, height: int) -> bytes:
    return b"\x2c" + struct.pack("<HHHHB", left, top, width, height, 0) + _GIF_ONE_PIXEL


def gif_canvas_grow(left: int = 19999, top: int = 19999) -> bytes:
    """A 50-byte animated 10x10 GIF whose 2nd 1x1 frame sits at (left, top): Pillow grows the canvas."""
    return _gif_header(10, 10) + _gif_frame(0, 0, 1, 1) + _GIF_GCE + _gif_frame(left, top, 1, 1) + b";"


def gif_many_frames(n: int = 10_000, size: int = 4000) -> bytes:
    """``n`` frames of size x size (23 bytes each): counting frames by seeking decodes every one."""
    frame = _GIF_GCE + _gif_frame(0, 0, size, size)
    return _gif_header(size, size) + frame * n + b";"


def gif_truncated_after_descriptor() -> bytes:
    """A 2-frame GIF cut right after its 2nd frame's descriptor: Pillow raised IndexError while seeking."""
    return _gif_header(2, 2) + _gif_frame(0, 0, 1, 1) + _GIF_GCE + _gif_frame(0, 0, 1, 1)[:10]


# --- PNG ----------------------------------------------------------------------------------------

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_chunk(kind: bytes, body: bytes = b"") -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _ihdr(width: int, height: int, bit_depth: int = 8, color_type: int = 0) -> bytes:
    return _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0))


@functools.lru_cache(maxsize=8)
def _blank_zlib(row_bytes: int, rows: int) -> bytes:
    """zlib stream of ``rows`` filtered scanlines of zeros (filter byte + ``row_bytes``), made row by row."""
    compressor = zlib.compressobj(9)
    row = bytes(1 + row_bytes)
    parts = [compressor.compress(row) for _ in range(rows)]
    parts.append(compressor.flush())
    return b"".join(parts)


def png_many_chunks(n: int = 2_000_000) -> bytes:
    """A 1x1 PNG with ``n`` empty private chunks (24 MB for 2 million): Pillow reads each in Python."""
    private = _png_chunk(b"prVt")
    idat = _png_chunk(b"IDAT", zlib.compress(b"\x00\x00"))
    return _PNG_SIGNATURE + _ihdr(1, 1) + private * n + idat + _png_chunk(b"IEND")


def png_blank(size: int = 7071) -> bytes:
    """A blank RGB PNG of size x size (146 KB at 7071): under the pixel cap, +3.7 GiB for features once."""
    idat = _png_chunk(b"IDAT", _blank_zlib(3 * size, size))
    return _PNG_SIGNATURE + _ihdr(size, size, 8, 2) + idat + _png_chunk(b"IEND")


def apng_many_frames(frames: int = 1001, size: int = 7071) -> bytes:
    """An APNG whose acTL declares ``frames`` blank frames of size x size (1-bit grey, all present)."""
    pixels = _blank_zlib((size + 7) // 8, size)
    out = [_PNG_SIGNATURE, _ihdr(size, size, 1, 0), _png_chunk(b"acTL", struct.pack(">II", frames, 0))]
    sequence = 0
    for index in range(frames):
        fctl = struct.pack(">IIIIIHHBB", sequence, size, size, 0, 0, 1, 10, 0, 0)
        out.append(_png_chunk(b"fcTL", fctl))
        sequence += 1
        if index == 0:
            out.append(_png_chunk(b"IDAT", pixels))
        else:
            out.append(_png_chunk(b"fdAT", struct.pack(">I", sequence) + pixels))
            sequence += 1
    out.append(_png_chunk(b"IEND"))
    return b"".join(out)


# --- JPEG ---------------------------------------------------------------------------------------


def _jpeg(size: int, progressive: bool = False) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (size, size), (128, 128, 128)).save(out, "JPEG", quality=90, progressive=progressive)
    return out.getvalue()


def jpeg_many_scans(scans: int = 2000, size: int = 2048) -> bytes:
    """A flat progressive JPEG whose smallest scan is repeated until it has ``scans`` scans: libjpeg
    passes over every block of the image once per scan."""
    data = _jpeg(size, progressive=True)
    starts = [i for i in range(len(data) - 1) if data[i : i + 2] == b"\xff\xda"]
    ends = [*starts[1:], len(data) - 2]
    smallest = min(zip(starts, ends, strict=True), key=lambda span: span[1] - span[0])
    scan = data[smallest[0] : smallest[1]]
    return data[:-2] + scan * (scans - len(starts)) + b"\xff\xd9"


def jpeg_many_app_segments(n: int = 6_000_000) -> bytes:
    """A small JPEG preceded by ``n`` empty APP0 segments (24 MB for 6 million): Pillow keeps each one."""
    return b"\xff\xd8" + b"\xff\xe0\x00\x02" * n + _jpeg(16)[2:]


# --- TIFF ---------------------------------------------------------------------------------------

_SHORT, _LONG = 3, 4


def _ifd(entries: list[tuple[int, int, int, int]], next_offset: int) -> bytes:
    """A little-endian IFD from (tag, type, count, inline value) entries, sorted by tag."""
    body = b"".join(
        struct.pack("<HHIH2x", tag, kind, count, value)
        if kind == _SHORT
        else struct.pack("<HHII", tag, kind, count, value)
        for tag, kind, count, value in sorted(entries)
    )
    return struct.pack("<H", len(entries)) + body + struct.pack("<I", next_offset)


def _gray_page(width: int, height: int, strip_offset: int, strip_bytes: int) -> list[tuple[int, int, int, int]]:
    return [
        (256, _LONG, 1, width),
        (257, _LONG, 1, height),
        (258, _SHORT, 1, 8),
        (259, _SHORT, 1, 1),
        (262, _SHORT, 1, 1),
        (273, _LONG, 1, strip_offset),
        (277, _SHORT, 1, 1),
        (278, _LONG, 1, height),
        (279, _LONG, 1, strip_bytes),
    ]


def tiff_overlapping_ifds(ifds: int = 100, entries: int = 65535) -> bytes:
    """``ifds`` IFDs of ``entries`` tag entries each, 12 bytes apart so that they share one run of entries
    (every IFD sees the same 1x1 image tags); Pillow parses every IFD in full while counting pages."""
    grid_start = 10  # entry i of the shared run sits at 10 + 12 * i; IFD k at 8 + 12 * k
    pixel_at = grid_start + 12 * (entries + ifds) + 4
    run = bytearray(12 * (entries + ifds))
    # Filler entries: tag 0, type 0 (skipped by readers), value whose high half is the next IFD's count.
    filler = struct.pack("<HHII", 0, 0, 0, entries << 16)
    run[: 12 * ifds] = filler * ifds
    tags = _gray_page(1, 1, pixel_at, 1)
    for index, (tag, kind, count, value) in enumerate(tags):
        packed = struct.pack("<HHIH2x" if kind == _SHORT else "<HHII", tag, kind, count, value)
        run[12 * (ifds + index) : 12 * (ifds + index + 1)] = packed
    # IFD k's next pointer falls on shared entry (entries + k): point it at IFD k + 1.
    for k in range(ifds):
        next_offset = 8 + 12 * (k + 1) if k + 1 < ifds else 0
        struct.pack_into("<I", run, 12 * (entries + k), next_offset)
    header = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", entries)
    return header + bytes(run) + b"\x00" * 4 + b"\x80"


def tiff_ifd_without_size(pages: int = 1001) -> bytes:
    """``pages - 1`` valid 1x1 pages, then a last IFD without ImageWidth/ImageLength (TypeError in Pillow)."""
    ifd_size = 2 + 12 * 9 + 4
    pixel_at = 8
    first_ifd = 9 + (9 & 1)
    out = [b"II*\x00", struct.pack("<I", first_ifd), b"\x80", b"\x00" * (first_ifd - 9)]
    offset = first_ifd
    for _ in range(pages - 1):
        offset += ifd_size
        out.append(_ifd(_gray_page(1, 1, pixel_at, 1), offset))
    out.append(_ifd([(259, _SHORT, 1, 1)], 0))
    return b"".join(out)


def tiff_huge_tiles(tile: int = 46336, size: int = 16) -> bytes:
    """A deflate TIFF of size x size declaring tile x tile tiles (151 bytes): libtiff allocates a tile."""
    pixels = zlib.compress(b"\x00")
    entries = [
        (256, _LONG, 1, size),
        (257, _LONG, 1, size),
        (258, _SHORT, 1, 8),
        (259, _SHORT, 1, 8),
        (262, _SHORT, 1, 1),
        (277, _SHORT, 1, 1),
        (322, _LONG, 1, tile),
        (323, _LONG, 1, tile),
        (324, _LONG, 1, 0),  # patched below
        (325, _LONG, 1, len(pixels)),
    ]
    ifd_size = 2 + 12 * len(entries) + 4
    data_at = 8 + ifd_size
    entries[8] = (324, _LONG, 1, data_at)
    return b"II*\x00" + struct.pack("<I", 8) + _ifd(entries, 0) + pixels


def tiff_float(size: int = 7000, rows_per_strip: int = 100) -> bytes:
    """A deflate 32-bit float TIFF of size x size (strips share one compressed block): within the pixel
    cap, but Pillow needs over 1 GiB to decode and convert it."""
    strips = (size + rows_per_strip - 1) // rows_per_strip
    block = zlib.compress(bytes(4 * size * rows_per_strip), 9)
    entries = [
        (256, _LONG, 1, size),
        (257, _LONG, 1, size),
        (258, _SHORT, 1, 32),
        (259, _SHORT, 1, 8),
        (262, _SHORT, 1, 1),
        (273, _LONG, strips, 0),  # offsets array, patched below
        (277, _SHORT, 1, 1),
        (278, _LONG, 1, rows_per_strip),
        (279, _LONG, strips, 0),  # byte counts array, patched below
        (339, _SHORT, 1, 3),
    ]
    ifd_size = 2 + 12 * len(entries) + 4
    offsets_at = 8 + ifd_size
    counts_at = offsets_at + 4 * strips
    block_at = counts_at + 4 * strips
    entries[5] = (273, _LONG, strips, offsets_at)
    entries[8] = (279, _LONG, strips, counts_at)
    arrays = struct.pack(f"<{strips}I", *([block_at] * strips)) + struct.pack(f"<{strips}I", *([len(block)] * strips))
    return b"II*\x00" + struct.pack("<I", 8) + _ifd(entries, 0) + arrays + block


# --- BMP ----------------------------------------------------------------------------------------


def bmp_rle_eol(width: int = 50_000, height: int = 1000, rows: int | None = None) -> bytes:
    """An RLE8 BMP (5 KB at the defaults) whose rows are one pixel then end-of-line: Pillow's Python RLE
    decoder pads every row byte by byte (50 MP of interpreted steps)."""
    rows = height if rows is None else rows
    rle = b"\x01\x00\x00\x00" * rows + b"\x00\x01"
    palette = b"".join(struct.pack("<BBBB", i, i, i, 0) for i in range(256))
    pixel_offset = 14 + 40 + len(palette)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 8, 1, len(rle), 2835, 2835, 256, 0)
    header = b"BM" + struct.pack("<IHHI", pixel_offset + len(rle), 0, 0, pixel_offset)
    return header + info + palette + rle


# --- WebP ---------------------------------------------------------------------------------------


def _riff_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    chunks = []
    pos = 12
    while pos + 8 <= len(data):
        kind, size = struct.unpack_from("<4sI", data, pos)
        chunks.append((kind, data[pos + 8 : pos + 8 + size]))
        pos += 8 + size + (size & 1)
    return chunks


def _riff(chunks: list[tuple[bytes, bytes]]) -> bytes:
    body = b"".join(kind + struct.pack("<I", len(c)) + c + b"\x00" * (len(c) & 1) for kind, c in chunks)
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WEBP" + body


def _animated_webp(size: int = 8) -> list[tuple[bytes, bytes]]:
    frames = [Image.new("RGB", (size, size), (40 * i, 0, 0)) for i in range(2)]
    out = io.BytesIO()
    frames[0].save(out, "WEBP", save_all=True, append_images=frames[1:], lossless=True, duration=100)
    return _riff_chunks(out.getvalue())


def webp_many_frames(frames: int = 1001) -> bytes:
    """An 8x8 animated WebP with ``frames`` ANMF frames (the first frame repeated)."""
    chunks = _animated_webp()
    anmf = next(c for c in chunks if c[0] == b"ANMF")
    others = [c for c in chunks if c[0] != b"ANMF"]
    return _riff(others + [anmf] * frames)


def webp_frame_outside_canvas(left: int = 20000, top: int = 20000) -> bytes:
    """An 8x8 animated WebP whose 2nd ANMF frame is placed at (left, top), outside the canvas (even values)."""
    chunks = _animated_webp()
    anmf_indexes = [i for i, c in enumerate(chunks) if c[0] == b"ANMF"]
    kind, body = chunks[anmf_indexes[1]]
    moved = (left // 2).to_bytes(3, "little") + (top // 2).to_bytes(3, "little") + body[6:]
    chunks[anmf_indexes[1]] = (kind, moved)
    return _riff(chunks)
