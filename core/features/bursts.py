"""Bursts and near-duplicate groups, and the frame of each to keep. Pure functions on plain facts.

Two images are linked when either holds:

- **burst**: they are consecutive in capture order and at most ``gap`` seconds apart, and their
  pHashes differ in at most ``distance`` bits. Capture order is EXIF ``DateTimeOriginal`` (the
  ``exif`` group's ``capture_time``, its fraction of a second included; a time with an offset is
  placed in UTC, one without is read as UTC) for images that have it, ties in upload order. Images
  without a capture time follow upload order on their own: consecutive uploads count as within the
  gap, and they are never linked to a timed image by time.
- **near duplicate**: their pHashes differ in at most ``near`` bits, whenever they were taken
  (``core.features.near_duplicates``, linked transitively).

A group is a connected component of the links with two images or more (a single image is not a
group). Its members are listed in capture order (timed first, by time; then the untimed, by
upload). Its kind is ``burst`` when a burst link holds it together, else ``near_duplicates``.

The suggested best frame (``choose_best``), in three steps, each keeping some of the candidates:

1. size: those with at least ``SIZE_SHARE`` (90 %) of the largest one's pixels (a reduced copy is
   never the one to keep);
2. exposure: those whose clipped share (gray pixels at 0 or 255) is at most ``CLIPPING_MARGIN``
   (2 percentage points) above the least clipped;
3. sharpness: the highest variance of the Laplacian (the ``sharpness`` group); equal ones: the
   first in capture order.

The reason names the step that decided, with the winner's value against the best of the others
that step set aside: "sharpest: Laplacian variance 1,810 against 420".
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from core.features.near_duplicates import near_duplicate_groups

SIZE_SHARE = 0.9
CLIPPING_MARGIN = 0.02
BURST = "burst"
NEAR_DUPLICATES = "near_duplicates"


@dataclass(frozen=True)
class Shot:
    """What grouping needs of one image: its place in upload order, its pHash (64-bit integer), its
    capture time (seconds, None when unknown) and what the choice of the best reads."""

    upload_index: int
    image_id: str
    name: str
    phash: int
    capture_time: float | None
    sharpness: float
    clipped: float  # share of gray pixels at 0 or 255
    width: int
    height: int
    capture_text: str | None = None  # the capture time as the exif group wrote it

    @property
    def pixels(self) -> int:
        return self.width * self.height


@dataclass(frozen=True)
class Group:
    """One group: an id that changes whenever its members do, its kind, the members in capture order,
    the suggested best, the reason in words and the widest pHash distance of a link in it."""

    group_id: str
    kind: str
    members: list[Shot]
    best: Shot
    reason: str
    max_distance: int


def capture_seconds(text: str | None) -> float | None:
    """The ``exif`` group's ``capture_time`` (ISO 8601) as seconds since the epoch; a time without
    an offset is read as UTC. None when absent or unreadable."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def capture_order(shots: Sequence[Shot]) -> list[int]:
    """Positions of ``shots`` in capture order: timed ones by time (ties in upload order), then the
    untimed in upload order."""
    timed = sorted(
        (i for i, shot in enumerate(shots) if shot.capture_time is not None),
        key=lambda i: (shots[i].capture_time, shots[i].upload_index),
    )
    untimed = sorted(
        (i for i, shot in enumerate(shots) if shot.capture_time is None), key=lambda i: shots[i].upload_index
    )
    return timed + untimed


def _distance(a: Shot, b: Shot) -> int:
    return (a.phash ^ b.phash).bit_count()


def burst_links(shots: Sequence[Shot], order: Sequence[int], gap: float, distance: int) -> list[tuple[int, int]]:
    """Links between neighbours in capture ``order`` within ``gap`` seconds and ``distance`` bits."""
    links = []
    for a, b in zip(order, order[1:], strict=False):
        first, second = shots[a], shots[b]
        if (first.capture_time is None) != (second.capture_time is None):
            continue  # the timed and the untimed are two sequences
        if first.capture_time is not None and second.capture_time - first.capture_time > gap:  # type: ignore[operator]
            continue
        if _distance(first, second) <= distance:
            links.append((a, b))
    return links


