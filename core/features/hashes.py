"""Perceptual hashes (imagehash 4.3.2 definitions, hash size 8), their integer value and Hamming distance."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from PIL import Image
from scipy import fft

from core.features.registry import register
from core.features.views import ImageViews

HASH_SIZE = 8
_LANCZOS = Image.Resampling.LANCZOS


def bits_to_hex(bits: np.ndarray) -> str:
    """Row-major bits, the first one the most significant, as lowercase hex (imagehash's str)."""
    flat = bits.ravel()
    value = int("".join("1" if b else "0" for b in flat), 2)
    return f"{value:0{math.ceil(flat.size / 4)}x}"


def hash_value(hex_digits: str) -> int:
    """A hash's hex digits (as ``bits_to_hex`` writes them) as an unsigned integer: 64 bits for
    the 16 digits of the hashes here, what ``core.features.near_duplicates`` groups."""
    return int(hex_digits, 16)


def hamming(a: str, b: str) -> int:
    """How many bits differ between two hashes given as hex digits."""
    return (hash_value(a) ^ hash_value(b)).bit_count()


def _tie_mask(values: np.ndarray, threshold: float) -> str:
    """Bits whose coefficient equals the median up to float noise: any value is right there."""
    scale = max(1.0, float(np.abs(values).max()))
    return bits_to_hex(np.abs(values - threshold) <= 1e-9 * scale)


@register(
    "hashes",
    "Perceptual hashes of the gray image: average, difference, DCT and wavelet (64 bits each, hex).",
    {
        "ahash": "16 hex digits",
        "dhash": "16 hex digits",
        "phash": "16 hex digits",
        "whash": "16 hex digits",
        "phash_tie_mask": "bits decided by float noise (coefficient tied with the median)",
        "whash_tie_mask": "the same for the wavelet hash",
    },
    {"hash_size": HASH_SIZE, "resample": "LANCZOS"},
    "imagehash 4.3.2 average_hash, dhash, phash, whash",
)
def hashes(views: ImageViews) -> dict[str, Any]:
    gray = views.gray_image
    average = np.asarray(gray.resize((HASH_SIZE, HASH_SIZE), _LANCZOS))
    difference = np.asarray(gray.resize((HASH_SIZE + 1, HASH_SIZE), _LANCZOS)).astype(np.int16)
    pixels = np.asarray(gray.resize((HASH_SIZE * 4, HASH_SIZE * 4), _LANCZOS), dtype=np.float64)
    dct = fft.dct(fft.dct(pixels, axis=0), axis=1)[:HASH_SIZE, :HASH_SIZE]
    dct_median = float(np.median(dct))
    # wHash: with the top Haar LL removed, the level-3 LL is (up to shift and scale) the 8x8 block
    # sums of the resized image, so the bits are "block sum > median of block sums".
    scale = max(2 ** int(math.log2(min(gray.size))), HASH_SIZE)
    block = scale // HASH_SIZE
    resized = np.asarray(gray.resize((scale, scale), _LANCZOS), dtype=np.int64)
    sums = resized.reshape(HASH_SIZE, block, HASH_SIZE, block).sum(axis=(1, 3)).astype(np.float64)
    sums_median = float(np.median(sums))
    return {
        "ahash": bits_to_hex(average > average.mean()),
        "dhash": bits_to_hex(difference[:, 1:] > difference[:, :-1]),
        "phash": bits_to_hex(dct > dct_median),
        "whash": bits_to_hex(sums > sums_median),
        "phash_tie_mask": _tie_mask(dct, dct_median),
        "whash_tie_mask": _tie_mask(sums, sums_median),
    }
