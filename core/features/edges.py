"""sharpness (variance of the Laplacian) and edges (Sobel magnitude, Canny density)."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from core.features.registry import register
from core.features.views import ImageViews

SOBEL_THRESHOLD = 0.1
# s = sqrt(M / 2) / 1020 with M = gx^2 + gy^2 of the integer Sobel: s > 0.1  <=>  M > 20808.
_SOBEL_THRESHOLD_M = 20808
CANNY_SIGMA = 1.0
# skimage passes the low threshold to its NMS as a C float: float32(0.1).
CANNY_LOW = float(np.float32(0.1))
CANNY_HIGH = 0.2


@register(
    "sharpness",
    "Variance of the 3x3 Laplacian [[0,1,0],[1,-4,1],[0,1,0]] of the gray view at native resolution.",
    {"laplacian_var": "float >= 0 (depends on resolution)"},
    {"border": "reflect-101"},
    "cv2.Laplacian(gray, cv2.CV_64F).var()",
)
def sharpness(views: ImageViews) -> dict[str, Any]:
    padded = np.pad(views.gray.astype(np.int16), 1, mode="reflect")
    laplacian = (
        padded[:-2, 1:-1] + padded[2:, 1:-1] + padded[1:-1, :-2] + padded[1:-1, 2:] - 4 * padded[1:-1, 1:-1]
    ).ravel()
    # Integer sums are exact (float64 holds them exactly at these sizes): the variance is exact too.
    values = laplacian.astype(np.float64)
    n = values.size
    total = float(values.sum())
    squares = float(values @ values)
    return {"laplacian_var": (squares - total * total / n) / n}


def _integer_sobel(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """gx, gy of the integer Sobel ([1,0,-1] x [1,2,1]) with the edge pixel repeated at borders."""
    padded = np.pad(gray.astype(np.int32), 1, mode="symmetric")
    d_cols = padded[:, 2:] - padded[:, :-2]  # derivative along columns
    gx = d_cols[:-2] + 2 * d_cols[1:-1] + d_cols[2:]
    d_rows = padded[2:, :] - padded[:-2, :]
    gy = d_rows[:, :-2] + 2 * d_rows[:, 1:-1] + d_rows[:, 2:]
    return gx, gy


def canny_edges(gray: np.ndarray) -> np.ndarray:
    """skimage.feature.canny(gray, sigma=1), reproduced step by step (FEATURES.md §3.6)."""
    image = gray.astype(np.float64) / 255.0
    smoothed = ndimage.gaussian_filter(image, CANNY_SIGMA, mode="constant", cval=0.0, truncate=4.0)
    smoothed /= _bleed_over(gray.shape) + np.finfo(np.float64).eps
    isobel = ndimage.sobel(smoothed, axis=0)
    jsobel = ndimage.sobel(smoothed, axis=1)
    magnitude = np.sqrt(isobel * isobel + jsobel * jsobel)
    kept = _nonmaximum_suppression(isobel, jsobel, magnitude)
    if not kept.any():
        return kept
    labels, count = ndimage.label(kept, structure=np.ones((3, 3), bool))
    strong = np.unique(labels[kept & (magnitude >= CANNY_HIGH)])
    good = np.zeros(count + 1, bool)
    good[strong] = True
    good[0] = False
    return good[labels]


def _bleed_over(shape: tuple[int, ...]) -> np.ndarray:
    """The Gaussian of an all-ones image, with scipy's exact arithmetic but without a 2-D pass:
    after the pass over axis 0 every row is a constant, and only a few distinct ones exist."""
    rows, cols = shape
    column = ndimage.gaussian_filter1d(np.ones(rows), CANNY_SIGMA, mode="constant", truncate=4.0)
    distinct, which = np.unique(column, return_inverse=True)
    filtered = ndimage.gaussian_filter1d(
        np.repeat(distinct[:, None], cols, axis=1), CANNY_SIGMA, axis=1, mode="constant", truncate=4.0
    )
    return filtered[which]


def _nonmaximum_suppression(isobel: np.ndarray, jsobel: np.ndarray, magnitude: np.ndarray) -> np.ndarray:
    """skimage's ``_nonmaximum_suppression_bilinear``, on the candidate pixels only."""
    rows, cols = magnitude.shape
    kept = np.zeros((rows, cols), bool)
    if rows < 3 or cols < 3:
        return kept
    interior = magnitude[1:-1, 1:-1] >= CANNY_LOW
    r, c = np.nonzero(interior)
    r += 1
    c += 1
    m = magnitude[r, c]
    i_val, j_val = isobel[r, c], jsobel[r, c]
    abs_i, abs_j = np.abs(i_val), np.abs(j_val)
    same_sign = (i_val > 0) == (j_val > 0)  # (up and right) or (down and left)
    # Four cases: (same sign, |i| > |j|), (same, |i| <= |j|), (opposite, |i| < |j|), (opposite, |i| >= |j|)
    case = np.where(same_sign, np.where(abs_i > abs_j, 0, 1), np.where(abs_i < abs_j, 2, 3))
    w = np.where(
        (case == 0) | (case == 3), abs_j / np.where(abs_i == 0, 1, abs_i), abs_i / np.where(abs_j == 0, 1, abs_j)
    )
    # Neighbour offsets per case: (plus_1, plus_2, minus_1, minus_2) as (dr, dc).
    offsets = np.array(
        [
            [(1, 0), (1, 1), (-1, 0), (-1, -1)],
            [(0, 1), (1, 1), (0, -1), (-1, -1)],
            [(0, 1), (-1, 1), (0, -1), (1, -1)],
            [(-1, 0), (-1, 1), (1, 0), (1, -1)],
        ]
    )
    chosen = offsets[case]  # n x 4 x 2

    def neighbour(k: int) -> np.ndarray:
        return magnitude[r + chosen[:, k, 0], c + chosen[:, k, 1]]

    plus = neighbour(1) * w + neighbour(0) * (1.0 - w) <= m
    minus = neighbour(3) * w + neighbour(2) * (1.0 - w) <= m
    keep = plus & minus
    kept[r[keep], c[keep]] = True
    return kept


@register(
    "edges",
    "Mean Sobel magnitude and the share of pixels above 0.1 (gray / 255 scale), and the share of "
    "Canny edge pixels (sigma 1, thresholds 0.1 and 0.2).",
    {"sobel_mean": "float, 0..~1.41", "sobel_edge_density": "float, 0..1", "canny_edge_density": "float, 0..1"},
    {"sobel_threshold": SOBEL_THRESHOLD, "canny_sigma": CANNY_SIGMA, "canny_thresholds": [0.1, 0.2]},
    "skimage.filters.sobel; skimage.feature.canny",
)
def edges(views: ImageViews) -> dict[str, Any]:
    gx, gy = _integer_sobel(views.gray)
    squared = gx * gx + gy * gy  # int32: at most 2 * 1020^2
    magnitude = np.sqrt(squared * 0.5) / 1020.0
    n = views.pixel_count
    return {
        "sobel_mean": float(magnitude.mean()),
        "sobel_edge_density": int(np.count_nonzero(squared > _SOBEL_THRESHOLD_M)) / n,
        "canny_edge_density": int(np.count_nonzero(canny_edges(views.gray))) / n,
    }