class _Components:
    """Union-find over positions, with path halving."""

    def __init__(self, count: int) -> None:
        self.parent = list(range(count))

    def find(self, node: int) -> int:
        while self.parent[node] != node:
            self.parent[node] = self.parent[self.parent[node]]
            node = self.parent[node]
        return node

    def join(self, a: int, b: int) -> None:
        root_a, root_b = self.find(a), self.find(b)
        if root_a != root_b:
            self.parent[max(root_a, root_b)] = min(root_a, root_b)


def find_groups(
    shots: Sequence[Shot], gap: float, distance: int, near: int, stop: threading.Event | None = None
) -> list[Group]:
    """The groups of the module's docstring, in capture order of their first members. Raises
    TooLarge (413) when the near-duplicate search would compare too many pairs. CPU-bound; a set
    ``stop`` ends the near-duplicate search at its next batch (its client left)."""
    order = capture_order(shots)
    bursts = burst_links(shots, order, gap, distance)
    found = near_duplicate_groups([shot.phash for shot in shots], near, stop=stop)
    near_links = [(members[0], other) for members, _ in found.groups for other in members[1:]]
    components = _Components(len(shots))
    for a, b in bursts + near_links:
        components.join(a, b)
    place = {position: rank for rank, position in enumerate(order)}
    members_of: dict[int, list[int]] = {}
    for position in order:
        members_of.setdefault(components.find(position), []).append(position)
    burst_roots = {components.find(a) for a, _ in bursts}
    widest: dict[int, int] = {}
    spans = [(a, _distance(shots[a], shots[b])) for a, b in bursts]
    spans += [(members[0], span) for members, span in found.groups]  # its widest link, not the star's
    for position, span in spans:
        root = components.find(position)
        widest[root] = max(widest.get(root, 0), span)
    ranked: list[tuple[int, Group]] = []
    for root, positions in members_of.items():
        if len(positions) < 2:
            continue
        members = [shots[p] for p in positions]  # already in capture order: ``order`` was walked
        best, reason = choose_best(members)
        digest = hashlib.sha256("\n".join(shot.image_id for shot in members).encode()).hexdigest()[:16]
        kind = BURST if root in burst_roots else NEAR_DUPLICATES
        ranked.append((place[positions[0]], Group(digest, kind, members, best, reason, widest.get(root, 0))))
    ranked.sort(key=lambda item: item[0])
    return [group for _, group in ranked]


def _dimensions(shot: Shot) -> str:
    return f"{shot.width}×{shot.height} px"


def choose_best(members: Sequence[Shot]) -> tuple[Shot, str]:
    """The member to keep and why, by the three steps of the module's docstring."""
    largest = max(shot.pixels for shot in members)
    by_size = [shot for shot in members if shot.pixels >= SIZE_SHARE * largest]
    least_clipped = min(shot.clipped for shot in by_size)
    by_exposure = [shot for shot in by_size if shot.clipped <= least_clipped + CLIPPING_MARGIN]
    best = max(by_exposure, key=lambda shot: shot.sharpness)  # max keeps the first of equals
    others = [shot for shot in by_exposure if shot is not best]
    if others:
        runner_up = max(shot.sharpness for shot in others)
        if runner_up == best.sharpness:
            return (
                best,
                f"as sharp as the others (Laplacian variance {best.sharpness:,.0f}): the first in capture order",
            )
        return best, f"sharpest: Laplacian variance {best.sharpness:,.0f} against {runner_up:,.0f}"
    if len(by_exposure) < len(by_size):
        set_aside = min(shot.clipped for shot in by_size if shot is not best)
        return best, f"least clipped: {best.clipped:.1%} of pixels pure black or white against {set_aside:.1%}"
    runner_up_size = max((shot for shot in members if shot is not best), key=lambda shot: shot.pixels)
    return best, f"largest: {_dimensions(best)} against {_dimensions(runner_up_size)}"
