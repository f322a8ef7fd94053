"""similarity: one normalised vector per image for "more like this", and the exact search over them.

The vector joins three blocks that the catalogue's own groups compute, on the same decode:

- colour: ``hsv``'s joint 8x4x4 histogram of Pillow's HSV (128 bins), as the square roots of its
  shares (the Hellinger map: the block's L2 norm is 1, and the Euclidean distance of two blocks is
  the Hellinger distance of the histograms, times sqrt 2);
- shape: ``hog``'s 8,100-value vector (15x15 blocks of 2x2 cells of 9 orientations, on the gray view
  at 128x128) pooled to 3x3 regions of 5x5 blocks, each region the mean over its blocks and their
  four cells per orientation (81 values), then L2-normalised;
- texture: ``lbp``'s 10-bin uniform LBP histogram, as square roots of its shares (L2 norm 1).

Each block is multiplied by the square root of its weight (``WEIGHTS``: colour 0.5, shape 0.3,
texture 0.2), so the squared distance of two vectors is the weighted sum of the blocks' squared
distances, a vector's norm is 1 (0 for a block with no gradient at all) and every distance lies in
0..sqrt 2. The search is exact: the Euclidean distance to every other image of the workspace, in
NumPy (``SimilarityIndex``), over a matrix memo kept per session (``core.features.discovery``).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.features.color import hsv
from core.features.registry import register
from core.features.texture import HOG_BLOCK, HOG_CELL, HOG_ORIENTATIONS, HOG_SIZE, hog_vector, lbp
from core.features.views import ImageViews

SIMILARITY_GROUP = "similarity"
COLOUR_BINS = 128
HOG_POOL_GRID = 3  # regions per side the 15x15 HOG blocks are pooled to
LBP_BINS = 10
WEIGHTS = {"colour": 0.5, "shape": 0.3, "texture": 0.2}
VECTOR_LENGTH = COLOUR_BINS + HOG_POOL_GRID * HOG_POOL_GRID * HOG_ORIENTATIONS + LBP_BINS  # 219
_HOG_BLOCKS_PER_SIDE = HOG_SIZE[0] // HOG_CELL - HOG_BLOCK + 1  # 15


def _unit(values: np.ndarray) -> np.ndarray:
    norm = float(np.sqrt((values * values).sum()))
    return values / norm if norm > 0 else values


def _root_shares(counts: Sequence[float]) -> np.ndarray:
    """The square roots of a histogram's shares: L2 norm 1 (all zeros for an empty histogram)."""
    values = np.asarray(counts, dtype=np.float64)
    total = values.sum()
    return np.sqrt(values / total) if total > 0 else np.zeros_like(values)


def pooled_hog(vector: np.ndarray) -> np.ndarray:
    """``hog_vector``'s 8,100 values pooled to HOG_POOL_GRID x HOG_POOL_GRID regions: the mean per
    orientation over each region's blocks and their cells (81 values, not normalised)."""
    cells = HOG_BLOCK * HOG_BLOCK
    blocks = np.asarray(vector, dtype=np.float64).reshape(
        _HOG_BLOCKS_PER_SIDE, _HOG_BLOCKS_PER_SIDE, cells, HOG_ORIENTATIONS
    )
    per_block = blocks.mean(axis=2)
    side = _HOG_BLOCKS_PER_SIDE // HOG_POOL_GRID
    regions = per_block.reshape(HOG_POOL_GRID, side, HOG_POOL_GRID, side, HOG_ORIENTATIONS).mean(axis=(1, 3))
    return regions.ravel()


def similarity_vector(colour_hist: Sequence[float], hog: np.ndarray, lbp_hist: Sequence[float]) -> np.ndarray:
    """The 219-value vector of the module's docstring from ``hsv``'s joint histogram, ``hog``'s
    vector and ``lbp``'s histogram (float64)."""
    return np.concatenate(
        [
            math.sqrt(WEIGHTS["colour"]) * _root_shares(colour_hist),
            math.sqrt(WEIGHTS["shape"]) * _unit(pooled_hog(hog)),
            math.sqrt(WEIGHTS["texture"]) * _root_shares(lbp_hist),
        ]
    )


