"""The current caller's workspace: what it holds, and its life from start to end.

Reads (list, load, thumbnails, previews, the per-session cache, annotations, the listing's JSON) and
lifecycle (a session starts within its address's share, is touched, cleared, expires, gives way at
the cap; an image is deleted). Every function acts on the session in ``CURRENT_SESSION_ID``, or on
the legacy shared folder when there is none (``data_service.namespace``). Uploads are
``core.uploads``; the stores and their threads are wired in ``core.data_service``.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterable, Sequence

from core.annotations import EMPTY as EMPTY_ANNOTATIONS
from core.annotations import AnnotationPatch, Annotations, apply_patch, batch_cost
from core.annotations import limiter as annotation_limiter
from core.clients import current_client
from core.data_service import current_stores, in_store_thread, namespace, reads_block, sandbox
from core.errors import BadRequest, CapacityExceeded, DarkroomError, QuotaExceeded, ServiceBusy
from core.events import ANNOTATION_CHANGED, IMAGE_REMOVED, SESSION_CLEARED, Event, bus
from core.ingest import make_preview
from core.invites import invites
from core.sessions import current_session_id
from core.storage.base import ImageRecord, ImageStore, StoreTotals, image_not_found, is_image_id, utc_now_iso

log = logging.getLogger(__name__)
SESSION_CAP_RETRY_SECONDS = 30
# Sessions whose ids the ledger holds but the store no longer does, skipped when looking for one that
# gives way at the cap, before the newcomer is refused.
_MAX_STALE_VICTIMS = 8
# A listing this long or shorter is encoded on the event loop in memory mode (a thread hop costs
# more); a longer one goes to a store thread, so no whole-workspace loop runs on the loop.
INLINE_LISTING_RECORDS = 1000


def publish(kind: str, session_id: str | None, **data: object) -> None:
    """Tell a session's tabs and scripts what changed (the legacy folder has none to tell)."""
    if session_id is not None:
        bus.publish(Event(kind, session_id, dict(data)))


def heavy_record(record: ImageRecord) -> bool:
    """Whether decoding a stored image again (a preview, its features) is a heavy task."""
    return sandbox().is_heavy(record.format, record.width * record.height)


# -- read --
def _checked_id(image_id: str) -> str:
    if not is_image_id(image_id):
        raise image_not_found()
    return image_id


def list_images() -> list[ImageRecord]:
    store, key, _ = namespace()
    return store.list(key)


def get_all_image_ids() -> list[str]:
    return [record.id for record in list_images()]


def get_record(image_id: str) -> ImageRecord:
    store, key, _ = namespace()
    return store.get(key, _checked_id(image_id))


def load_image(image_id: str) -> tuple[ImageRecord, bytes]:
    """The record and original bytes of one image of the current session (NotFound otherwise)."""
    store, key, _ = namespace()
    image_id = _checked_id(image_id)
    return store.get(key, image_id), store.read(key, image_id)


def load_thumbnail(image_id: str) -> tuple[ImageRecord, bytes]:
    store, key, _ = namespace()
    image_id = _checked_id(image_id)
    return store.get(key, image_id), store.read_thumbnail(key, image_id)


def load_preview(image_id: str, size: int = 1280) -> tuple[bytes, str]:
    """An upright preview (longest side ``size``), made once and cached in the session's memory."""
    name = f"preview:{size}"
    cached = cache_get(image_id, name)
    if cached is None:
        record, data = load_image(image_id)
        cached = sandbox().call(make_preview, data, size, heavy=heavy_record(record))
        with contextlib.suppress(QuotaExceeded, CapacityExceeded):  # a full workspace still gets a preview
            cache_put(image_id, name, cached, len(cached[0]) + 64)
    assert isinstance(cached, tuple)
    return cached


def cache_get(image_id: str, name: str) -> object | None:
    store, key, _ = namespace()
    return store.cache_get(key, _checked_id(image_id), name)


def cache_put(image_id: str, name: str, value: object, nbytes: int) -> None:
    store, key, _ = namespace()
    store.cache_put(key, _checked_id(image_id), name, value, nbytes)


