"""AVIF: AV1 images in the ISO base media file format (``core.formats._isobmff``).

Structure check: the ISO-BMFF box walk (box count, every ``ispe`` and ``clap`` size within the cap).

Decode: Pillow's own AVIF plugin (libavif). Frames are not counted from the container: ingest reads
the count libavif reports after opening (``counts_frames=False``). The size is not read at a glance.
"""

from __future__ import annotations

from core.config import Settings
from core.formats._base import ImageFormat
from core.formats._isobmff import brands, check_boxes

BRANDS = frozenset({b"avif", b"avis"})


def _accept(prefix: bytes) -> bool:
    return bool(brands(prefix) & BRANDS)


def _check(data: bytes, settings: Settings) -> None:
    check_boxes(data, settings, "AVIF")


FORMAT = ImageFormat(
    name="AVIF",
    label="AVIF",
    mime="image/avif",
    extensions=(".avif",),
    accept=_accept,
    check_structure=_check,
    previewable=True,
    counts_frames=False,
    rank=80,
)
