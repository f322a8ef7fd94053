"""Structural pre-checks: read an image's container, never its pixels, and refuse what would cost too much.

A decoder's cost is not bounded by the file's size: a 50-byte GIF can ask Pillow for a 20000x20000
canvas, a 24 MiB JPEG can hold six million empty segments that Pillow walks one by one in Python.
``check_structure`` walks the container's blocks (GIF blocks, PNG chunks, RIFF chunks, TIFF IFDs,
JPEG markers, the BMP header, ISO-BMFF boxes) with ``struct`` only, in time linear in the file size,
and raises before any decoder runs:

* ``TooLarge`` (413) when something is over a limit: a canvas, frame, page or tile over
  ``settings.max_pixels``; more frames or pages than ``settings.max_frames``; more blocks, chunks,
  markers, scans or tag entries than the format's own bounds;
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

The walkers live with their formats, one module each under ``core/formats/`` (``gif.py``,
``png.py``, ...), with the bounds that are not settings (``MAX_GIF_BLOCKS``, ``MAX_JPEG_SCANS``, ...)
documented there; this module runs the one the registry names.

Nothing here or there imports more than the standard library and ``core``: it runs before Pillow
touches the bytes, inside the decode worker.
"""

from __future__ import annotations

import struct

from core import formats
from core.config import Settings
from core.formats import check_area

__all__ = ["check_area", "check_structure", "pixels_at_a_glance"]


def check_structure(data: bytes, fmt: str, settings: Settings) -> None:
    """Refuse ``data`` (already sniffed as ``fmt``, Pillow's format name) if its container declares more
    than the limits allow. Raises TooLarge (413) or CorruptImage (422) naming the problem; returns None
    when decoding may proceed. Cost: linear in ``len(data)``, no pixel is decoded."""
    image_format = formats.find(fmt)
    if image_format is not None:
        image_format.check_structure(data, settings)


def pixels_at_a_glance(data: bytes, fmt: str) -> int | None:
    """Width x height as the first header declares it, read in O(1) (a JPEG: at most
    ``core.formats.jpeg.GLANCE_SEGMENTS`` segment headers) without checking anything; None when the
    format does not tell so cheaply (TIFF, HEIF, AVIF) or the header is cut off. The decode scheduler
    uses it to tell big decodes from small ones; the checks above and the decoder decide what is
    allowed."""
    image_format = formats.find(fmt)
    if image_format is None or image_format.pixels_at_a_glance is None:
        return None
    try:
        return image_format.pixels_at_a_glance(data)
    except (struct.error, IndexError):
        return None
