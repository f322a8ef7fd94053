"""Bytes -> a validated image ready to store.

The format is decided from the content only (never the file name or the Content-Type), checked
against the allow-list (``core.formats``, one module per format), and the container's structure is
checked (``core.prechecks``: dimensions, frames, scans, chunks, tiles) before any pixel is decoded.
One decode (at reduced scale for JPEG, through libjpeg's draft mode) both proves the data is intact
and produces the upright thumbnail.

Decoding untrusted bytes can cost far more than their size, so ``inspect_image`` and
``make_preview`` run in the decode sandbox's worker processes (``core.sandbox``), never in the
server process; ``ingest_image`` is the same check in-process, for bytes the server made itself.
"""

from __future__ import annotations

import hashlib
import io
import math
import re
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFile

from core import formats
from core.config import Settings
from core.errors import CorruptImage, DarkroomError, TooLarge, UnsupportedImage
from core.prechecks import check_area, check_structure
from core.text import one_line
from core.units import format_bytes

formats.prepare_decoders()  # HEIC/HEIF through pillow-heif; the others are Pillow's own plugins
ImageFile.LOAD_TRUNCATED_IMAGES = False

# "cannot identify image file <_io.BytesIO object at 0x7f...>": internals never reach a user
_OBJECT_REPR = re.compile(r"<[^<>]*\bat 0x[0-9a-fA-F]+>")


# EXIF orientation tag -> the transpose that makes the picture upright (as ImageOps.exif_transpose).
_ORIENTATION_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


@dataclass(frozen=True)
class IngestedImage:
    """An image that passed every check, with what the store keeps of it."""

    filename: str
    format: str  # Pillow's name, as registered in core.formats: JPEG, PNG, GIF, WEBP, ...
    width: int  # upright (EXIF orientation applied)
    height: int
    data: bytes
    sha256: str
    thumbnail: bytes
    thumbnail_mime: str

    @property
    def mime(self) -> str:
        return formats.get(self.format).mime


def clean_filename(raw: str | None, max_length: int = 200, fallback: str = "image") -> str:
    """A display name safe to echo anywhere: ``core.text.one_line`` (control and format characters
    removed, white space folded), cut to ``max_length`` characters keeping the extension."""
    text = one_line(raw or "")
    if len(text) > max_length:
        stem, dot, ext = text.rpartition(".")
        if dot and 0 < len(ext) <= 10:
            text = stem[: max_length - len(ext) - 2] + "…." + ext
        else:
            text = text[: max_length - 1] + "…"
    return text or fallback


def sniff_format(data: bytes) -> str:
    """The allowed format the bytes are in, decided by their signature (``core.formats``);
    UnsupportedImage otherwise, naming what the file is when its signature tells."""
    found = formats.sniff(data)
    if found is not None:
        return found.name
    if not data:
        raise UnsupportedImage("the file is empty")
    allowed = formats.accepted_labels()
    other = formats.refused_name(data)
    if other:
        raise UnsupportedImage(f"{other} is not supported ({allowed} are)")
    raise UnsupportedImage(f"not a supported image: the content is not {allowed}")


@dataclass(frozen=True)
class ImageFacts:
    """What a decode worker learns about an upload (everything but the bytes, which the server has)."""

    format: str
    width: int
    height: int
    sha256: str
    thumbnail: bytes
    thumbnail_mime: str


def check_bytes(data: bytes, settings: Settings) -> str:
    """The cheap checks that need no decoder (size, then signature); returns the format."""
    if len(data) > settings.max_file_bytes:
        raise TooLarge(
            f"the file is {format_bytes(len(data))}; the limit is {format_bytes(settings.max_file_bytes)} per file"
        )
    return sniff_format(data)


def inspect_image(data: bytes, settings: Settings) -> ImageFacts:
    """Validate ``data`` and make its thumbnail: the decode sandbox's task. Raises UnsupportedImage
    (415), TooLarge (413) or CorruptImage (422) with a message that names the problem; any other
    failure of a decoder becomes CorruptImage with a plain message."""
    fmt = check_bytes(data, settings)
    check_structure(data, fmt, settings)
    try:
        return _decode(data, fmt, settings)
    except (DarkroomError, MemoryError):
        raise
    except Image.DecompressionBombError:
        raise TooLarge(_too_many_pixels_message(settings)) from None
    except Exception as exc:  # noqa: BLE001  a decoder's failure on client data is the data's fault
        raise CorruptImage(f"the {_label(fmt)} data is corrupt or truncated ({_reason(exc)})") from None


def _decode(data: bytes, fmt: str, settings: Settings) -> ImageFacts:
    # Pillow's bomb guard stays on at our cap: it also fires when a frame grows the canvas.
    Image.MAX_IMAGE_PIXELS = settings.max_pixels
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow's advisory warnings (EXIF, palette) are not errors
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data), formats=[fmt])
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise TooLarge(_too_many_pixels_message(settings)) from None
        except Exception as exc:  # noqa: BLE001
            raise CorruptImage(f"the {_label(fmt)} header is damaged ({_reason(exc)})") from None
        with image:
            width, height = image.size
            check_area("the image", width, height, settings)
            _check_frames(image, fmt, settings)
            orientation = _orientation(image)
            thumbnail, thumbnail_mime = _thumbnail(image, fmt, orientation, settings.thumbnail_size)
            check_area("the decoded image", *image.size, settings)  # the canvas may not grow while decoding
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    return ImageFacts(fmt, width, height, hashlib.sha256(data).hexdigest(), thumbnail, thumbnail_mime)


