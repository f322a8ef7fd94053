"""Quality flags: CleanVision 0.3.7's per-image checks, computed as it does (quirks included)."""

from __future__ import annotations

import hashlib
import math
from typing import Any

import numpy as np
from PIL import ImageFilter, ImageStat

from core.features.registry import register
from core.features.views import ImageViews

DARK_THRESHOLD = 0.32
LIGHT_THRESHOLD = 0.05
ODD_ASPECT_THRESHOLD = 0.35
LOW_INFORMATION_THRESHOLD, LOW_INFORMATION_NORM = 0.3, 0.1
BLURRY_THRESHOLD, BLURRY_NORM, BLURRY_COLOR_THRESHOLD = 0.29, 0.01, 0.18
BLUR_MAX_RESOLUTION = 64
PERCENTILES = [1, 5, 10, 15, 90, 95, 99]
# Perceived-brightness weights per squared channel, as lookup tables: the same float64 products.
_SQUARES = np.arange(256, dtype=np.int64) ** 2
_R_TABLE, _G_TABLE, _B_TABLE = 0.241 * _SQUARES, 0.691 * _SQUARES, 0.068 * _SQUARES


def _brightness(red: float, green: float, blue: float) -> float:
    return math.sqrt(0.241 * (red * red) + 0.691 * (green * green) + 0.068 * (blue * blue)) / 255


def _brightness_fields(views: ImageViews) -> dict[str, Any]:
    array = np.asarray(views.image)
    if array.ndim == 3:
        if array.shape[2] < 3:
            raise IndexError(f"index 2 is out of bounds for axis 2 with size {array.shape[2]}")
        per_pixel = np.sqrt(_R_TABLE[array[..., 0]] + _G_TABLE[array[..., 1]] + _B_TABLE[array[..., 2]]) / 255
        percentiles = np.percentile(per_pixel, PERCENTILES)
    else:
        percentiles = _percentiles_of_levels(array, views)
    means = _band_means(views)
    red, green, blue = means if len(means) == 3 else (means[0],) * 3
    dark, light = float(percentiles[6]), float(1 - percentiles[1])
    return {
        "brightness": _brightness(red, green, blue),
        "brightness_perc": {str(p): float(v) for p, v in zip(PERCENTILES, percentiles, strict=True)},
        "dark_score": dark,
        "is_dark": dark < DARK_THRESHOLD,
        "light_score": light,
        "is_light": light < LIGHT_THRESHOLD,
    }


def _percentiles_of_levels(array: np.ndarray, views: ImageViews) -> np.ndarray:
    """np.percentile(array / 255) for a 2-D array; from the histogram when it is 8-bit."""
    if array.dtype != np.uint8:
        return np.percentile(array / 255.0, PERCENTILES)
    counts = np.bincount(array.ravel(), minlength=256) if views.image.mode != "L" else views.gray_histogram
    cumulative = np.cumsum(counts)
    n = int(cumulative[-1])
    out = []
    for p in PERCENTILES:
        position = (n - 1) * p / 100  # numpy's default 'linear' method
        below = math.floor(position)
        low = int(np.searchsorted(cumulative, below, side="right"))
        high = int(np.searchsorted(cumulative, min(below + 1, n - 1), side="right"))
        low_value, high_value = low / 255.0, high / 255.0
        out.append(low_value + (high_value - low_value) * (position - below))
    return np.asarray(out)


def _band_means(views: ImageViews) -> list[float]:
    if views.image.mode == "RGB":
        return [float(h @ np.arange(256)) / views.pixel_count for h in views.rgb_histograms]
    return list(ImageStat.Stat(views.image).mean)


