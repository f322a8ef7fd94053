"""PNG, and APNG (animated PNG).

Structure check: the chunks are walked: the IHDR size, the number of chunks (``MAX_PNG_CHUNKS`` =
10,000, or ``4 * max_frames`` if larger, so that APNGs at the frame limit fit: Pillow reads each
chunk in Python, the "2 million private chunks" PNG), the APNG frame count from ``acTL`` and ``fcTL``
(plus the default image when it has no ``fcTL`` of its own: one frame more for Pillow) and every
frame's rectangle inside the canvas. A truncated chunk is left to the decoder, which reports it.

Decode: Pillow's own plugin. ``core.features.decode`` inflates big non-interlaced PNGs a strip of
rows at a time (see there).
"""

from __future__ import annotations

import struct

from core.config import Settings
from core.errors import CorruptImage, TooLarge
from core.formats._base import ImageFormat, check_area, check_frame_count, check_rectangle, chunk_limit

MAX_PNG_CHUNKS = 10_000

SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _accept(prefix: bytes) -> bool:
    return prefix.startswith(SIGNATURE)


def _check(data: bytes, settings: Settings) -> None:
    """Walk the PNG's chunks: IHDR size, chunk count, APNG frame count and frame rectangles."""
    if len(data) < 33 or data[12:16] != b"IHDR":
        raise CorruptImage("the PNG has no IHDR header chunk")
    width, height = struct.unpack_from(">II", data, 16)
    check_area("the PNG", width, height, settings)
    limit = chunk_limit(MAX_PNG_CHUNKS, settings)
    pos = len(SIGNATURE)
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
            check_frame_count(count, f"the PNG (APNG) declares {count} frames", settings)
            declared = max(declared or 0, count)
        elif kind == b"IDAT" and declared is not None and frame_controls == 0:
            # A default image without its own fcTL is one frame more for Pillow.
            check_frame_count(
                declared + 1, f"the PNG (APNG) declares {declared} frames and a separate default image", settings
            )
            declared = None
        elif kind == b"fcTL" and length >= 20:
            frame_controls += 1
            check_frame_count(frame_controls, f"the PNG (APNG) has more than {settings.max_frames} frames", settings)
            fw, fh, fx, fy = struct.unpack_from(">IIII", data, body + 4)
            what = f"frame {frame_controls} of the PNG (APNG)"
            if fw == 0 or fh == 0:
                raise CorruptImage(f"{what} has an impossible size {fw}x{fh}")
            check_rectangle(what, fx, fy, fw, fh, (width, height), settings)
        elif kind == b"IEND":
            return
        pos = body + length + 4


def _glance(data: bytes) -> int | None:
    if data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack_from(">II", data, 16)
    return width * height


FORMAT = ImageFormat(
    name="PNG",
    label="PNG",
    mime="image/png",
    extensions=(".png", ".apng"),
    accept=_accept,
    check_structure=_check,
    pixels_at_a_glance=_glance,
    previewable=True,
    rank=20,
)