def with_facts(data: bytes, filename: str | None, facts: ImageFacts) -> IngestedImage:
    """The stored form of an upload, from its bytes and what the sandbox found."""
    return IngestedImage(
        filename=clean_filename(filename),
        format=facts.format,
        width=facts.width,
        height=facts.height,
        data=data,
        sha256=facts.sha256,
        thumbnail=facts.thumbnail,
        thumbnail_mime=facts.thumbnail_mime,
    )


def ingest_image(data: bytes, filename: str | None, settings: Settings) -> IngestedImage:
    """``inspect_image`` in this process: only for bytes the server trusts (its own test images,
    benchmarks); client bytes go through ``core.sandbox``."""
    return with_facts(data, filename, inspect_image(data, settings))


def make_preview(data: bytes, size: int) -> tuple[bytes, str]:
    """An upright preview of stored (already validated) image bytes, longest side ``size``
    (a decode sandbox task)."""
    fmt = sniff_format(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data), formats=[fmt]) as image:
                return _thumbnail(image, fmt, _orientation(image), size)
    except (DarkroomError, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001
        raise CorruptImage(f"the {_label(fmt)} data is corrupt or truncated ({_reason(exc)})") from None


def is_zip(data: bytes) -> bool:
    """Whether the bytes start like a ZIP archive (local header or an empty archive's end record)."""
    return formats.is_archive(data)


def _too_many_pixels_message(settings: Settings) -> str:
    return f"the image has too many pixels; the limit is {settings.max_pixels / 1e6:g} megapixels"


def _check_frames(image: Image.Image, fmt: str, settings: Settings) -> None:
    """Frames of the formats whose structure check does not count them (``counts_frames``); the
    others were counted there, without seeking (seeking decodes every frame before it)."""
    if formats.get(fmt).counts_frames:
        return
    frames = getattr(image, "n_frames", 1)  # read from the container by libheif/libavif
    if frames > settings.max_frames:
        raise TooLarge(f"the image has {frames} frames; the limit is {settings.max_frames}")


def _orientation(image: Image.Image) -> int:
    try:
        value = image.getexif().get(0x0112, 1)
    except Exception:  # noqa: BLE001  a damaged EXIF block only loses the orientation
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _thumbnail(image: Image.Image, fmt: str, orientation: int, size: int) -> tuple[bytes, str]:
    if formats.get(fmt).draft:
        # libjpeg decodes at 1/2..1/8 scale when the result still covers the thumbnail's box; asking
        # for the real box (not size x size) lets a 3:2 photo use 1/8.
        scale = size / max(image.size)
        if scale < 1:
            image.draft("RGB", (max(1, math.ceil(image.width * scale)), max(1, math.ceil(image.height * scale))))
    try:
        image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise
    except (DarkroomError, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001
        raise CorruptImage(f"the {_label(fmt)} data is corrupt or truncated ({_reason(exc)})") from None
    frame = _displayable(image, size)
    frame.thumbnail((size, size), Image.Resampling.BICUBIC, reducing_gap=2.0)
    if orientation in _ORIENTATION_TRANSPOSE:
        frame = frame.transpose(_ORIENTATION_TRANSPOSE[orientation])
    out = io.BytesIO()
    if frame.mode == "RGBA":
        frame.save(out, "PNG", optimize=False, compress_level=3)
        return out.getvalue(), "image/png"
    # Optimised Huffman tables: the same pixels in 15 % fewer bytes (a page's upload socket and its
    # thumbnail fetches carry every one), for no more encoding time at this size.
    frame.save(out, "JPEG", quality=85, optimize=True)
    return out.getvalue(), "image/jpeg"


# Modes whose pixels ``Image.reduce`` may average (a palette's indices may not be).
_REDUCIBLE_MODES = frozenset({"L", "LA", "La", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"})


def _displayable(image: Image.Image, size: int) -> Image.Image:
    """First frame as RGB, or RGBA when it has transparency, after a box reduction to about twice
    ``size`` where the mode allows it, so the thumbnail never copies the full frame. Integer and
    float images are scaled to their own range after that reduction (so a 49-megapixel float TIFF
    is normalised as 0.3 megapixels, not as 392 MB of float64)."""
    mode = image.mode
    if mode in ("I", "F") or mode.startswith("I;16"):
        if mode.startswith("I;16"):
            image = image.convert("I")
        factor = max(1, max(image.size) // (2 * size))
        if factor > 1:
            image = image.reduce(factor)
        values = np.asarray(image, dtype=np.float64)
        low, high = float(values.min()), float(values.max())
        scaled = (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)
        return Image.fromarray(scaled.astype(np.uint8), "L").convert("RGB")
    has_alpha = "A" in image.getbands() or "transparency" in image.info
    if mode in _REDUCIBLE_MODES:  # reduced first: converting a 50 MP frame would copy 200 MB
        factor = max(1, max(image.size) // (2 * size))
        if factor > 1:
            image = image.reduce(factor)
    return image.convert("RGBA" if has_alpha else "RGB")


def _label(fmt: str) -> str:
    return formats.get(fmt).label


def _reason(exc: BaseException) -> str:
    """A decoder's complaint in plain words: first line, no object reprs, bounded length."""
    text = _OBJECT_REPR.sub("the data", str(exc).split("\n")[0])[:120].strip()
    return text or "unreadable data"
