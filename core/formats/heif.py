"""HEIC/HEIF: HEVC images in the ISO base media file format (``core.formats._isobmff``), as phones
take them.

Structure check: the ISO-BMFF box walk (box count, every ``ispe`` and ``clap`` size within the cap).

Decode: through ``pillow-heif`` (libheif), whose opener is registered with Pillow before the first
decode (``prepare_decoder``). Frames are not counted from the container: ingest reads the count
libheif reports after opening. A file that lists an AVIF brand too is AVIF (its images are AV1).
Browsers other than Safari cannot show it: no local preview. The size is not read at a glance.
"""

from __future__ import annotations

from core.config import Settings
from core.formats import avif
from core.formats._base import ImageFormat
from core.formats._isobmff import brands, check_boxes

BRANDS = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"})


def _accept(prefix: bytes) -> bool:
    found = brands(prefix)
    return bool(found & BRANDS) and not found & avif.BRANDS


def _check(data: bytes, settings: Settings) -> None:
    check_boxes(data, settings, "HEIF")


def _register_opener() -> None:
    import pillow_heif  # libheif: loaded by the decoders (core.ingest), not by every reader of the registry

    pillow_heif.register_heif_opener()


FORMAT = ImageFormat(
    name="HEIF",
    label="HEIC/HEIF",
    mime="image/heic",
    extensions=(".heic", ".heif"),
    accept=_accept,
    check_structure=_check,
    counts_frames=False,
    prepare_decoder=_register_opener,
    rank=70,
)
