"""Texture: local binary patterns, grey-level co-occurrence, histograms of oriented gradients."""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from core.features.registry import register
from core.features.views import ImageViews

LBP_POINTS, LBP_RADIUS = 8, 1
GLCM_OFFSETS = [(0, 1), (1, 1), (1, 0), (1, -1)]  # (row, col) for angles 0, pi/4, pi/2, 3pi/4
GLCM_PROPERTIES = ["contrast", "dissimilarity", "homogeneity", "energy", "correlation", "ASM"]
HOG_SIZE = (128, 128)
HOG_ORIENTATIONS, HOG_CELL, HOG_BLOCK = 9, 8, 2


def _small_int_histogram(values: np.ndarray, levels: int) -> np.ndarray:
    return np.asarray(Image.fromarray(values.astype(np.uint8, copy=False), "L").histogram()[:levels])


def lbp_codes(gray: np.ndarray) -> np.ndarray:
    """skimage.feature.local_binary_pattern(gray, 8, 1, 'uniform'), with its exact arithmetic:
    diagonal samples bilinearly interpolated per pixel in float64, outside pixels 0."""
    image = gray.astype(np.float64)
    rows, cols = image.shape
    padded = np.zeros((rows + 2, cols + 2))
    padded[1:-1, 1:-1] = image
    angles = 2 * np.pi * np.arange(LBP_POINTS, dtype=np.double) / LBP_POINTS
    row_offsets = np.round(-LBP_RADIUS * np.sin(angles), 5)
    col_offsets = np.round(LBP_RADIUS * np.cos(angles), 5)
    row_index = np.arange(rows, dtype=np.float64)
    col_index = np.arange(cols, dtype=np.float64)
    bits = []
    for dr, dc in zip(row_offsets, col_offsets, strict=True):
        y, x = row_index + dr, col_index + dc
        low_r, low_c = np.floor(y), np.floor(x)
        # The offsets are the same for every pixel, so each corner is one shifted view (+1: padding).
        r0, r1 = int(low_r[0] - row_index[0]) + 1, int(np.ceil(y[0]) - row_index[0]) + 1
        c0, c1 = int(low_c[0] - col_index[0]) + 1, int(np.ceil(x[0]) - col_index[0]) + 1
        if r0 == r1 and c0 == c1:  # on the grid: the pixel itself, exactly
            sample = padded[r0 : r0 + rows, c0 : c0 + cols]
        else:
            frac_r = (y - low_r)[:, None]
            frac_c = (x - low_c)[None, :]
            top = (1 - frac_c) * padded[r0 : r0 + rows, c0 : c0 + cols] + frac_c * padded[
                r0 : r0 + rows, c1 : c1 + cols
            ]
            bottom = (1 - frac_c) * padded[r1 : r1 + rows, c0 : c0 + cols] + frac_c * padded[
                r1 : r1 + rows, c1 : c1 + cols
            ]
            sample = (1 - frac_r) * top + frac_r * bottom
        bits.append((sample - image >= 0).view(np.uint8))
    changes = np.zeros((rows, cols), np.uint8)
    ones = np.zeros((rows, cols), np.uint8)
    for i in range(LBP_POINTS):
        ones += bits[i]
        if i < LBP_POINTS - 1:
            changes += bits[i] != bits[i + 1]
    return np.where(changes <= 2, ones, LBP_POINTS + 1).astype(np.uint8)


@register(
    "lbp",
    "Histogram of rotation-invariant uniform local binary patterns (8 neighbours at radius 1): codes "
    "0..8 count the set neighbours of uniform patterns, 9 collects the rest.",
    {"lbp_hist": "10 floats summing to 1", "lbp_counts": "10 ints"},
    {"P": LBP_POINTS, "R": LBP_RADIUS, "method": "uniform"},
    "skimage.feature.local_binary_pattern",
)
def lbp(views: ImageViews) -> dict[str, Any]:
    counts = _small_int_histogram(lbp_codes(views.gray), LBP_POINTS + 2)
    n = views.pixel_count
    return {"lbp_hist": [int(c) / n for c in counts], "lbp_counts": [int(c) for c in counts]}


def cooccurrence(gray: np.ndarray, offset: tuple[int, int]) -> np.ndarray:
    """Symmetric, normalised 256x256 co-occurrence matrix for one (row, col) offset."""
    dr, dc = offset
    rows, cols = gray.shape
    first = gray[: rows - dr, max(0, -dc) : cols - max(0, dc)]
    second = gray[dr:, max(0, dc) : cols - max(0, -dc)]
    pairs = (first.astype(np.uint16) << 8) | second
    counts = np.bincount(pairs.ravel(), minlength=65536).reshape(256, 256).astype(np.float64)
    symmetric = counts + counts.T
    total = symmetric.sum()
    return symmetric / total if total else symmetric


_I, _J = np.mgrid[0:256, 0:256].astype(np.float64)
_DIFF = _I - _J
_CONTRAST_W, _DISSIMILARITY_W, _HOMOGENEITY_W = _DIFF**2, np.abs(_DIFF), 1.0 / (1.0 + _DIFF**2)


