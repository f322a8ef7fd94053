"""WebP: lossy (VP8), lossless (VP8L) and extended (VP8X: alpha, animation) in a RIFF container.

Structure check: the top-level RIFF chunks are walked as libwebp's demuxer walks them: the canvas
(VP8X) or bitstream size, every ``ANMF`` frame counted and placed inside the canvas, and at most
``MAX_WEBP_CHUNKS`` = 10,000 chunks (or ``4 * max_frames``), as for PNG.

Decode: Pillow's plugin over libwebp; the thumbnail is the first frame.
"""

from __future__ import annotations

import struct

from core.config import Settings
from core.errors import CorruptImage, TooLarge
from core.formats._base import ImageFormat, check_area, check_frame_count, check_rectangle, chunk_limit

MAX_WEBP_CHUNKS = 10_000


def _accept(prefix: bytes) -> bool:
    return prefix[:4] == b"RIFF" and prefix[8:12] == b"WEBP"


def _check(data: bytes, settings: Settings) -> None:
    """Walk the RIFF chunks: canvas (VP8X) or bitstream size, ANMF frame count and rectangles."""
    limit = chunk_limit(MAX_WEBP_CHUNKS, settings)
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
            check_frame_count(frames, f"the WebP declares more than {settings.max_frames} frames", settings)
            left, top = 2 * _u24(data, body), 2 * _u24(data, body + 3)
            width, height = _u24(data, body + 6) + 1, _u24(data, body + 9) + 1
            what = f"frame {frames} of the WebP"
            if canvas is None:
                raise CorruptImage(f"{what} comes before the WebP's canvas (VP8X) header")
            check_rectangle(what, left, top, width, height, canvas, settings)
            pos = _frame_end(data, body + 16, end)
            continue
        elif kind in (b"VP8 ", b"VP8L") and canvas is None:
            size_wh = _vp8_size(data, body, size) if kind == b"VP8 " else _vp8l_size(data, body, size)
            if size_wh is not None:
                check_area("the WebP", size_wh[0], size_wh[1], settings)
        pos = body + size + (size & 1)


def _frame_end(data: bytes, pos: int, end: int) -> int:
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


def _glance(data: bytes) -> int | None:
    kind, size = struct.unpack_from("<4sI", data, 12)
    if kind == b"VP8X":
        return (_u24(data, 24) + 1) * (_u24(data, 27) + 1)
    found = (_vp8_size if kind == b"VP8 " else _vp8l_size)(data, 20, size)
    return None if found is None else found[0] * found[1]


FORMAT = ImageFormat(
    name="WEBP",
    label="WebP",
    mime="image/webp",
    extensions=(".webp",),
    accept=_accept,
    check_structure=_check,
    pixels_at_a_glance=_glance,
    previewable=True,
    rank=40,
)
