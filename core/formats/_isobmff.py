"""The ISO base media file format (ISO/IEC 14496-12) that HEIF and AVIF are written in: the brands
that say which one a file is, and the box walk their structure checks share.

``MAX_BMFF_BOXES`` = 10,000 boxes are walked (top level and inside ``meta``/``iprp``/``ipco``);
every ``ispe`` (image spatial extents) property and every ``clap`` (clean aperture, which libheif
reports as the image's size) must be within the pixel cap. Damaged or truncated boxes end the walk
of their container: the decoder reports them.
"""

from __future__ import annotations

import struct

from core.config import Settings
from core.errors import TooLarge
from core.formats._base import check_area

MAX_BMFF_BOXES = 10_000

_CONTAINERS = frozenset({b"meta", b"iprp", b"ipco"})


def brands(prefix: bytes) -> frozenset[bytes]:
    """The major and compatible brands of the leading ``ftyp`` box (as far as ``prefix`` holds it);
    empty when the bytes do not start with one. A generic "mif1" major brand is common, so a format
    is told by all of them."""
    if prefix[4:8] != b"ftyp":
        return frozenset()
    box_end = min(len(prefix), int.from_bytes(prefix[:4], "big"))
    return frozenset({prefix[8:12]} | {prefix[i : i + 4] for i in range(16, box_end - 3, 4)})


def check_boxes(data: bytes, settings: Settings, label: str) -> None:
    """Walk the boxes down to ``meta/iprp/ipco``; every ``ispe`` image size must be within the cap."""
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
            if kind in _CONTAINERS:
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
