"""BMP (Windows and OS/2 bitmaps), uncompressed or RLE.

Structure check: the header's size and the image's, and RLE only where Pillow's pure-Python RLE
decoder stays cheap (one interpreted step per output pixel, the end-of-line padding included, and
per input pair): an RLE BMP must be at most ``MAX_BMP_RLE_PIXELS`` = 4,000,000 pixels and its RLE
data at most what the worst honest encoding needs: ``RLE_BYTES_PER_PIXEL`` = 2 bytes per pixel (runs
of one), 4 per row (end of line) and ``RLE_SLACK_BYTES`` = 1024.

Decode: Pillow's own plugin; ``core.features.decode`` reads big uncompressed bitmaps a band of rows
at a time.
"""

from __future__ import annotations

import struct

from core.config import Settings
from core.errors import CorruptImage, TooLarge
from core.formats._base import ImageFormat, check_area

MAX_BMP_RLE_PIXELS = 4_000_000
RLE_BYTES_PER_PIXEL = 2
RLE_SLACK_BYTES = 1024

_MIN_FILE_BYTES = 26  # file header and the smallest (OS/2) bitmap header
_HEADER_SIZES = frozenset({12, 16, 40, 52, 56, 64, 108, 124})
_RLE = {1: "RLE8", 2: "RLE4"}


def _accept(prefix: bytes) -> bool:
    return prefix[:2] == b"BM" and len(prefix) >= _MIN_FILE_BYTES


def _check(data: bytes, settings: Settings) -> None:
    """Header size, image size, and RLE only where Pillow's pure-Python RLE decoder stays cheap."""
    if len(data) < 18:
        raise CorruptImage("the BMP is cut off inside its header")
    (header_size,) = struct.unpack_from("<I", data, 14)
    if header_size not in _HEADER_SIZES:
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
    if compression in _RLE:
        kind = _RLE[compression]
        if width * height > MAX_BMP_RLE_PIXELS:
            raise TooLarge(
                f"the BMP is {kind}-compressed at {width}x{height}, {width * height / 1e6:.1f} megapixels; "
                f"{kind} BMPs are read only up to {MAX_BMP_RLE_PIXELS / 1e6:g} megapixels"
            )
        (pixel_offset,) = struct.unpack_from("<I", data, 10)
        rle_bytes = len(data) - min(pixel_offset, len(data))
        if rle_bytes > RLE_BYTES_PER_PIXEL * width * height + 4 * height + RLE_SLACK_BYTES:
            raise TooLarge(f"the BMP's {kind} data is {rle_bytes} bytes, more than a {width}x{height} image can need")


def _glance(data: bytes) -> int:
    width, height = struct.unpack_from("<ii", data, 18)
    return abs(width) * abs(height)


FORMAT = ImageFormat(
    name="BMP",
    label="BMP",
    mime="image/bmp",
    mime_aliases=("image/x-ms-bmp",),
    extensions=(".bmp", ".dib"),
    accept=_accept,
    check_structure=_check,
    pixels_at_a_glance=_glance,
    previewable=True,
    rank=50,
)