# -- change --
def delete_image(image_id: str) -> None:
    store, key, session_id = namespace()
    store.delete(key, _checked_id(image_id))
    _forget_encoded([image_id])
    publish(IMAGE_REMOVED, session_id, image_id=image_id)


def clear_session() -> int:
    """Delete everything of the current session; returns how many images went."""
    session_id = current_session_id()
    if session_id is None:
        raise BadRequest("a session id is required to clear a workspace")
    held = current_stores()
    _forget_encoded(record.id for record in held.sessions.list(session_id))
    count = held.sessions.clear(session_id)
    held.ledger.forget(session_id)
    publish(SESSION_CLEARED, session_id, reason="cleared")
    return count


# -- lifecycle --
def session_exists() -> bool:
    """Whether the current session exists (made, or holding images)."""
    session_id = current_session_id()
    return session_id is not None and current_stores().sessions.has_session(session_id)


def touch_session() -> None:
    """Mark the current session as in use (it expires only after the idle timeout from now)."""
    session_id = current_session_id()
    if session_id is not None:
        start_session(session_id)


def start_session(session_id: str) -> None:
    """Count ``session_id`` as live and in use from now (``POST /api/sessions``, which has no
    session of its own: the id it made is passed, not set as the current one)."""
    store = current_stores().sessions
    admit_session(store, session_id)
    store.touch(session_id)


def admit_session(store: ImageStore, key: str) -> None:
    """Let one more session start, for the current client address (``core.admission``): within the
    address's share and rate, and within ``DARKROOM_MAX_SESSIONS``, where a session made and never
    used gives way first, then the oldest session of the address holding the most. Existing
    sessions carry on. Raises ServiceBusy (503, Retry-After)."""
    if store.has_session(key):
        return
    held = current_stores()
    address = current_client()
    held.ledger.check(address)
    limit = held.settings.max_sessions
    if store.session_count() >= limit:
        _make_room(store, address, limit)
    held.ledger.record(key, address)


def _make_room(store: ImageStore, newcomer: str, limit: int) -> None:
    ledger = current_stores().ledger
    evicted = store.evict_empty_session()
    if evicted is not None:
        ledger.forget(evicted)
        return
    for _ in range(_MAX_STALE_VICTIMS):
        victim = ledger.give_way(newcomer)
        if victim is None:
            break
        if store.has_session(victim):
            log.info("the session cap is reached: the oldest session of the address holding the most gave way")
            _forget_encoded(record.id for record in store.list(victim))
            store.clear(victim)
            _ended(victim, reason="evicted")
            return
        ledger.forget(victim)  # already gone (expired or cleared elsewhere)
    raise ServiceBusy(
        f"the server holds its maximum of {limit} workspaces; try again later",
        SESSION_CAP_RETRY_SECONDS,
    )


def _ended(session_id: str, reason: str) -> None:
    """A whole session is gone (expired or evicted): its invites and ledger entry go too; its tabs
    and scripts are told why."""
    invites.revoke_all(session_id)
    current_stores().ledger.forget(session_id)
    publish(SESSION_CLEARED, session_id, reason=reason)


def expire_idle_sessions(now: float | None = None) -> int:
    """Delete sessions idle for longer than the configured timeout; returns how many went."""
    held = current_stores()
    expired = held.sessions.expire_idle(held.settings.session_idle_seconds, now)
    for session_id in expired:
        _ended(session_id, reason="expired")
    return len(expired)


def totals() -> StoreTotals:
    return current_stores().sessions.totals()


def session_bytes_held() -> int:
    store, key, _ = namespace()
    return store.bytes_held(key)


# -- annotations --
def get_annotations(image_id: str) -> Annotations:
    """The shared tags, rating and note of one image of the current session (NotFound otherwise)."""
    store, key, _ = namespace()
    return store.get_annotations(key, _checked_id(image_id))


def list_annotations() -> dict[str, Annotations]:
    """The current session's annotated images and their annotations, by image id."""
    store, key, _ = namespace()
    return store.list_annotations(key)


# Each listed record encoded once: image id -> (annotations version, its JSON). Ids are random and
# never reused; an entry goes with its image (delete, clear) and the bound keeps the rest small.
_LISTING_CACHE_ENTRIES = 50_000
_encoded_records: dict[str, tuple[int, bytes]] = {}