def _blur_fields(views: ImageViews) -> dict[str, Any]:
    image = views.image
    ratio = max(image.width, image.height) / BLUR_MAX_RESOLUTION
    if ratio > 1:
        small = image.resize((max(int(image.width // ratio), 1), max(int(image.height // ratio), 1)))
    else:
        small = image.copy()
    gray = small.convert("L")
    edges = gray.filter(ImageFilter.FIND_EDGES)
    blurriness = float(np.sqrt(ImageStat.Stat(edges).var[0]))
    gray_std = float(np.std(gray.histogram()))
    blur_score = 1 - np.exp(-1 * blurriness * BLURRY_NORM)
    std_score = 1 - np.exp(-1 * gray_std * BLURRY_NORM)
    if std_score <= BLURRY_COLOR_THRESHOLD:
        std_score = 0.0
    score = float(min(blur_score + std_score, 1.0))
    return {
        "blurriness": blurriness,
        "blurriness_grayscale_std": gray_std,
        "blurry_score": score,
        "is_blurry": score < BLURRY_THRESHOLD,
    }


@register(
    "cleanvision",
    "CleanVision 0.3.7's per-image quality checks with its default thresholds: dark, light, odd aspect "
    "ratio, low information, blurry, grayscale; the size and pixel hash its dataset checks use.",
    {
        "brightness": "float 0..1",
        "brightness_perc": "percentiles 1..99 of per-pixel brightness",
        "dark_score / is_dark": "99th percentile; dark below 0.32",
        "light_score / is_light": "1 - 5th percentile; light below 0.05",
        "aspect_ratio_score / is_odd_aspect_ratio": "min(W/H, H/W); odd below 0.35",
        "entropy / low_information_score / is_low_information": "0.1 * entropy; low below 0.3",
        "blurriness / blurriness_grayscale_std / blurry_score / is_blurry": "blurry below 0.29",
        "color_space / is_grayscale": "mode; grayscale when mode is L",
        "size": "sqrt(W) * sqrt(H)",
        "pixel_md5": "md5 of the pixel array (exact-duplicate key)",
        "errors": "checks CleanVision itself cannot run on this mode (their fields are null)",
    },
    {
        "dark": DARK_THRESHOLD,
        "light": LIGHT_THRESHOLD,
        "odd_aspect_ratio": ODD_ASPECT_THRESHOLD,
        "low_information": LOW_INFORMATION_THRESHOLD,
        "blurry": BLURRY_THRESHOLD,
    },
    "cleanvision 0.3.7 image_property.py",
)
def cleanvision(views: ImageViews) -> dict[str, Any]:
    image = views.image
    out: dict[str, Any] = {}
    errors: list[str] = []
    try:
        out.update(_brightness_fields(views))
    except (IndexError, ValueError) as exc:
        errors.append(f"brightness: {type(exc).__name__}: {exc}")
        out.update(dict.fromkeys(["brightness", "brightness_perc", "dark_score", "is_dark", "light_score", "is_light"]))
    aspect = min(image.width / image.height, image.height / image.width)
    out.update({"aspect_ratio_score": aspect, "is_odd_aspect_ratio": aspect < ODD_ASPECT_THRESHOLD})
    low_information = min(LOW_INFORMATION_NORM * views.pillow_entropy, 1.0)
    out.update(
        {
            "entropy": views.pillow_entropy,
            "low_information_score": low_information,
            "is_low_information": low_information < LOW_INFORMATION_THRESHOLD,
        }
    )
    try:
        out.update(_blur_fields(views))
    except (ValueError, OSError) as exc:
        errors.append(f"blurry: {type(exc).__name__}: {exc}")
        out.update(dict.fromkeys(["blurriness", "blurriness_grayscale_std", "blurry_score", "is_blurry"]))
    out.update(
        {
            "color_space": image.mode,
            "is_grayscale": image.mode == "L",
            "size": math.sqrt(image.width) * math.sqrt(image.height),
            "pixel_md5": hashlib.md5(np.asarray(image).tobytes()).hexdigest(),
        }
    )
    if errors:
        out["errors"] = errors
    return out


def odd_size_flags(sizes: list[float], iqr_factor: float = 3.0) -> list[tuple[float, bool]]:
    """CleanVision's dataset-relative odd-size check: (score, is_odd) per image, from the IQR of
    sqrt(W) * sqrt(H) over the whole session."""
    if not sizes:
        return []
    values = np.asarray(sizes, dtype=np.float64)
    q1, q3 = np.percentile(values, [25, 75])
    iqr = q3 - q1
    low, high = q1 - iqr_factor * iqr, q3 + iqr_factor * iqr
    middle, gap = (low + high) / 2, high - low
    norm, threshold = (gap, 0.5) if gap > 0 else (middle, 1.0)
    scores = 1 - np.clip(np.abs(values - middle) / norm, 0, 1)
    return [(float(s), bool(s < threshold)) for s in scores]
