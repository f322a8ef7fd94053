"""basic, stats, hist256 and entropy: all from 256-bin histograms, exact and cheap.

Every moment of a uint8 channel is a weighted sum over its 256-bin histogram, so one C pass over
the pixels (Pillow's ``histogram()``) replaces the reference's full-resolution float64 passes
(FEATURES.md §3.2, §5: agreement to 1e-15, about ten times cheaper).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from core.features.registry import register
from core.features.views import ImageViews, entropy_of_counts

_LEVELS = np.arange(256, dtype=np.float64)


@register(
    "basic",
    "Decoded size, mode and format of the image (first frame, upright).",
    {
        "width": "int, pixels",
        "height": "int, pixels",
        "mode": "str, Pillow mode",
        "channels": "int, number of bands",
        "aspect_ratio": "float, width / height",
        "format": "str, detected format: JPEG, PNG, GIF, WEBP, BMP, TIFF, HEIF (HEIC photos) or AVIF",
        "byte_size": "int, file size in bytes",
        "has_alpha": "bool, an alpha band or a transparency key",
        "megapixels": "float, width * height / 1e6",
    },
)
def basic(views: ImageViews) -> dict[str, Any]:
    image = views.image
    bands = image.getbands()
    width, height = views.full_size  # the image's own size, even when analysed at a reduced scale
    return {
        "width": width,
        "height": height,
        "mode": image.mode,
        "channels": len(bands),
        "aspect_ratio": width / height,
        "format": views.format,
        "byte_size": views.byte_size,
        "has_alpha": "A" in bands or "transparency" in image.info,
        "megapixels": width * height / 1e6,
    }


def histogram_statistics(counts: np.ndarray) -> dict[str, Any]:
    """mean, population std, min, max, np.median, skewness g1 = m3/m2^1.5 and excess kurtosis
    g2 = m4/m2^2 - 3 (scipy.stats defaults, bias=True) of the values a 256-bin histogram counts.
    Skewness and kurtosis are None for a constant channel (m2 = 0)."""
    n = int(counts.sum())
    weights = counts.astype(np.float64)
    mean = float(weights @ _LEVELS) / n
    deviation = _LEVELS - mean
    d2 = deviation * deviation
    m2 = float(weights @ d2) / n
    m3 = float(weights @ (d2 * deviation)) / n
    m4 = float(weights @ (d2 * d2)) / n
    present = np.flatnonzero(counts)
    cumulative = np.cumsum(counts)
    # np.median: the middle value, or the mean of the two middle values when n is even.
    upper = int(np.searchsorted(cumulative, n // 2, side="right"))
    lower = upper if n % 2 else int(np.searchsorted(cumulative, n // 2 - 1, side="right"))
    skewness = kurtosis = None
    if m2 > 0:
        skewness = m3 / m2**1.5
        kurtosis = m4 / (m2 * m2) - 3.0
    return {
        "mean": mean,
        "std": m2**0.5,
        "min": int(present[0]),
        "max": int(present[-1]),
        "median": (lower + upper) / 2.0,
        "skewness": skewness,
        "kurtosis": kurtosis,
    }


@register(
    "stats",
    "Intensity statistics per channel (R, G, B, or L for single-band images) and of the gray view.",
    {
        "<channel>.mean|std|median": "float, 0..255",
        "<channel>.min|max": "int, 0..255",
        "<channel>.skewness|kurtosis": "float or null (constant channel)",
    },
    {"std": "population (ddof=0)", "skewness": "g1, biased", "kurtosis": "excess g2, biased"},
    "numpy / scipy.stats.skew, scipy.stats.kurtosis (defaults)",
)
def stats(views: ImageViews) -> dict[str, Any]:
    out = {name: histogram_statistics(counts) for name, counts in views.channel_histograms.items()}
    out["gray"] = histogram_statistics(views.gray_histogram)
    return out


@register(
    "hist256",
    "256-bin histograms per channel and of the gray view.",
    {"R|G|B or L": "256 ints", "gray": "256 ints"},
    reference="PIL.Image.histogram",
)
def hist256(views: ImageViews) -> dict[str, Any]:
    out = {name: counts.tolist() for name, counts in views.channel_histograms.items()}
    out["gray"] = views.gray_histogram.tolist()
    return out


@register(
    "entropy",
    "Shannon entropy of the gray histogram, and Pillow's entropy of the image in its own mode.",
    {"shannon_entropy": "float, bits, 0..8", "pillow_entropy": "float, bits"},
    {"base": 2},
    "skimage.measure.shannon_entropy; PIL.Image.entropy",
)
def entropy(views: ImageViews) -> dict[str, Any]:
    return {
        "shannon_entropy": entropy_of_counts(views.gray_histogram),
        "pillow_entropy": views.pillow_entropy,
    }
