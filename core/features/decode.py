"""The one decode of an image for analysis: whole when it fits ``max_pixels``, else straight into a
view of that size, holding one band of full-size rows at a time wherever the format allows it.

The view of an image over ``max_pixels`` is ``resize(view_size, BOX)`` of its first frame
(``NEAREST`` for modes ``1`` and ``P``, as Pillow does), computed band by band: each band of view
rows is resized from just the full-size rows it covers, so the worker's peak is the view plus one
band (``STRIP_PIXELS`` full-size pixels), not the picture. How the full-size rows are produced:

* JPEG: libjpeg's draft mode decodes at 1/2..1/8 scale, the smallest that still covers the view;
* PNG (not interlaced): the IDAT stream is inflated one strip of rows at a time, and each strip is
  unfiltered by Pillow's own PNG decoder (``Image.frombytes(..., "zip", rawmode)``), seeded with
  the strip before's last row;
* uncompressed BMP and TIFF (planar configuration 1): each band of rows is read at its offset
  (``Image.frombytes(..., "raw", ...)``);
* everything else (interlaced PNG, GIF, WebP, compressed TIFF, HEIF, AVIF) has no reduced decode
  in Pillow: the first frame is decoded once, resized band by band and closed before any feature
  runs (peak: the decoded frame plus the view).

The reduced paths read only Pillow's public surface (``Image.tile``, ``Image.frombytes``) and the
PNG and TIFF containers as their specifications define them. Anything they do not expect falls back
to Pillow's whole decode, which also reports damaged data exactly as for a small image.
"""

from __future__ import annotations

import functools
import io
import math
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image

from core.formats.png import SIGNATURE as PNG_SIGNATURE

# Full-size pixels decoded and held at once on the reduced paths (4 MiB as RGBA).
STRIP_PIXELS = 1 << 20
# Rows kept above a band: a BOX kernel rounds its first row to the nearest one.
ROW_MARGIN = 2
# Color type -> samples per pixel (PNG specification, IHDR).
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
# Chunks that describe pixels or frames, not metadata; the rest is metadata to keep.
_PNG_PIXEL_CHUNKS = frozenset({b"IHDR", b"IDAT", b"acTL", b"fcTL", b"fdAT", b"IEND"})
_RAW_FORMATS = frozenset({"BMP", "TIFF"})  # their raw tiles point into the file itself
_TIFF_PLANAR_CONFIGURATION = 284
_MAX_RAW_BITS_PER_PIXEL = 128


class _NotInPieces(Exception):
    """The reduced path does not handle this file: Pillow decodes it whole."""


@dataclass(frozen=True)
class Decoded:
    """An image ready for analysis: its first frame, or a view of it at most ``max_pixels``."""

    image: Image.Image
    format: str | None
    full_size: tuple[int, int]  # width, height of the stored picture (before EXIF orientation)


def decode_for_analysis(data: bytes, max_pixels: int | None = None) -> Decoded:
    """Decode the first frame of ``data``: whole when ``width * height <= max_pixels`` (or no cap),
    else into a BOX-resized view of at most ``max_pixels`` (``view_size``) whose peak memory is
    bounded by the view, not by the picture. Raises what Pillow raises for damaged data."""
    image = Image.open(io.BytesIO(data))
    full_size = image.size
    if not max_pixels or full_size[0] * full_size[1] <= max_pixels:
        image.load()
        return Decoded(image, image.format, full_size)
    with image:
        return Decoded(_decode_view(image, data, view_size(full_size, max_pixels)), image.format, full_size)


def view_size(size: tuple[int, int], max_pixels: int) -> tuple[int, int]:
    """The analysis view of a picture over ``max_pixels``: both sides scaled by the same factor,
    rounded down, at least 1."""
    width, height = size
    scale = math.sqrt(max_pixels / (width * height))
    return max(1, int(width * scale)), max(1, int(height * scale))


