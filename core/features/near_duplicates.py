"""Near-duplicate groups of 64-bit perceptual hashes, without comparing every pair.

Two hashes are linked when their Hamming distance is at most ``threshold``; a group is a connected
component of those links (linked transitively), reported with the widest distance of a link inside
it. Identical hashes are folded into one first (distance 0 links any threshold allows).

The links among the distinct hashes are found by multi-index hashing (Greene, Parnas and Yao,
"Multi-index hashing for information retrieval", FOCS 1994; Norouzi, Punjani and Fleet, "Fast
search in Hamming space with multi-index hashing", CVPR 2012): the 64 bits are split into
``threshold + 1`` chunks, and by pigeonhole two hashes within ``threshold`` bits agree exactly on at
least one of them. Only hashes that share a chunk's value (a bucket) are compared, with an exact
popcount. At small thresholds the buckets are small and the work is near-linear (20,000 random
hashes at distance 4: about 0.1 pairs compared per hash). At large thresholds the chunks are a few
bits wide and the buckets hold most hashes; when the buckets would compare more pairs than there
are, every pair is compared once instead, in vectorised tiles.

Either way the work is bounded: a search that would compare more than ``MAX_COMPARISONS`` pairs is
refused (413) before any is compared, with a message that asks for a smaller threshold.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from core.errors import TooLarge

HASH_BITS = 64
# Pairs one search may compare: at most about two seconds of one core, whatever the hashes are.
MAX_COMPARISONS = 150_000_000
# A pair compared in a bucket (gathered from anywhere) costs about as much as this many in a tile.
BUCKET_PAIR_COST = 4
MULTI_INDEX = "multi-index"
ALL_PAIRS = "all pairs"
IDENTICAL_ONLY = "identical only"
# Distances computed at once in one all-pairs tile (8 bytes each), and links held before they are
# folded into the components: both bound the memory of a search whatever the workspace holds.
_TILE_PAIRS = 1 << 21
_FOLD_LINKS = 1 << 20


class SearchStopped(Exception):
    """The caller asked the search to stop (its client left)."""


@dataclass(frozen=True)
class NearGroups:
    """The groups (member indices in input order, ascending; groups in the order of their first
    member) with each group's widest linking distance, and how they were found: ``method`` and the
    number of pairs whose distance was computed (``comparisons``)."""

    groups: list[tuple[list[int], int]]
    method: str
    comparisons: int


@dataclass(frozen=True)
class _Buckets:
    """One chunk's buckets: positions of the distinct hashes sorted by the chunk's value (``order``)
    and, for each position, where its bucket ends in that order (``ends``)."""

    order: np.ndarray
    ends: np.ndarray
    pairs: int


class _Links:
    """Links among ``count`` nodes, folded in batches into components (scipy's connected components,
    in C): ``label`` names each node's component by one of its nodes. ``widest_at`` is the widest
    link seen at each node."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.label = np.arange(count, dtype=np.int64)
        self.widest_at = np.zeros(count, dtype=np.int64)
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []
        self._pending_links = 0

    def add(self, a: np.ndarray, b: np.ndarray, distance: np.ndarray) -> None:
        """Link node ``a[i]`` to ``b[i]`` at ``distance[i]``."""
        np.maximum.at(self.widest_at, a, distance)
        self._queue(a, b)

    def add_tile(self, first: int, near: np.ndarray, distance: np.ndarray) -> None:
        """Link node ``first + r`` to ``first + c`` wherever ``near[r, c]``. A row whose neighbours
        are already all in one component gets one link to it, not one per neighbour: a tile of a
        dense cluster then costs a few passes over it, not a link per pair."""
        linked = near.any(axis=1)
        if not linked.any():
            return
        self._fold()
        column_label = self.label[first : first + near.shape[1]].astype(np.int32)[None, :]
        lowest = np.where(near, column_label, np.int32(self.count)).min(axis=1)
        highest = np.where(near, column_label, np.int32(-1)).max(axis=1)
        rows = first + np.flatnonzero(linked)
        self.widest_at[rows] = np.maximum(self.widest_at[rows], np.where(near, distance, 0).max(axis=1)[linked])
        one_component = linked & (lowest == highest)
        self._queue(first + np.flatnonzero(one_component), lowest[one_component])
        mixed = np.flatnonzero(linked & (lowest != highest))
        if mixed.size:
            row, column = np.nonzero(near[mixed])
            self._queue(first + mixed[row], first + column)

    def _queue(self, a: np.ndarray, b: np.ndarray) -> None:
        self._pending.append((a, b))
        self._pending_links += a.size
        if self._pending_links >= _FOLD_LINKS:
            self._fold()

    def _fold(self) -> None:
        if not self._pending:
            return
        a = self.label[np.concatenate([pair[0] for pair in self._pending])]
        b = self.label[np.concatenate([pair[1] for pair in self._pending])]
        self._pending, self._pending_links = [], 0
        crossing = a != b  # links inside a known component change nothing
        if not crossing.any():
            return
        a, b = a[crossing], b[crossing]
        graph = coo_matrix((np.ones(a.size, dtype=np.int8), (a, b)), shape=(self.count, self.count))
        _, merged = connected_components(graph, directed=False)
        component = merged[self.label]
        representative = np.full(self.count, self.count, dtype=np.int64)
        np.minimum.at(representative, component, np.arange(self.count))
        self.label = representative[component]

    def components(self) -> tuple[np.ndarray, np.ndarray]:
        """Each node's component label, and the widest link of each label."""
        self._fold()
        widest = np.zeros(self.count, dtype=np.int64)
        np.maximum.at(widest, self.label, self.widest_at)
        return self.label, widest