def glcm_properties(p: np.ndarray) -> dict[str, float]:
    """skimage.feature.graycoprops for one normalised matrix."""
    asm = float((p * p).sum())
    mean_i = float((_I * p).sum())
    mean_j = float((_J * p).sum())
    std_i = float(np.sqrt((p * (_I - mean_i) ** 2).sum()))
    std_j = float(np.sqrt((p * (_J - mean_j) ** 2).sum()))
    covariance = float((p * ((_I - mean_i) * (_J - mean_j))).sum())
    flat = std_i < 1e-15 or std_j < 1e-15
    return {
        "contrast": float((p * _CONTRAST_W).sum()),
        "dissimilarity": float((p * _DISSIMILARITY_W).sum()),
        "homogeneity": float((p * _HOMOGENEITY_W).sum()),
        "energy": asm**0.5,
        "correlation": 1.0 if flat else covariance / (std_i * std_j),
        "ASM": asm,
    }


@register(
    "glcm",
    "Grey-level co-occurrence properties at distance 1, averaged over 0, 45, 90 and 135 degrees "
    "(symmetric, normalised, 256 levels); per-angle values too.",
    {"<property>": "float, mean over the 4 angles", "<property>_per_angle": "4 floats"},
    {"distance": 1, "angles": "0, pi/4, pi/2, 3pi/4", "levels": 256, "properties": GLCM_PROPERTIES},
    "skimage.feature.graycomatrix / graycoprops",
)
def glcm(views: ImageViews) -> dict[str, Any]:
    per_angle = [glcm_properties(cooccurrence(views.gray, offset)) for offset in GLCM_OFFSETS]
    out: dict[str, Any] = {}
    for name in GLCM_PROPERTIES:
        values = [angle[name] for angle in per_angle]
        out[name] = float(np.mean(values))
        out[f"{name}_per_angle"] = values
    return out


def hog_vector(gray_image: Image.Image) -> np.ndarray:
    """skimage.feature.hog(9 orientations, 8x8 cells, 2x2 blocks, L2-Hys) of the gray view resized
    to 128x128 (bilinear), as float64 0..255: 8100 values."""
    image = np.asarray(gray_image.resize(HOG_SIZE, Image.Resampling.BILINEAR), dtype=np.float64)
    g_row = np.zeros_like(image)
    g_col = np.zeros_like(image)
    g_row[1:-1, :] = image[2:, :] - image[:-2, :]
    g_col[:, 1:-1] = image[:, 2:] - image[:, :-2]
    magnitude = np.hypot(g_col, g_row)
    orientation = np.rad2deg(np.arctan2(g_row, g_col)) % 180
    step = 180 / HOG_ORIENTATIONS
    # Bin b holds b*20 <= angle < (b+1)*20: counted by comparisons, as skimage decides it.
    bins = sum((orientation >= step * k).astype(np.int64) for k in range(1, HOG_ORIENTATIONS))
    cells = HOG_SIZE[0] // HOG_CELL
    cell_of = (np.arange(HOG_SIZE[0]) // HOG_CELL)[:, None] * cells + (np.arange(HOG_SIZE[1]) // HOG_CELL)[None, :]
    histogram = np.bincount(
        (cell_of * HOG_ORIENTATIONS + bins).ravel(),
        weights=magnitude.ravel(),
        minlength=cells * cells * HOG_ORIENTATIONS,
    ).reshape(cells, cells, HOG_ORIENTATIONS) / (HOG_CELL * HOG_CELL)
    blocks_per_side = cells - HOG_BLOCK + 1
    windows = np.lib.stride_tricks.sliding_window_view(histogram, (HOG_BLOCK, HOG_BLOCK), axis=(0, 1))
    # windows: (block_row, block_col, orientation, cell_r, cell_c) -> (..., cell_r, cell_c, orientation)
    blocks = windows.transpose(0, 1, 3, 4, 2).reshape(blocks_per_side, blocks_per_side, -1)
    eps_squared = 1e-5**2
    normalised = blocks / np.sqrt((blocks**2).sum(axis=2, keepdims=True) + eps_squared)
    normalised = np.minimum(normalised, 0.2)
    normalised = normalised / np.sqrt((normalised**2).sum(axis=2, keepdims=True) + eps_squared)
    return normalised.ravel()


@register(
    "hog",
    "Histogram of oriented gradients of the gray view resized to 128x128: length, L2 norm and sum; "
    "the 8100-value vector itself only on request.",
    {"hog_len": "int, 8100", "hog_l2": "float", "hog_sum": "float", "hog": "8100 floats (include_vectors)"},
    {
        "size": list(HOG_SIZE),
        "orientations": HOG_ORIENTATIONS,
        "pixels_per_cell": HOG_CELL,
        "cells_per_block": HOG_BLOCK,
        "block_norm": "L2-Hys",
        "resample": "BILINEAR",
    },
    "skimage.feature.hog",
)
def hog(views: ImageViews) -> dict[str, Any]:
    vector = hog_vector(views.gray_image)
    return {
        "hog_len": int(vector.size),
        "hog_l2": float(np.sqrt((vector**2).sum())),
        "hog_sum": float(vector.sum()),
        "hog": vector.tolist(),
    }
