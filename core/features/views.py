"""One decode per image, and the views every feature shares, each computed at most once.

Images over ``max_pixels`` (``DARKROOM_FEATURE_MAX_PIXELS``) are analysed on a view downscaled to
fit it, decoded band by band so that the full size is never held where the format allows it
(``core.features.decode``): features stay exact at and below the cap, and the memory of any image
is bounded by the cap. ``basic`` still reports the full size.

Conventions (FEATURES.md §2): the first frame, upright (EXIF orientation applied: Darkroom shows
images upright); ``rgb`` is ``convert('RGB')`` (alpha dropped, not composited); ``gray`` is
``convert('L')`` (Pillow's (19595R + 38470G + 7471B + 32768) >> 16); per-channel features use
``L`` alone for single-band modes, else R, G, B.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property

import numpy as np
from PIL import Image, ImageOps

from core.errors import CorruptImage
from core.features.decode import decode_for_analysis

GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})
_TAG_LOG = logging.getLogger("PIL.TiffImagePlugin")  # where Pillow logs each EXIF tag it reads


@contextmanager
def exif_log_off() -> Iterator[None]:
    """Pillow logs every EXIF tag's raw bytes at DEBUG as it reads an IFD, GPS coordinates too (and
    ``exif_transpose`` reads the GPS IFD to write the EXIF back): inside this, it logs nothing."""
    was = _TAG_LOG.disabled
    _TAG_LOG.disabled = True
    try:
        yield
    finally:
        _TAG_LOG.disabled = was


class ImageViews:
    """Lazily computed views of one decoded image."""

    def __init__(self, data: bytes, max_pixels: int | None = None) -> None:
        self.byte_size = len(data)
        try:
            with exif_log_off():
                decoded = decode_for_analysis(data, max_pixels)
                stored_size = decoded.image.size
                ImageOps.exif_transpose(decoded.image, in_place=True)  # in place: no second copy
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise CorruptImage(f"the image cannot be decoded ({type(exc).__name__})") from None
        self.format = decoded.format
        self.image: Image.Image = decoded.image
        self.is_gray_mode = self.image.mode in GRAY_MODES
        full_width, full_height = decoded.full_size
        swapped = self.image.size != stored_size  # orientations 5..8 turn the picture a quarter
        self.full_size = (full_height, full_width) if swapped else (full_width, full_height)

    @property
    def width(self) -> int:
        return self.image.width

    @property
    def height(self) -> int:
        return self.image.height

    @property
    def pixel_count(self) -> int:
        return self.image.width * self.image.height

    @cached_property
    def rgb_image(self) -> Image.Image:
        return self.image if self.image.mode == "RGB" else self.image.convert("RGB")

    @cached_property
    def gray_image(self) -> Image.Image:
        return self.image if self.image.mode == "L" else self.image.convert("L")

    @cached_property
    def rgb(self) -> np.ndarray:
        """H x W x 3 uint8."""
        return np.asarray(self.rgb_image)

    @cached_property
    def gray(self) -> np.ndarray:
        """H x W uint8."""
        return np.asarray(self.gray_image)

    @cached_property
    def rgb_histograms(self) -> np.ndarray:
        """3 x 256 counts of R, G, B (Pillow's C histogram: one pass, no copies)."""
        return np.asarray(self.rgb_image.histogram(), dtype=np.int64).reshape(3, 256)

    @cached_property
    def gray_histogram(self) -> np.ndarray:
        return np.asarray(self.gray_image.histogram(), dtype=np.int64)

    @cached_property
    def channel_histograms(self) -> dict[str, np.ndarray]:
        """The per-channel features' channels: ``L`` for single-band modes, else R, G, B."""
        if self.is_gray_mode:
            return {"L": self.gray_histogram}
        r, g, b = self.rgb_histograms
        return {"R": r, "G": g, "B": b}

    @cached_property
    def native_histogram(self) -> np.ndarray:
        """Pillow's histogram of the image in its own mode (bands x 256 concatenated)."""
        if self.image.mode == "RGB":
            return self.rgb_histograms.ravel()
        if self.image.mode == "L":
            return self.gray_histogram
        return np.asarray(self.image.histogram(), dtype=np.int64)

    @cached_property
    def pillow_entropy(self) -> float:
        """``Image.entropy()`` of the image in its own mode (what CleanVision uses)."""
        if self.image.mode in ("RGB", "L"):
            return entropy_of_counts(self.native_histogram)
        return float(self.image.entropy())

    @cached_property
    def hsv_image(self) -> Image.Image:
        """Pillow's HSV: its float32 arithmetic, which plain float64 misses (FEATURES.md §3.3)."""
        return self.rgb_image.convert("HSV")

    @cached_property
    def hsv(self) -> np.ndarray:
        """H x W x 3 uint8."""
        return np.asarray(self.hsv_image)


def entropy_of_counts(counts: np.ndarray) -> float:
    """Shannon entropy in bits of a histogram: -sum p log2 p over the non-zero bins."""
    nonzero = counts[counts > 0].astype(np.float64)
    p = nonzero / nonzero.sum()
    return float(-(p * np.log2(p)).sum())