@register(
    SIMILARITY_GROUP,
    "The vector 'more like this' compares (GET /api/images/{id}/similar), 219 values: the HSV joint 8x4x4 "
    "histogram as square roots of its shares (128), the HOG vector pooled to 3x3 regions (mean per "
    "orientation, 81) L2-normalised, and the uniform LBP histogram as square roots of its shares (10); each "
    "block L2 norm 1, weighted by the square root of 0.5, 0.3 and 0.2. Distance: Euclidean, 0..sqrt 2. "
    "Computed only when named or asked for by a similarity search.",
    {"vector": f"{VECTOR_LENGTH} floats, L2 norm 1 (colour 0..127, shape 128..208, texture 209..218)"},
    {
        "colour": "hsv.joint_hist_8x4x4, sqrt(count / total)",
        "shape": "hog.hog pooled to 3x3 regions x 9 orientations, L2-normalised",
        "texture": "lbp.lbp_hist, sqrt(share)",
        "weights": dict(WEIGHTS),
        "distance": "Euclidean: sqrt(sum of weight * block distance squared)",
    },
    "Dalal & Triggs 2005 (HOG); Ojala et al. 2002 (LBP); Arandjelovic & Zisserman 2012 (square-root "
    "histograms, RootSIFT)",
    by_default=False,
)
def similarity(views: ImageViews) -> dict[str, Any]:
    vector = similarity_vector(hsv(views)["joint_hist_8x4x4"], hog_vector(views.gray_image), lbp(views)["lbp_hist"])
    return {"vector": vector.tolist()}


@dataclass(frozen=True)
class Neighbour:
    image_id: str
    distance: float


class SimilarityIndex:
    """One workspace's vectors as a float32 matrix, a row per image, kept in step with the images
    (``sync``) and searched exactly (``nearest``). A forgotten image's row is masked at once and
    compacted away at the next ``sync`` that changes rows. Thread-safe: requests and event
    callbacks of the session may use it at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids: list[str] = []
        self._row_of: dict[str, int] = {}  # live rows only
        self._live = np.zeros(0, dtype=bool)
        self._matrix = np.zeros((0, VECTOR_LENGTH), dtype=np.float32)

    @property
    def nbytes(self) -> int:
        """Roughly what the index holds in RAM: the matrix and the id of each row."""
        with self._lock:
            return int(self._matrix.nbytes) + 120 * len(self._ids)

    def __len__(self) -> int:
        with self._lock:
            return len(self._row_of)

    def __contains__(self, image_id: object) -> bool:
        """Whether ``image_id`` has a row (one dict lookup: cheap enough to ask per image)."""
        return image_id in self._row_of  # one dict lookup is atomic: no lock needed

    def known(self) -> frozenset[str]:
        """The ids that have a row."""
        with self._lock:
            return frozenset(self._row_of)

    def forget(self, image_ids: Iterable[str]) -> None:
        """Mask the rows of these images (deleted): they are never an answer again."""
        with self._lock:
            for image_id in image_ids:
                row = self._row_of.pop(image_id, None)
                if row is not None:
                    self._live[row] = False

    def sync(self, image_ids: Sequence[str], vectors: dict[str, Sequence[float]]) -> None:
        """Make the rows those of ``image_ids``: rows of other images go, and images without a row
        get one from ``vectors`` (an image with neither is left out). Nothing is copied when the
        images have not changed."""
        with self._lock:
            if len(image_ids) == len(self._row_of) and all(i in self._row_of for i in image_ids):
                return
            wanted = [i for i in image_ids if i in self._row_of or i in vectors]
            kept = [i for i in wanted if i in self._row_of]
            added = [i for i in wanted if i not in self._row_of]
            parts = [self._matrix[[self._row_of[i] for i in kept]]]
            if added:
                rows = np.asarray([vectors[i] for i in added], dtype=np.float32).reshape(len(added), VECTOR_LENGTH)
                parts.append(rows)
            self._matrix = np.concatenate(parts)
            self._ids = kept + added
            self._row_of = {image_id: row for row, image_id in enumerate(self._ids)}
            self._live = np.ones(len(self._ids), dtype=bool)

    def nearest(self, image_id: str, k: int) -> list[Neighbour] | None:
        """The ``k`` images nearest to ``image_id`` (itself left out), nearest first. None when
        ``image_id`` has no row."""
        with self._lock:
            row = self._row_of.get(image_id)
            if row is None:
                return None
            matrix, ids, live = self._matrix, self._ids, self._live.copy()
        difference = matrix - matrix[row]
        distances = np.sqrt(np.einsum("ij,ij->i", difference, difference, dtype=np.float64))
        live[row] = False
        distances[~live] = np.inf
        k = min(k, int(live.sum()))
        if k <= 0:
            return []
        picked = np.argpartition(distances, k - 1)[:k]
        order = picked[np.lexsort((picked, distances[picked]))]
        return [Neighbour(ids[r], float(distances[r])) for r in order]