def chunk_bounds(threshold: int) -> list[tuple[int, int]]:
    """The ``threshold + 1`` chunks of the 64 bits as (lowest bit, width), widths differing by at
    most one; empty when a chunk would have no bit (threshold 64)."""
    count = threshold + 1
    if count > HASH_BITS:
        return []
    bounds, low = [], 0
    for index in range(count):
        width = HASH_BITS // count + (1 if index < HASH_BITS % count else 0)
        bounds.append((low, width))
        low += width
    return bounds


def _buckets(values: np.ndarray, low: int, width: int) -> _Buckets:
    keys = (values >> np.uint64(low)) & np.uint64((1 << width) - 1)
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
    sizes = np.diff(np.append(starts, values.size))
    return _Buckets(order, np.repeat(starts + sizes, sizes), int((sizes * (sizes - 1) // 2).sum()))


def _plan(values: np.ndarray, threshold: int, enough: int) -> list[_Buckets] | None:
    """Every chunk's buckets, or None once they would compare more than ``enough`` pairs."""
    chunks, pairs = [], 0
    for low, width in chunk_bounds(threshold):
        chunk = _buckets(values, low, width)
        pairs += chunk.pairs
        if pairs > enough:
            return None
        chunks.append(chunk)
    return chunks if chunks else None


def _check_stop(stop: threading.Event | None) -> None:
    if stop is not None and stop.is_set():
        raise SearchStopped


def _compare_in_buckets(
    values: np.ndarray, chunk: _Buckets, threshold: int, links: _Links, stop: threading.Event | None
) -> int:
    """Compare every pair inside each bucket of one chunk: the k-th pass pairs each position with
    the one k places further in the same bucket, for every bucket at once."""
    positions = np.arange(values.size)
    active = positions[chunk.ends - positions >= 2]
    compared, offset = 0, 1
    while active.size:
        _check_stop(stop)
        active = active[active + offset < chunk.ends[active]]
        a, b = chunk.order[active], chunk.order[active + offset]
        distance = np.bitwise_count(values[a] ^ values[b])
        near = distance <= threshold
        if near.any():
            links.add(a[near], b[near], distance[near])
        compared += active.size
        offset += 1
    return compared


def _compare_all_pairs(values: np.ndarray, threshold: int, links: _Links, stop: threading.Event | None) -> int:
    """Compare every pair once, a block of rows against every later hash per tile."""
    count = values.size
    rows = max(1, _TILE_PAIRS // count)
    compared = 0
    for first in range(0, count, rows):
        _check_stop(stop)
        block = values[first : first + rows]
        distance = np.bitwise_count(block[:, None] ^ values[None, first:])
        near = distance <= threshold
        near &= np.arange(count - first)[None, :] > np.arange(block.size)[:, None]  # each pair once
        links.add_tile(first, near, distance)
        compared += block.size * (count - first) - block.size * (block.size + 1) // 2
    return compared


def near_duplicate_groups(
    hashes: Sequence[int],
    threshold: int,
    max_comparisons: int = MAX_COMPARISONS,
    stop: threading.Event | None = None,
) -> NearGroups:
    """Groups of ``hashes`` (unsigned 64-bit integers) linked by Hamming distance at most
    ``threshold`` (0 to 64), transitively, with each group's widest link; groups of one are left
    out. Raises TooLarge (413) when finding them would compare more than ``max_comparisons``
    pairs, and SearchStopped as soon as ``stop`` is set. CPU-bound: run it off the event loop."""
    if not 0 <= threshold <= HASH_BITS:
        raise ValueError(f"threshold must be 0 to {HASH_BITS}, not {threshold}")
    values = np.fromiter(hashes, dtype=np.uint64, count=len(hashes))
    distinct, copy_of = np.unique(values, return_inverse=True)
    links = _Links(distinct.size)
    method, compared = IDENTICAL_ONLY, 0
    if threshold > 0 and distinct.size > 1:
        all_pairs = distinct.size * (distinct.size - 1) // 2
        # Buckets are worth it while they compare fewer pairs than a tile would at the same cost,
        # or while they are the only way to stay within the budget.
        enough = max_comparisons
        if all_pairs <= max_comparisons:
            enough = min(max_comparisons, all_pairs // BUCKET_PAIR_COST)
        chunks = _plan(distinct, threshold, enough)
        if chunks is not None:
            method = MULTI_INDEX
            compared = sum(_compare_in_buckets(distinct, chunk, threshold, links, stop) for chunk in chunks)
        elif all_pairs <= max_comparisons:
            method, compared = ALL_PAIRS, _compare_all_pairs(distinct, threshold, links, stop)
        else:
            raise TooLarge(
                f"finding near duplicates within {threshold} bits among {len(hashes):,} images would compare "
                f"more than the {max_comparisons:,} pairs one search may; use a smaller threshold"
            )
    label, widest = links.components()
    return NearGroups(_groups_of(label[copy_of.ravel()], widest), method, compared)


def _groups_of(row_label: np.ndarray, widest: np.ndarray) -> list[tuple[list[int], int]]:
    """Rows sharing a label as groups (of two or more), ordered by their first row."""
    sizes = np.bincount(row_label, minlength=widest.size)
    grouped = np.flatnonzero(sizes[row_label] >= 2)
    if not grouped.size:
        return []
    labels = row_label[grouped]
    order = np.argsort(labels, kind="stable")  # rows stay ascending inside each label
    members, labels = grouped[order], labels[order]
    starts = np.flatnonzero(np.concatenate(([True], labels[1:] != labels[:-1])))
    groups = [
        (part.tolist(), int(widest[labels[start]]))
        for part, start in zip(np.split(members, starts[1:]), starts, strict=True)
    ]
    groups.sort(key=lambda group: group[0][0])
    return groups