def _decode_view(image: Image.Image, data: bytes, size: tuple[int, int]) -> Image.Image:
    strip_rows = max(1, STRIP_PIXELS // image.width)
    for reduced in (_png_in_strips, _raw_in_strips):
        try:
            return reduced(image, data, size, strip_rows)
        except _NotInPieces:
            continue
        except (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error):
            break  # damaged or unexpected data: Pillow's whole decode says which
    return _whole_then_resized(image, size, strip_rows)


# -- the band-by-band resize every path shares --


def resize_in_bands(
    strips: Iterator[Image.Image], mode: str, size: tuple[int, int], view: tuple[int, int]
) -> Image.Image:
    """``resize(view, BOX)`` of the ``size`` picture whose consecutive rows, top first, ``strips``
    yields (in ``mode``), holding only the rows the next band of view rows needs. Pixel for pixel
    the whole resize, except where a kernel's edge falls exactly on a pixel centre (a scale such as
    203/202): there float rounding may put that one row of pixels on the other side."""
    width, height = size
    view_width, view_height = view
    scale = height / view_height
    resample = Image.Resampling.NEAREST if mode in ("1", "P") else Image.Resampling.BOX
    out = Image.new(mode, view)
    window: Image.Image | None = None
    window_top = done = 0
    for strip in strips:
        window = strip if window is None else _stacked(window, strip)
        window_bottom = window_top + window.height
        # view row j reads full-size rows up to (j + 1) * scale + 0.5; keep one row of slack
        ready = view_height if window_bottom >= height else min(view_height, int((window_bottom - 1) / scale))
        if ready <= done:
            continue
        top = done * scale - window_top
        bottom = min(ready * scale - window_top, window.height)
        out.paste(window.resize((view_width, ready - done), resample, box=(0, top, width, bottom)), (0, done))
        done = ready
        keep = max(window_top, math.floor(done * scale) - ROW_MARGIN)
        window = window.crop((0, keep - window_top, width, window.height))
        window_top = keep
        if done == view_height:
            break
    if done < view_height:
        raise ValueError("the image data ends before its last row")
    return out


def _stacked(upper: Image.Image, lower: Image.Image) -> Image.Image:
    both = Image.new(upper.mode, (upper.width, upper.height + lower.height))
    both.paste(upper, (0, 0))
    both.paste(lower, (0, upper.height))
    return both


def _with_metadata(view: Image.Image, source: Image.Image) -> Image.Image:
    """``view`` with ``source``'s info, palette and EXIF (the orientation the views apply)."""
    view.info = dict(source.info)
    if view.mode in ("P", "PA") and source.palette is not None:
        rawmode, palette = source.palette.getdata()
        view.putpalette(palette, rawmode)
    view.getexif().update(source.getexif())
    return view


# -- decoded once, resized band by band --


def _whole_then_resized(image: Image.Image, size: tuple[int, int], strip_rows: int) -> Image.Image:
    """The formats without a reduced decode (and JPEG after its draft): the first frame is decoded
    once, then cut into bands for the resize; the caller closes it at once."""
    image.draft(image.mode, size)  # JPEG: 1/2..1/8 scale that still covers the view; others: no-op
    image.load()
    width, height = image.size
    strips = (image.crop((0, top, width, min(top + strip_rows, height))) for top in range(0, height, strip_rows))
    return _with_metadata(resize_in_bands(strips, image.mode, image.size, size), image)


# -- PNG: the IDAT stream, a strip of rows at a time --


def _png_in_strips(image: Image.Image, data: bytes, size: tuple[int, int], strip_rows: int) -> Image.Image:
    if image.format != "PNG" or len(image.tile) != 1 or image.tile[0][0] != "zip":
        raise _NotInPieces
    width, height, depth, color_type, _, _, interlace = struct.unpack(">IIBBBBB", data[16:29])
    if interlace or (width, height) != image.size or color_type not in _PNG_CHANNELS:
        raise _NotInPieces  # Adam7 passes span the whole picture
    rawmode = image.tile[0][3]
    if isinstance(rawmode, tuple):
        rawmode = rawmode[0]
    layout = _PngLayout(width, depth, _PNG_CHANNELS[color_type])
    metadata = _png_metadata(data)
    strips = _png_strips(data, image.tile[0][2], image.mode, rawmode, layout, height, strip_rows)
    return _with_metadata(resize_in_bands(strips, image.mode, image.size, size), metadata)


@dataclass(frozen=True)
class _PngLayout:
    width: int
    depth: int  # bits per sample
    channels: int

    @property
    def row_bytes(self) -> int:
        return (self.width * self.depth * self.channels + 7) // 8


def _png_strips(
    data: bytes, offset: int, mode: str, rawmode: str, layout: _PngLayout, height: int, strip_rows: int
) -> Iterator[Image.Image]:
    """The picture's rows, ``strip_rows`` at a time. Each strip's filtered rows go to Pillow's PNG
    decoder behind its predecessor's last row, unfiltered (filter type 0): the filters of a strip's
    first row read that row, and nothing older."""
    inflater = zlib.decompressobj()
    payloads = _idat_payloads(data, offset)
    line = 1 + layout.row_bytes  # filter type byte + the row
    seed: bytes | None = None
    for top in range(0, height, strip_rows):
        rows = min(strip_rows, height - top)
        filtered = _inflate(inflater, payloads, rows * line)
        stream = filtered if seed is None else b"\x00" + seed + filtered
        decoded_rows = rows if seed is None else rows + 1
        strip = Image.frombytes(mode, (layout.width, decoded_rows), zlib.compress(stream, 0), "zip", rawmode)
        if seed is not None:
            strip = strip.crop((0, 1, layout.width, decoded_rows))
        seed = _png_raw_row(strip.crop((0, rows - 1, layout.width, rows)), layout)
        yield strip


def _idat_payloads(data: bytes, offset: int) -> Iterator[memoryview]:
    """The consecutive IDAT chunks' data from the one at ``offset`` (Pillow's tile offset)."""
    view = memoryview(data)
    position = offset - 8
    while position + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, position)
        if kind != b"IDAT":
            return
        yield view[position + 8 : position + 8 + length]
        position += 12 + length


