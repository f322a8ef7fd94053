"""Finding images in a workspace: "more like this" (``similar``) and bursts with their best frame
(``groups``), for the current session.

Features come the way every feature does (``core.features.service``): cached per image in the
session's store, computed in the decode sandbox when missing. The work over the whole workspace
takes one thread hop per request, never the event loop.

"More like this" keeps a memo per session: the session's similarity vectors as one matrix
(``SimilarityIndex``), so that an answer over 10,000 images reads no cache and decodes nothing.
The memo is only ever used for the session it was built for (it is found by the session's own
key). It follows the images: each request lists the session and the memo drops the rows of
images that went and adds the new ones; a delete or a clear drops rows (or the whole memo) at
once, through the session's events. Memos are bounded: at most ``MAX_MEMO_BYTES`` in all, the
least recently used going first.
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from core import data_service, workspace
from core.errors import BadRequest
from core.events import IMAGE_REMOVED, SESSION_CLEARED, Event, bus
from core.features import service
from core.features.bursts import Group, Shot, capture_seconds, find_groups
from core.features.hashes import hash_value
from core.features.similar import SIMILARITY_GROUP, Neighbour, SimilarityIndex
from core.sessions import LEGACY_KEY, current_session_id
from core.storage.base import ImageRecord, image_not_found

MAX_MEMO_BYTES = 256 * 1024 * 1024  # every session's matrix together (10,000 images: about 10 MiB)
MIN_K, MAX_K, DEFAULT_K = 1, 100, 12
DEFAULT_GAP_SECONDS, MAX_GAP_SECONDS = 2.0, 3600.0
DEFAULT_BURST_DISTANCE, MAX_BURST_DISTANCE = 12, 32
GROUP_FEATURES = ["basic", "hist256", "sharpness", "hashes", "exif"]


@dataclass
class _Memo:
    index: SimilarityIndex
    unsubscribe: Callable[[], None]


class SimilarityMemos:
    """Each session's ``SimilarityIndex`` by its key (a session id, or the legacy folder's), bounded
    in bytes; a session's events drop its rows (image removed) or its memo (cleared, expired)."""

    def __init__(self, max_bytes: int = MAX_MEMO_BYTES) -> None:
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._memos: OrderedDict[str, _Memo] = OrderedDict()

    def index_for(self, key: str, session_id: str | None) -> SimilarityIndex:
        """The memo of ``key`` (made empty the first time), now the most recently used."""
        with self._lock:
            memo = self._memos.get(key)
            if memo is not None:
                self._memos.move_to_end(key)
                return memo.index
            index = SimilarityIndex()
            unsubscribe = bus.subscribe(session_id, self._follower(key, index)) if session_id else _nothing
            self._memos[key] = _Memo(index, unsubscribe)
            return index

    def _follower(self, key: str, index: SimilarityIndex) -> Callable[[Event], None]:
        def follow(event: Event) -> None:
            if event.kind == IMAGE_REMOVED:
                index.forget([str(event.data.get("image_id"))])
            elif event.kind == SESSION_CLEARED:
                self.drop(key)

        return follow

    def drop(self, key: str) -> None:
        """Forget the memo of ``key``."""
        with self._lock:
            memo = self._memos.pop(key, None)
        if memo is not None:
            memo.unsubscribe()

    def trim(self) -> None:
        """Drop the least recently used memos until all of them fit ``max_bytes`` (the newest stays)."""
        while True:
            with self._lock:
                sizes = {key: memo.index.nbytes for key, memo in self._memos.items()}
                if len(sizes) <= 1 or sum(sizes.values()) <= self.max_bytes:
                    return
                oldest = next(iter(self._memos))
            self.drop(oldest)

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return key in self._memos


def _nothing() -> None:
    return None


memos = SimilarityMemos()


def _memo_key() -> tuple[str, str | None]:
    session_id = current_session_id()
    return (session_id if session_id is not None else LEGACY_KEY), session_id


@dataclass(frozen=True)
class SimilarAnswer:
    image: ImageRecord
    neighbours: list[tuple[ImageRecord, float]]


def _nearest(
    index: SimilarityIndex, records: list[ImageRecord], values: service.Values, image_id: str, k: int
) -> SimilarAnswer:
    """For a worker thread: bring the memo in step with the listing, then search it."""
    vectors = {image_id: groups[SIMILARITY_GROUP]["vector"] for image_id, groups in values.items()}
    index.sync([record.id for record in records], vectors)
    memos.trim()
    by_id = {record.id: record for record in records}
    found: list[Neighbour] | None = index.nearest(image_id, k) if image_id in by_id else None
    if found is None:
        raise image_not_found()  # deleted while its neighbours were computed
    return SimilarAnswer(by_id[image_id], [(by_id[n.image_id], n.distance) for n in found if n.image_id in by_id])


async def similar(image_id: str, k: int = DEFAULT_K) -> SimilarAnswer:
    """The ``k`` images of the current session nearest to ``image_id`` by the ``similarity``
    vector (``core.features.similar``), nearest first, each with its distance. NotFound (404)
    for an image the session does not hold; vectors missing from the memo are read from the
    cache or computed first."""
    if not MIN_K <= k <= MAX_K:
        raise BadRequest(f"k must be {MIN_K} to {MAX_K}, not {k}")
    await data_service.run_store(workspace.get_record, image_id)  # 404 before any work
    key, session_id = _memo_key()
    index = memos.index_for(key, session_id)
    records, values = await service.session_values([SIMILARITY_GROUP], skip=index)
    return await asyncio.to_thread(_nearest, index, records, values, image_id, k)


# -- bursts and near duplicates --
def _clipped(hist256: dict[str, Any]) -> float:
    gray = hist256["gray"]
    total = sum(gray)
    return (gray[0] + gray[-1]) / total if total else 0.0


def _shots(records: list[ImageRecord], values: service.Values) -> list[Shot]:
    current = {record.id for record in workspace.list_images()}  # images deleted meanwhile are left out
    shots = []
    for position, record in enumerate(records):
        if record.id not in current:
            continue
        groups = values[record.id]
        capture = groups["exif"].get("capture_time")
        shots.append(
            Shot(
                upload_index=position,
                image_id=record.id,
                name=record.filename,
                phash=hash_value(groups["hashes"]["phash"]),
                capture_time=capture_seconds(capture),
                sharpness=float(groups["sharpness"]["laplacian_var"]),
                clipped=_clipped(groups["hist256"]),
                width=int(groups["basic"]["width"]),
                height=int(groups["basic"]["height"]),
                capture_text=capture,
            )
        )
    return shots


def _find(
    records: list[ImageRecord], values: service.Values, gap: float, distance: int, near: int, stop: threading.Event
) -> list[Group]:
    return find_groups(_shots(records, values), gap, distance, near, stop)


async def groups(
    gap: float = DEFAULT_GAP_SECONDS, distance: int = DEFAULT_BURST_DISTANCE, near: int | None = None
) -> tuple[list[Group], int]:
    """Bursts and near-duplicate groups of the current session with the best of each suggested
    (``core.features.bursts``), and the near-duplicate threshold used (``near``, default
    ``DARKROOM_NEAR_DUPLICATE_DISTANCE``)."""
    near_bits = data_service.settings().near_duplicate_distance if near is None else near
    records, values = await service.session_values(GROUP_FEATURES)
    stop = threading.Event()
    try:
        return await asyncio.to_thread(_find, records, values, gap, distance, near_bits, stop), near_bits
    except asyncio.CancelledError:
        stop.set()  # the client left: the thread gives up at its next batch, as find_duplicates' does
        raise
