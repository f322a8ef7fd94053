"""JPEG (baseline, progressive, and anything else Pillow's libjpeg reads).

Structure check: the markers are walked to the end of the first image, as Pillow reads the header
and libjpeg the scans, quirks included:

* ``MAX_JPEG_MARKERS`` = 10,000 markers (segments, stray ``FF xx`` pairs): Pillow walks a 24 MiB
  file of six million empty segments one by one in Python;
* ``MAX_JPEG_SCANS`` = 100 start-of-scan markers (each progressive scan is a pass over the whole
  image in libjpeg);
* ``MAX_JPEG_JUNK_BYTES`` = 1 MiB of stray or fill bytes between segments before the first scan
  (Pillow skips them one byte at a time);
* every frame header's size within the cap.

A missing end marker or a cut-off scan is left to the decoder, which reports it.

Decode: ``draft`` (libjpeg decodes at 1/2..1/8 scale), so a thumbnail of even a 50-megapixel photo
is a small decode and never a heavy task for the scheduler. The EXIF orientation is applied to the
thumbnail. Phones and cameras embed a small preview in the EXIF block (APP1, IFD1); the page's drop
zone shows it before the upload ends (``ui/upload_worker.js``).
"""

from __future__ import annotations

import re
import struct

from core.config import Settings
from core.errors import CorruptImage, TooLarge
from core.formats._base import ImageFormat, check_area

MAX_JPEG_MARKERS = 10_000
MAX_JPEG_SCANS = 100
MAX_JPEG_JUNK_BYTES = 1024 * 1024
GLANCE_SEGMENTS = 64  # segments skipped looking for the frame header before giving up

_SIGNATURE = b"\xff\xd8\xff"  # start of image, then the first marker
# In entropy-coded JPEG data 0xFF is stuffed as FF 00 and restart markers are FF D0..D7; anything else
# after an FF is a marker (or a fill byte, handled by the caller).
_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7]")
_FILL = re.compile(rb"\xff+")
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})
# Pillow reads a frame size from each of these (DHP included); it reads no length after JPG/JPGn markers.
_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF, 0xDE})
_NO_LENGTH = frozenset({0xC8, *range(0xF0, 0xFE)})
_SOS, _EOI, _SOI = 0xDA, 0xD9, 0xD8


def _accept(prefix: bytes) -> bool:
    return prefix.startswith(_SIGNATURE)


def _check(data: bytes, settings: Settings) -> None:
    """Walk the JPEG's markers to the end of the first image: marker, scan and stray-byte counts, frame size."""
    end = len(data)
    pos = 2
    markers = 0
    scans = 0
    junk = 0
    in_scan = False
    while pos < end:
        if in_scan:  # entropy-coded data (stuffed FF 00, restarts FF D0..D7) is skipped in C
            found = _NEXT_MARKER.search(data, pos)
            if found is None:
                return
            pos = found.start()
        elif data[pos] != 0xFF:
            found_ff = data.find(b"\xff", pos)
            if found_ff < 0:
                return
            junk += found_ff - pos
            pos = found_ff
        fill = _FILL.match(data, pos)  # data[pos] is 0xFF: fill bytes may repeat it
        fill_end = fill.end() if fill else pos + 1
        junk += fill_end - pos - 1
        pos = fill_end
        if scans == 0 and junk > MAX_JPEG_JUNK_BYTES:  # before the first scan Pillow skips them one by one
            raise TooLarge(
                f"the JPEG has more than {MAX_JPEG_JUNK_BYTES} stray bytes between its segments; "
                f"the limit is {MAX_JPEG_JUNK_BYTES}"
            )
        if pos >= end:
            return
        marker = data[pos]
        pos += 1
        markers += 1
        if markers > MAX_JPEG_MARKERS:
            raise TooLarge(f"the JPEG has more than {MAX_JPEG_MARKERS} markers; the limit is {MAX_JPEG_MARKERS}")
        if marker == _EOI:
            if scans:
                return
            continue  # before any scan Pillow reads on past an end marker, looking for the frame
        if marker == 0x00 or marker == _SOI or marker in _STANDALONE:
            continue  # no segment follows; inside a scan, the scan goes on
        if marker in _NO_LENGTH and scans == 0:
            continue  # as Pillow reads the header (libjpeg refuses these markers)
        if marker < 0xC0 or marker in _NO_LENGTH:
            return  # Pillow (before the first scan) or libjpeg (after it) refuses the file here
        in_scan = False
        if pos + 2 > end:
            return
        (length,) = struct.unpack_from(">H", data, pos)
        if length < 2:
            raise CorruptImage(f"the JPEG has a segment (marker FF{marker:02X}) with an impossible length {length}")
        if marker in _SOF and pos + 7 <= end:
            height, width = struct.unpack_from(">HH", data, pos + 3)
            check_area("the JPEG", width, height, settings)
        pos += length
        if marker == _SOS:
            scans += 1
            if scans > MAX_JPEG_SCANS:
                raise TooLarge(f"the JPEG has more than {MAX_JPEG_SCANS} scans; the limit is {MAX_JPEG_SCANS}")
            in_scan = True


def _glance(data: bytes) -> int | None:
    """The first frame header's size, past at most ``GLANCE_SEGMENTS`` segment headers."""
    pos = 2
    for _ in range(GLANCE_SEGMENTS):
        while data[pos] == 0xFF and data[pos + 1] == 0xFF:  # fill bytes
            pos += 1
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker in _SOF:
            height, width = struct.unpack_from(">HH", data, pos + 5)
            return width * height
        (length,) = struct.unpack_from(">H", data, pos + 2)
        pos += 2 + length
    return None


FORMAT = ImageFormat(
    name="JPEG",
    label="JPEG",
    mime="image/jpeg",
    extensions=(".jpg", ".jpeg", ".jpe", ".jfif"),
    accept=_accept,
    check_structure=_check,
    pixels_at_a_glance=_glance,
    previewable=True,
    draft=True,
    rank=10,
)
