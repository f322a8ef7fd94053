"""GIF (87a and 89a), animated or not.

Structure check: the blocks are walked without LZW, exactly as Pillow's reader walks them: frames are
counted (counting by seeking would decode every frame before), every frame must lie inside the
logical screen (Pillow grows the canvas to fit one outside it: a 50-byte GIF can ask for 20000x20000
pixels), and ``MAX_GIF_BLOCKS`` = 1,000,000 bounds the extension blocks, data sub-blocks and stray
bytes between blocks together (Pillow skips each in a Python loop; a 25 MiB GIF written with the
usual 255-byte sub-blocks has about 100,000).

Decode: Pillow's own plugin; the thumbnail is the first frame.
"""

from __future__ import annotations

import struct

from core.config import Settings
from core.errors import CorruptImage, TooLarge
from core.formats._base import ImageFormat, check_area, check_frame_count, check_rectangle

MAX_GIF_BLOCKS = 1_000_000

_SIGNATURES = (b"GIF87a", b"GIF89a")


def _accept(prefix: bytes) -> bool:
    return prefix[:6] in _SIGNATURES


def _check(data: bytes, settings: Settings) -> None:
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
            pos, blocks = _skip_extension(data, pos + 1, frames == 0, blocks)
        elif introducer == 0x2C:  # image descriptor
            frames += 1
            check_frame_count(frames, f"the GIF declares more than {settings.max_frames} frames", settings)
            what = f"frame {frames} of the GIF"
            if pos + 10 > end:
                raise CorruptImage(f"the GIF is cut off inside the header of its frame {frames}")
            left, top, width, height, frame_flags = struct.unpack_from("<HHHHB", data, pos + 1)
            check_rectangle(what, left, top, width, height, (screen_w, screen_h), settings)
            pos += 10 + (3 << ((frame_flags & 7) + 1) if frame_flags & 0x80 else 0)
            if pos >= end:  # no room for the LZW code size: Pillow fails with an IndexError here
                raise CorruptImage(f"the GIF is cut off right after the header of its frame {frames}")
            pos, blocks = _skip_sub_blocks(data, pos + 1, blocks, f"its frame {frames}")
        else:  # Pillow skips stray bytes between blocks one at a time; so do we, counting them
            pos += 1


def _skip_extension(data: bytes, pos: int, first_frame: bool, blocks: int) -> tuple[int, int]:
    """Position after the extension whose label is at ``pos``, read exactly as Pillow reads it: a comment
    is one sub-block chain; any other extension is its first sub-block (two for the first frame's
    NETSCAPE2.0 block), then a chain, so an extension that starts with an empty sub-block swallows
    the chain after it. Reading it any other way would let frames hide from the count."""
    what = "an extension block"
    if pos >= len(data):
        raise CorruptImage(f"the GIF is cut off inside {what}")
    label = data[pos]
    if label == 0xFE:
        return _skip_sub_blocks(data, pos + 1, blocks, what)
    first_at = pos + 1
    pos, blocks = _skip_sub_block(data, first_at, blocks, what)
    if label == 0xFF and first_frame and data[first_at] and data[first_at + 1 : first_at + 12] == b"NETSCAPE2.0":
        pos, blocks = _skip_sub_block(data, pos, blocks, what)
    return _skip_sub_blocks(data, pos, blocks, what)


def _skip_sub_block(data: bytes, pos: int, blocks: int, what: str) -> tuple[int, int]:
    """Position after the one sub-block (or terminator) at ``pos``."""
    if pos >= len(data):
        raise CorruptImage(f"the GIF is cut off inside {what}")
    blocks += 1
    if blocks > MAX_GIF_BLOCKS:
        raise TooLarge(f"the GIF has more than {MAX_GIF_BLOCKS} blocks; the limit is {MAX_GIF_BLOCKS}")
    return pos + 1 + data[pos], blocks


def _skip_sub_blocks(data: bytes, pos: int, blocks: int, what: str) -> tuple[int, int]:
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


def _glance(data: bytes) -> int:
    width, height = struct.unpack_from("<HH", data, 6)
    return width * height


FORMAT = ImageFormat(
    name="GIF",
    label="GIF",
    mime="image/gif",
    extensions=(".gif",),
    accept=_accept,
    check_structure=_check,
    pixels_at_a_glance=_glance,
    previewable=True,
    rank=30,
)
