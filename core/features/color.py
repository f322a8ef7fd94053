"""hsv, colorfulness and dominant_colors."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from PIL import Image

from core.features.registry import register
from core.features.views import ImageViews

DOMINANT_K = 5
DOMINANT_SIZE = (64, 64)
KMEANS_ITERATIONS = 10


def _level_histogram(values: np.ndarray, levels: int) -> np.ndarray:
    """Counts of small non-negative ints through Pillow's C histogram (no int64 copy)."""
    if levels <= 256:
        return np.asarray(Image.fromarray(values.astype(np.uint8, copy=False), "L").histogram()[:levels])
    return np.bincount(values.ravel(), minlength=levels)


@register(
    "hsv",
    "Histograms of Pillow's HSV (each channel 0..255): H in 16 bins, S and V in 8, and a joint 8x4x4.",
    {
        "h_hist": "16 ints",
        "s_hist": "8 ints",
        "v_hist": "8 ints",
        "joint_hist_8x4x4": "128 ints, index h_bin*16 + s_bin*4 + v_bin",
        "mean_saturation": "float, 0..1",
        "mean_value": "float, 0..1",
    },
    {"bins": "bin = value * n >> 8"},
    "PIL.Image.convert('HSV'); cv2.calcHist",
)
def hsv(views: ImageViews) -> dict[str, Any]:
    h, s, v = (views.hsv[..., i] for i in range(3))
    per_channel = np.asarray(views.hsv_image.histogram(), dtype=np.int64).reshape(3, 256)
    joint_index = ((h >> 5) << 4) | ((s >> 6) << 2) | (v >> 6)
    n = views.pixel_count
    return {
        "h_hist": per_channel[0].reshape(16, 16).sum(axis=1).tolist(),
        "s_hist": per_channel[1].reshape(8, 32).sum(axis=1).tolist(),
        "v_hist": per_channel[2].reshape(8, 32).sum(axis=1).tolist(),
        "joint_hist_8x4x4": _level_histogram(joint_index, 128).tolist(),
        "mean_saturation": float(per_channel[1] @ np.arange(256)) / n / 255.0,
        "mean_value": float(per_channel[2] @ np.arange(256)) / n / 255.0,
    }


def _moments(counts: np.ndarray, values: np.ndarray) -> tuple[float, float]:
    n = counts.sum()
    mean = float(counts @ values) / n
    variance = float(counts @ (values - mean) ** 2) / n
    return mean, variance


@register(
    "colorfulness",
    "Hasler & Süsstrunk (2003) colourfulness M = sigma_rgyb + 0.3 mu_rgyb, and the widespread variant "
    "on |rg| and |yb| (not the paper's metric).",
    {"colorfulness": "float >= 0", "colorfulness_abs": "float >= 0"},
    {"rg": "R - G", "yb": "(R + G)/2 - B"},
    "Hasler & Süsstrunk, Measuring colourfulness in natural images, 2003",
)
def colorfulness(views: ImageViews) -> dict[str, Any]:
    # rg and 2*yb are integers in small ranges: their histograms give exact moments in one pass each.
    rgb = views.rgb.astype(np.int16)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    rg_counts = np.bincount((r - g + 255).ravel(), minlength=511).astype(np.float64)
    yb2_counts = np.bincount((r + g - 2 * b + 510).ravel(), minlength=1021).astype(np.float64)
    rg_values = np.arange(-255, 256, dtype=np.float64)
    yb_values = np.arange(-510, 511, dtype=np.float64) / 2.0
    out = {}
    for name, transform in (("colorfulness", lambda x: x), ("colorfulness_abs", np.abs)):
        rg_mean, rg_var = _moments(rg_counts, transform(rg_values))
        yb_mean, yb_var = _moments(yb2_counts, transform(yb_values))
        out[name] = math.sqrt(rg_var + yb_var) + 0.3 * math.sqrt(rg_mean**2 + yb_mean**2)
    return out


def _assign(pixels: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Index of the nearest centre by squared Euclidean distance (ties: the lowest index)."""
    distances = ((pixels[:, None, :] - centers[None, :, :]) ** 2).sum(axis=2)
    return distances.argmin(axis=1)


def _sorted_colors(colors: np.ndarray, counts: np.ndarray, total: int) -> list[dict[str, Any]]:
    order = sorted(range(len(colors)), key=lambda i: (-int(counts[i]), i))
    return [{"rgb": [round(float(v), 6) for v in colors[i]], "fraction": float(counts[i]) / total} for i in order]


@register(
    "dominant_colors",
    "Five dominant colours of a 64x64 bilinear thumbnail: Pillow's median cut, then 10 Lloyd k-means "
    "iterations started from the median-cut colours. Sorted by fraction.",
    {
        "dominant_colors_mediancut": "list of {rgb: [r, g, b], fraction}",
        "dominant_colors_kmeans": "list of {rgb: [r, g, b], fraction}",
    },
    {"k": DOMINANT_K, "thumbnail": list(DOMINANT_SIZE), "kmeans_iterations": KMEANS_ITERATIONS},
    "PIL.Image.quantize(MEDIANCUT); scipy.cluster.vq.kmeans2(minit='matrix')",
)
def dominant_colors(views: ImageViews) -> dict[str, Any]:
    small = views.rgb_image.resize(DOMINANT_SIZE, Image.Resampling.BILINEAR)
    total = DOMINANT_SIZE[0] * DOMINANT_SIZE[1]
    quantized = small.quantize(colors=DOMINANT_K, method=Image.Quantize.MEDIANCUT)
    palette = quantized.getpalette()[: 3 * 256]
    counts = np.bincount(np.asarray(quantized).ravel(), minlength=256)
    used = np.flatnonzero(counts)
    mediancut = np.array([palette[3 * i : 3 * i + 3] for i in used], dtype=np.float64)
    pixels = np.asarray(small).reshape(-1, 3).astype(np.float64)
    centers = mediancut.copy()
    for _ in range(KMEANS_ITERATIONS):
        labels = _assign(pixels, centers)
        sums = np.zeros_like(centers)
        np.add.at(sums, labels, pixels)
        members = np.bincount(labels, minlength=len(centers))
        has_members = members > 0
        centers = np.where(has_members[:, None], sums / np.maximum(members, 1)[:, None], centers)
    kmeans_counts = np.bincount(_assign(pixels, centers), minlength=len(centers))
    return {
        "dominant_colors_mediancut": _sorted_colors(mediancut, counts[used], total),
        "dominant_colors_kmeans": _sorted_colors(centers, kmeans_counts, total),
    }