def _inflate(inflater: zlib._Decompress, payloads: Iterator[memoryview], size: int) -> bytes:
    """Exactly ``size`` more bytes of the zlib stream (never more: the rest stays compressed)."""
    out = bytearray()
    while len(out) < size:
        pending = inflater.unconsumed_tail or next(payloads, None)
        if pending is None or inflater.eof:
            raise ValueError("the PNG image data ends early")
        out += inflater.decompress(pending, size - len(out))
    return bytes(out)


def _png_raw_row(row: Image.Image, layout: _PngLayout) -> bytes:
    """The unfiltered PNG bytes of a decoded row, as the next row's filters read them.

    8 bits and gray 16 bits convert back exactly. Pillow keeps only the high byte of 16-bit color;
    the low bytes are zero here, which leaves every high byte exact (filters work byte by byte on
    bytes of the same parity, since a pixel is an even number of bytes). Below 8 bits the samples
    are packed again with zero padding, which PNG writers use.
    """
    samples = np.asarray(row).reshape(layout.width, -1)
    if layout.depth == 8:
        return samples.astype(np.uint8).tobytes()
    if layout.depth == 16:
        if samples.dtype != np.uint8:  # gray: Pillow's I;16 holds the full value
            return samples.astype(">u2").tobytes()
        high = samples[:, [0, 3]] if layout.channels == 2 else samples[:, : layout.channels]  # LA;16 -> RGBA
        return np.stack([high, np.zeros_like(high)], axis=-1).tobytes()
    values = samples[:, 0].astype(np.uint8)
    if row.mode == "1":
        values = (values != 0).astype(np.uint8)
    elif row.mode == "L":  # Pillow spreads 2- and 4-bit gray over 0..255
        values = values // (255 // ((1 << layout.depth) - 1))
    shifts = np.arange(layout.depth - 1, -1, -1, dtype=np.uint8)
    return np.packbits(((values[:, None] >> shifts) & 1).ravel()).tobytes()