def listing_json() -> bytes:
    """``list_records_with_annotations`` as the API's JSON body, each record encoded only once
    (and again after its annotations change)."""
    store, key, _ = namespace()
    return _encode_listing(store, key, store.list(key))


async def listing_json_async() -> bytes:
    """``listing_json`` for the event loop: a long listing is encoded in a store thread."""
    if reads_block():
        return await in_store_thread(listing_json)
    store, key, _ = namespace()
    records = store.list(key)
    if len(records) <= INLINE_LISTING_RECORDS:
        return _encode_listing(store, key, records)
    return await in_store_thread(_encode_listing, store, key, records)


def _encode_listing(store: ImageStore, key: str, records: list[ImageRecord]) -> bytes:
    annotated = store.list_annotations(key) if records else {}
    parts = []
    for record in records:
        notes = annotated.get(record.id, EMPTY_ANNOTATIONS)
        cached = _encoded_records.get(record.id)
        if cached is None or cached[0] != notes.version:
            listed = {**record.to_public(), "annotations": notes.to_public()}
            encoded = json.dumps(listed, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
            if len(_encoded_records) >= _LISTING_CACHE_ENTRIES:
                _encoded_records.clear()
            cached = _encoded_records[record.id] = (notes.version, encoded)
        parts.append(cached[1])
    return b"[" + b",".join(parts) + b"]"


def _forget_encoded(image_ids: Iterable[str]) -> None:
    for image_id in image_ids:
        _encoded_records.pop(image_id, None)


def list_records_with_annotations() -> list[dict[str, object]]:
    """The current session's records as the API lists them, each with its ``annotations``."""
    store, key, _ = namespace()
    records = store.list(key)
    annotated = store.list_annotations(key) if records else {}
    empty = EMPTY_ANNOTATIONS.to_public()
    return [
        {**record.to_public(), "annotations": annotated[record.id].to_public() if record.id in annotated else empty}
        for record in records
    ]


def patch_annotations(image_id: str, patch: AnnotationPatch, author: str, client: str) -> Annotations:
    """Apply ``patch`` (see ``core.annotations`` for the merge rules) as ``author``, the editing tab's
    or script's name; ``client`` is its id for the rate limit. Publishes ANNOTATION_CHANGED to the
    workspace when anything changed. Raises NotFound, StaleVersion (409), TooLarge, RateLimited."""
    store, key, session_id = namespace()
    image_id = _checked_id(image_id)
    annotation_limiter.check(key, client)
    return _patch_one(store, key, session_id, image_id, patch, author)


def patch_many(
    edits: Sequence[tuple[str, AnnotationPatch]], author: str, client: str
) -> list[tuple[str, Annotations | DarkroomError]]:
    """Apply a batch of edits (``core.annotations.parse_batch``) as ``author``: the rate limit is
    taken once for the whole batch (``batch_cost``; RateLimited refuses it all), then each edit is
    applied on its own, as ``patch_annotations`` would, and answered on its own: its annotations,
    or the error of that image alone (NotFound for an image deleted meanwhile, StaleVersion, ...)."""
    store, key, session_id = namespace()
    annotation_limiter.check(key, client, batch_cost(len(edits)))
    results: list[tuple[str, Annotations | DarkroomError]] = []
    for image_id, patch in edits:
        try:
            results.append((image_id, _patch_one(store, key, session_id, _checked_id(image_id), patch, author)))
        except DarkroomError as exc:
            results.append((image_id, exc))
    return results


def _patch_one(
    store: ImageStore, key: str, session_id: str | None, image_id: str, patch: AnnotationPatch, author: str
) -> Annotations:
    changed = False

    def change(current: Annotations) -> Annotations:
        nonlocal changed
        new = apply_patch(current, patch, author, utc_now_iso())
        changed = new is not current
        return new

    result = store.patch_annotations(key, image_id, change)
    if changed:
        publish(ANNOTATION_CHANGED, session_id, image_id=image_id, annotations=result.to_public(), by=author)
    return result
