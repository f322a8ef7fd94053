"""exif (when, with which camera and lens, at which exposure) and exif_gps (where), from the image's
EXIF metadata.

Both read Pillow's ``Image.getexif()`` of the one decode every group shares, in the decode sandbox:
no byte of the file is parsed here, and Pillow reads an IFD's entries within the file's own size.
Tags are looked up in the Exif sub-IFD first, then in IFD0 (TIFF writers often keep them there).
A missing, damaged or out-of-range value is ``None``; text is cleaned like every name
(``core.text.one_line``) and cut to ``MAX_TEXT_CHARS``.

Where a photo was taken is personal data. ``exif_gps`` is not a default group: it is computed and
shown only when named (``groups=exif_gps``), so it is in no default table, export or detail view.
Pillow logs every tag's raw bytes at DEBUG while it reads an IFD, so EXIF is only read with that
logger switched off (``exif_log_off``, also around the decode): the coordinates never reach a log,
whatever the logging level.
"""

from __future__ import annotations

import math
import re
import struct
from datetime import datetime
from typing import Any

from PIL import Image
from PIL.ExifTags import GPS, IFD, Base

from core.features.registry import register
from core.features.views import ImageViews, exif_log_off
from core.text import one_line

MAX_TEXT_CHARS = 128
# What Pillow raises for EXIF it cannot read (truncated IFDs, bad offsets, wrong types).
_UNREADABLE = (OSError, ValueError, SyntaxError, struct.error, KeyError, TypeError, IndexError, EOFError)
_DATE_TIME = re.compile(r"(\d{4})[:-](\d{2})[:-](\d{2})[ T](\d{2}):(\d{2}):(\d{2})")
_SUBSECONDS = re.compile(r"\d{1,9}")
_OFFSET = re.compile(r"[+-](?:0\d|1[0-4]):[0-5]\d")


def _ifds(image: Image.Image, sub_ifd: IFD) -> tuple[dict[int, Any], dict[int, Any]]:
    """IFD0 and ``sub_ifd`` of the image's EXIF (empty when absent or unreadable)."""
    with exif_log_off():
        try:
            exif = image.getexif()
            return dict(exif), dict(exif.get_ifd(sub_ifd))
        except _UNREADABLE:
            return {}, {}


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if not isinstance(value, str):
        return None
    cleaned = one_line(value.split("\x00", 1)[0])[:MAX_TEXT_CHARS]
    return cleaned or None


def _number(value: object) -> float | None:
    """A non-negative finite number from a rational, an int or the first of a tuple of them."""
    if isinstance(value, tuple | list):
        value = value[0] if value else None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return number if math.isfinite(number) and number >= 0 else None


def _capture_time(date_time: object, subseconds: object, offset: object) -> str | None:
    """EXIF's ``YYYY:MM:DD HH:MM:SS`` (a real date and time) as ISO 8601, with its fraction of a
    second and UTC offset when the camera wrote them."""
    text = _text(date_time)
    match = _DATE_TIME.fullmatch(text) if text else None
    if match is None:
        return None
    fields = [int(part) for part in match.groups()]
    try:
        datetime(*fields)  # type: ignore[arg-type, misc]
    except ValueError:  # 0000:00:00 00:00:00 (unknown) and the like
        return None
    year, month, day, hour, minute, second = fields
    stamp = f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}"
    fraction = _text(subseconds)
    if fraction and _SUBSECONDS.fullmatch(fraction):
        stamp += f".{fraction}"
    zone = _text(offset)
    if zone and _OFFSET.fullmatch(zone):
        stamp += zone
    return stamp


@register(
    "exif",
    "Capture metadata from EXIF: when (DateTimeOriginal, else DateTimeDigitized, with SubSecTime and "
    "OffsetTime when written), the camera's make and model, the lens, exposure time, f-number, ISO and "
    "focal length. Null where the image has no such tag or an unreadable one. No location: see exif_gps.",
    {
        "capture_time": "str, ISO 8601 local time as the camera wrote it (fraction and offset when present)",
        "camera_make": "str, EXIF Make",
        "camera_model": "str, EXIF Model",
        "lens": "str, EXIF LensModel",
        "exposure_time_s": "float, seconds (ExposureTime)",
        "f_number": "float (FNumber)",
        "iso": "int (PhotographicSensitivity, formerly ISOSpeedRatings)",
        "focal_length_mm": "float, millimetres (FocalLength, not the 35 mm equivalent)",
    },
    {"max_text_chars": MAX_TEXT_CHARS},
    "EXIF 2.32 (CIPA DC-008) tags read by Pillow's Image.getexif()",
)
def exif(views: ImageViews) -> dict[str, Any]:
    ifd0, sub = _ifds(views.image, IFD.Exif)

    def tag(number: int) -> Any:
        return sub.get(number, ifd0.get(number))

    original = tag(Base.DateTimeOriginal) is not None
    capture = _capture_time(
        tag(Base.DateTimeOriginal if original else Base.DateTimeDigitized),
        tag(Base.SubsecTimeOriginal if original else Base.SubsecTimeDigitized),
        tag(Base.OffsetTimeOriginal if original else Base.OffsetTimeDigitized),
    )
    iso = _number(tag(Base.ISOSpeedRatings))
    return {
        "capture_time": capture,
        "camera_make": _text(ifd0.get(Base.Make)),
        "camera_model": _text(ifd0.get(Base.Model)),
        "lens": _text(tag(Base.LensModel)),
        "exposure_time_s": _number(tag(Base.ExposureTime)),
        "f_number": _number(tag(Base.FNumber)),
        "iso": None if iso is None else int(iso),
        "focal_length_mm": _number(tag(Base.FocalLength)),
    }


def _degrees(value: object, reference: object, negative: str, limit: float) -> float | None:
    """Degrees, minutes and seconds as signed decimal degrees (``negative``: S or W), within
    ``limit``."""
    if not isinstance(value, tuple | list) or len(value) != 3:
        return None
    parts = [_number(part) for part in value]
    if any(part is None for part in parts):
        return None
    degrees, minutes, seconds = parts
    total = degrees + minutes / 60 + seconds / 3600  # type: ignore[operator]
    if total > limit:
        return None
    return -total if _text(reference) == negative else total


@register(
    "exif_gps",
    "Where the photo was taken, from EXIF's GPS IFD: latitude and longitude in signed decimal degrees "
    "(south and west negative) and altitude in metres (below sea level negative). Personal data: only "
    "when named (groups=exif_gps), never in the default table, exports or logs.",
    {
        "latitude": "float, degrees -90..90",
        "longitude": "float, degrees -180..180",
        "altitude_m": "float, metres above sea level",
    },
    {},
    "EXIF 2.32 (CIPA DC-008) GPS Info IFD read by Pillow's Image.getexif().get_ifd(GPSInfo)",
    by_default=False,
)
def exif_gps(views: ImageViews) -> dict[str, Any]:
    _, gps = _ifds(views.image, IFD.GPSInfo)
    altitude = _number(gps.get(GPS.GPSAltitude))
    below_sea = gps.get(GPS.GPSAltitudeRef) in (1, b"\x01")
    return {
        "latitude": _degrees(gps.get(GPS.GPSLatitude), gps.get(GPS.GPSLatitudeRef), "S", 90),
        "longitude": _degrees(gps.get(GPS.GPSLongitude), gps.get(GPS.GPSLongitudeRef), "W", 180),
        "altitude_m": None if altitude is None else (-altitude if below_sea else altitude),
    }