def _png_metadata(data: bytes) -> Image.Image:
    """Every metadata chunk of the PNG, before and after its pixels (EXIF may follow them), read
    by Pillow from a 1 x 1 PNG that holds them: what a whole decode would put in ``info``."""
    chunks = []
    position = len(PNG_SIGNATURE)
    while position + 12 <= len(data):
        (length,) = struct.unpack_from(">I", data, position)
        kind = data[position + 4 : position + 8]
        if kind == b"IEND":
            break
        if kind not in _PNG_PIXEL_CHUNKS:
            chunks.append(data[position : position + 12 + length])
        position += 12 + length
    header = bytearray(data[16:29])
    header[0:8] = struct.pack(">II", 1, 1)
    header[12] = 0  # not interlaced
    samples = _PNG_CHANNELS[header[9]] * header[8]
    pixel = zlib.compress(bytes(1 + (samples + 7) // 8))
    one_pixel = b"".join([PNG_SIGNATURE, _png_chunk(b"IHDR", bytes(header)), *chunks, _png_chunk(b"IDAT", pixel)])
    metadata = Image.open(io.BytesIO(one_pixel + _png_chunk(b"IEND", b"")))
    metadata.load()
    return metadata


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


# -- uncompressed BMP and TIFF: bands of rows read at their offsets --


def _raw_in_strips(image: Image.Image, data: bytes, size: tuple[int, int], strip_rows: int) -> Image.Image:
    if image.format not in _RAW_FORMATS:
        raise _NotInPieces  # others (AVIF) name a raw tile that only exists once the frame is decoded
    tiles = sorted(image.tile, key=lambda tile: (tile[1][1], tile[1][0]))
    if not tiles or any(tile[0] != "raw" for tile in tiles):
        raise _NotInPieces
    if image.format == "TIFF" and image.tag_v2.get(_TIFF_PLANAR_CONFIGURATION, 1) != 1:
        raise _NotInPieces  # one tile per band, each filling one channel
    bands = _tile_rows(tiles, image.size)
    strips = _raw_strips(data, image.mode, bands, strip_rows)
    return _with_metadata(resize_in_bands(strips, image.mode, image.size, size), image)


def _tile_rows(tiles: list, size: tuple[int, int]) -> list[list]:
    """The tiles as rows of tiles that cover the picture exactly, left to right, top to bottom."""
    width, height = size
    rows: list[list] = []
    bottom = 0
    for tile in tiles:
        x0, y0, x1, y1 = tile[1]
        if rows and y0 == rows[-1][0][1][1] and x0 == rows[-1][-1][1][2] and y1 == rows[-1][0][1][3]:
            rows[-1].append(tile)
        elif y0 == bottom and x0 == 0:
            rows.append([tile])
            bottom = y1
        else:
            raise _NotInPieces
    if bottom != height or any(row[-1][1][2] != width for row in rows):
        raise _NotInPieces
    return rows


def _raw_strips(data: bytes, mode: str, bands: list[list], strip_rows: int) -> Iterator[Image.Image]:
    view = memoryview(data)
    for band in bands:
        y0, y1 = band[0][1][1], band[0][1][3]
        width = band[-1][1][2]
        for top in range(0, y1 - y0, strip_rows):
            rows = min(strip_rows, y1 - y0 - top)
            strip = Image.new(mode, (width, rows))
            for _, (x0, _, x1, _), offset, args in band:
                strip.paste(_raw_rows(view, mode, offset, args, x1 - x0, y1 - y0, top, rows), (x0, 0))
            yield strip


def _raw_rows(
    view: memoryview, mode: str, offset: int, args: object, width: int, tile_rows: int, top: int, rows: int
) -> Image.Image:
    """Rows ``top .. top + rows`` of a raw tile (stored top down, or bottom up when ystep < 0)."""
    rawmode, stride, ystep = (args, 0, 1) if isinstance(args, str) else (tuple(args) + (0, 1))[:3]
    stride = stride or (width * _raw_bits_per_pixel(mode, rawmode) + 7) // 8
    first = top if ystep >= 0 else tile_rows - top - rows  # the band's first row in the file
    start = offset + first * stride
    return Image.frombytes(mode, (width, rows), view[start:], "raw", rawmode, stride, ystep)


@functools.cache
def _raw_bits_per_pixel(mode: str, rawmode: str) -> int:
    """Bits per pixel of one of Pillow's raw modes. Pillow does not publish them, but its raw
    decoder refuses too few bytes, and 8 pixels take exactly as many bytes as a pixel has bits."""
    for bits in range(1, _MAX_RAW_BITS_PER_PIXEL + 1):
        try:
            Image.frombytes(mode, (8, 1), bytes(bits), "raw", rawmode)
        except ValueError:
            continue
        return bits
    raise _NotInPieces
