"""The seed's service functions, session-aware through ``CURRENT_SESSION_ID``.

``save_uploaded_images``, ``save_and_extract_zip``, ``load_image`` and ``get_all_image_ids`` keep
the seed's names. With a session in the ContextVar they use that session's private workspace;
with none they use the legacy shared folder (or refuse, when ``DARKROOM_LEGACY_FALLBACK=0``).

An upload is two steps so that CPU work can run while bytes still arrive: ``prepare_image``
(pure: validate, thumbnail; no session involved) and ``commit`` (store into the current session).
Every decode of client bytes (validation, thumbnail, preview) runs in the decode sandbox
(``core.sandbox``): ``prepare_image`` blocks a worker thread on it, ``prepare_image_async`` awaits
it (and cancelling stops the decode).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import json
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

from core import formats
from core.admission import SessionLedger
from core.annotations import EMPTY as EMPTY_ANNOTATIONS
from core.annotations import AnnotationPatch, Annotations, apply_patch
from core.annotations import limiter as annotation_limiter
from core.archive import ZipMember, iter_members
from core.clients import current_client
from core.config import Settings, get_settings
from core.errors import (
    BadRequest,
    CapacityExceeded,
    CorruptImage,
    DarkroomError,
    QuotaExceeded,
    ServiceBusy,
    UnsupportedImage,
)
from core.events import ANNOTATION_CHANGED, IMAGE_ADDED, IMAGE_REMOVED, SESSION_CLEARED, Event, bus
from core.ingest import (
    ImageFacts,
    IngestedImage,
    check_bytes,
    clean_filename,
    inspect_image,
    is_zip,
    make_preview,
    with_facts,
)
from core.invites import invites
from core.prechecks import pixels_at_a_glance
from core.presence import presence
from core.sandbox import DecodePool, decode_pool
from core.sessions import LEGACY_KEY, current_session_id
from core.storage.base import ImageRecord, ImageStore, StoreTotals, image_not_found, is_image_id, utc_now_iso
from core.storage.disk import FolderStore, SessionFolders
from core.storage.memory import MemoryStore

log = logging.getLogger(__name__)
SESSION_CAP_RETRY_SECONDS = 30
# Sessions whose ids the ledger holds but the store no longer does, skipped when looking for one that
# gives way at the cap, before the newcomer is refused.
_MAX_STALE_VICTIMS = 8
# A listing this long or shorter is encoded on the event loop in memory mode (a thread hop costs
# more); a longer one goes to a store thread, so no whole-workspace loop runs on the loop.
INLINE_LISTING_RECORDS = 1000

T = TypeVar("T")


@dataclass(frozen=True)
class Rejection:
    filename: str
    status: int
    detail: str


@dataclass(frozen=True)
class Duplicate:
    filename: str
    existing: ImageRecord


@dataclass(frozen=True)
class Skipped:
    filename: str
    reason: str


@dataclass
class UploadReport:
    accepted: list[ImageRecord] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    duplicates: list[Duplicate] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    # ``duplicates`` lists files whose bytes were already in the workspace: under the same name
    # they were not stored again; under a new name they are also in ``accepted``.

    @property
    def status_code(self) -> int:
        """200 when anything was stored or already there, else the first rejection's status."""
        if self.accepted or self.duplicates or not self.rejected:
            return 200
        return self.rejected[0].status

    @property
    def detail(self) -> str | None:
        if self.status_code == 200:
            return None
        first = self.rejected[0]
        more = len(self.rejected) - 1
        return f"{first.filename}: {first.detail}" + (f" (and {more} more rejected)" if more else "")


Prepared = IngestedImage | Rejection


def session_store(settings: Settings) -> ImageStore:
    """The session store ``DARKROOM_STORAGE`` selects."""
    quota, cap = settings.session_quota_bytes, settings.memory_cap_bytes
    if settings.storage == "disk":
        return SessionFolders(settings.sessions_dir(), quota, cap)
    if settings.storage == "sql":
        from core.storage.sql import SqlStore  # SQLAlchemy is imported only when asked for

        return SqlStore(settings.database(), settings.blobs(), quota, cap)
    if settings.storage == "redis":
        from core.storage.redis import RedisStore  # redis-py is imported only when asked for

        return RedisStore(
            settings.redis_url,
            quota,
            cap,
            idle_seconds=settings.session_idle_seconds,
            allow_persistence=settings.redis_allow_persistence,
        )
    return MemoryStore(quota, cap)


class _Stores:
    """The stores built from the settings, replaced as a whole by ``configure``: the session store,
    the legacy folder, the ledger of which address started which session, and the threads that run
    blocking store calls (their own, so that deletes and the idle sweep never wait behind uploads,
    archives and feature runs on the default executor)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.sessions = session_store(settings)
        self.legacy = FolderStore(settings.legacy_dir, settings.session_quota_bytes)
        self.ledger = SessionLedger(settings.client_sessions, settings.client_sessions_per_minute)
        self.store_threads = concurrent.futures.ThreadPoolExecutor(
            max_workers=max(1, settings.store_threads), thread_name_prefix="darkroom-store"
        )
        # Redis mode: events, invites and presence go through the same Redis, so every process sees them.
        shared = getattr(self.sessions, "client", None) if settings.storage == "redis" else None
        bus.share_through(shared)
        invites.share_through(shared)
        presence.share_through(shared)


_stores: _Stores | None = None
_stores_lock = threading.Lock()


def configure(settings: Settings | None = None) -> None:
    """(Re)build the stores from ``settings`` (default: the process's settings). Drops all sessions;
    the decode pool restarts on next use if its limits changed."""
    global _stores
    with _stores_lock:
        stale, _stores = _stores, _Stores(settings or get_settings())
    if stale is not None:
        stale.store_threads.shutdown(wait=False)


def _current() -> _Stores:
    if _stores is None:
        configure()
    assert _stores is not None
    return _stores


def open_stores() -> None:
    """Build the stores now (at start), so that a store refused by its settings (a Redis that
    writes to disk) stops the server at once. One that is only unreachable for now is tried
    again on each call, which answers 503 until it is back."""
    try:
        _current()
    except ServiceBusy as exc:
        log.warning("the session store is not available yet: %s", exc.message)


def settings() -> Settings:
    return _current().settings


def _namespace() -> tuple[ImageStore, str, str | None]:
    """The store and key for the current caller, and the session id (None for legacy)."""
    stores = _current()
    session_id = current_session_id()
    if session_id is not None:
        return stores.sessions, session_id, session_id
    if not stores.settings.legacy_fallback:
        raise BadRequest(
            "a session id is required: pass ?session_id=... or the X-Session-Id header "
            "(create one with POST /api/sessions)"
        )
    return stores.legacy, LEGACY_KEY, None


def _publish(kind: str, session_id: str | None, **data: object) -> None:
    if session_id is not None:
        bus.publish(Event(kind, session_id, dict(data)))


def sandbox() -> DecodePool:
    """The decode pool, with the current settings' limits."""
    return decode_pool(settings())


def _rejection(filename: str | None, exc: BaseException) -> Rejection:
    if not isinstance(exc, DarkroomError):  # a bug of ours, not the client's: logged, told plainly
        log.error("unexpected failure while reading an upload", exc_info=exc)
        exc = CorruptImage("the file could not be read")
    return Rejection(clean_filename(filename), exc.status_code, exc.message)


# -- upload --
def prepare_image(data: bytes, filename: str | None) -> Prepared:
    """Validate one file and make its thumbnail in the decode sandbox (blocks: call it from a
    worker thread). Needs no session."""
    try:
        fmt = check_bytes(data, settings())  # refusals that need no decoder cost no worker
        return with_facts(data, filename, sandbox().call(inspect_image, data, settings(), heavy=_heavy(data, fmt)))
    except Exception as exc:  # noqa: BLE001  every failure is this file's answer, never a 5xx
        return _rejection(filename, exc)


async def prepare_archive_async(data: bytes, filename: str | None) -> tuple[list[Prepared], list[Skipped]]:
    """``prepare_file`` of an archive for the event loop: cancelling stops its inflating and
    decoding, member by member (the thread running it is told to stop)."""
    return await run_stoppable(prepare_file, data, filename)


async def run_stoppable(call: Callable[..., T], *args: object) -> T:
    """``call(*args, stop)`` in a worker thread. Cancelled (the client left), it sets ``stop`` and
    waits for the thread to notice (between members and files) before it gives up, so the bytes the
    thread holds stay counted in the upload budget until they are really gone."""
    stop = threading.Event()
    work = asyncio.ensure_future(asyncio.to_thread(call, *args, stop))
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:
        stop.set()
        with contextlib.suppress(BaseException):
            await work
        raise


def _heavy(data: bytes, fmt: str) -> bool:
    """Whether the decode of these bytes is a heavy task (``DecodePool.is_heavy``)."""
    return sandbox().is_heavy(fmt, pixels_at_a_glance(data, fmt))


def heavy_record(record: ImageRecord) -> bool:
    """Whether decoding a stored image again (a preview, its features) is a heavy task."""
    return sandbox().is_heavy(record.format, record.width * record.height)


async def prepare_image_async(data: bytes, filename: str | None) -> Prepared:
    """``prepare_image`` for the event loop: awaits the sandbox; cancelling stops the decode."""
    try:
        fmt = check_bytes(data, settings())
        facts = await sandbox().run(inspect_image, data, settings(), heavy=_heavy(data, fmt))
        return with_facts(data, filename, facts)
    except Exception as exc:  # noqa: BLE001  as prepare_image: this file's answer, never a 5xx
        return _rejection(filename, exc)


def _prepare_many(files: Iterable[tuple[str | None, bytes]], stop: threading.Event | None = None) -> Iterable[Prepared]:
    """Prepare files in order, keeping every worker busy but never more than one task each in
    flight for this caller, nor more than the session's decode share (a 1000-member archive does
    not take the whole queue). Refused for the session's or the address's share while this caller
    has decodes of its own in flight, a file waits for the oldest of them instead of failing."""
    pool = sandbox()
    window: deque[tuple[str | None, bytes, concurrent.futures.Future[ImageFacts] | Exception]] = deque()
    most_in_flight = max(1, min(pool.workers, pool.session_tasks - 1))  # the window reaches one more

    def submit(data: bytes, fmt: str) -> concurrent.futures.Future[ImageFacts]:
        """The file's decode; while this caller's share is full, its oldest decode is settled first."""
        while True:
            try:
                return pool.submit(inspect_image, data, settings(), heavy=_heavy(data, fmt))
            except ServiceBusy:
                if not window or isinstance(window[0][2], Exception):
                    raise
                settled.append(settle())

    def settle() -> Prepared:
        name, data, work = window.popleft()
        try:
            if isinstance(work, Exception):
                raise work
            return with_facts(data, name, pool.result(work))
        except Exception as exc:  # noqa: BLE001  this file's answer; the others go on
            return _rejection(name, exc)

    settled: list[Prepared] = []  # answers settled while waiting for a share, yielded next
    try:
        for name, data in files:
            if stop is not None and stop.is_set():
                return  # the client left: nothing more is decoded (the window is cancelled below)
            try:
                fmt = check_bytes(data, settings())
                work: concurrent.futures.Future[ImageFacts] | Exception = submit(data, fmt)
            except Exception as exc:  # noqa: BLE001  answered in order by settle()
                work = exc
            yield from settled
            settled.clear()
            window.append((name, data, work))
            while len(window) > most_in_flight or (window and isinstance(window[0][2], Exception)):
                yield settle()
        while window:
            yield settle()
    finally:
        for _, _, work in window:  # the caller stopped early: free the workers
            if isinstance(work, concurrent.futures.Future):
                pool.cancel(work)


def _admit_session(store: ImageStore, key: str) -> None:
    """Let one more session start, for the current client address (``core.admission``): within the
    address's share and rate, and within ``DARKROOM_MAX_SESSIONS``, where a session made and never
    used gives way first, then the oldest session of the address holding the most. Existing
    sessions carry on. Raises ServiceBusy (503, Retry-After)."""
    if store.has_session(key):
        return
    stores = _current()
    address = current_client()
    stores.ledger.check(address)
    limit = stores.settings.max_sessions
    if store.session_count() >= limit:
        _make_room(stores, store, address, limit)
    stores.ledger.record(key, address)


def _make_room(stores: _Stores, store: ImageStore, newcomer: str, limit: int) -> None:
    evicted = store.evict_empty_session()
    if evicted is not None:
        stores.ledger.forget(evicted)
        return
    for _ in range(_MAX_STALE_VICTIMS):
        victim = stores.ledger.give_way(newcomer)
        if victim is None:
            break
        if store.has_session(victim):
            log.info("the session cap is reached: the oldest session of the address holding the most gave way")
            _end_session(stores, victim, reason="evicted")
            return
        stores.ledger.forget(victim)  # already gone (expired or cleared elsewhere)
    raise ServiceBusy(
        f"the server holds its maximum of {limit} workspaces; try again later",
        SESSION_CAP_RETRY_SECONDS,
    )


def _end_session(stores: _Stores, session_id: str, reason: str) -> int:
    """Delete a whole session (expired or evicted): its images, invites and ledger entry; its tabs
    and scripts are told why."""
    _forget_encoded(record.id for record in stores.sessions.list(session_id))
    count = stores.sessions.clear(session_id)
    invites.revoke_all(session_id)
    stores.ledger.forget(session_id)
    _publish(SESSION_CLEARED, session_id, reason=reason)
    return count


def commit(prepared: Iterable[Prepared], report: UploadReport | None = None) -> UploadReport:
    """Store prepared images into the current session, one by one (a full quota rejects the
    image that does not fit, not the ones before it)."""
    report = report or UploadReport()
    store, key, session_id = _namespace()
    if session_id is not None:
        _admit_session(store, key)
    for item in prepared:
        if isinstance(item, Rejection):
            report.rejected.append(item)
            continue
        try:
            outcome = store.add(key, item)
        except DarkroomError as exc:
            report.rejected.append(Rejection(item.filename, exc.status_code, exc.message))
            continue
        if outcome.duplicate:
            report.duplicates.append(Duplicate(item.filename, outcome.record))
            continue
        report.accepted.append(outcome.record)
        if outcome.same_bytes_as is not None:
            report.duplicates.append(Duplicate(item.filename, outcome.same_bytes_as))
        _publish(IMAGE_ADDED, session_id, image=outcome.record.to_public())
    return report


def save_uploaded_images(files: Iterable[tuple[str | None, bytes]]) -> UploadReport:
    """Validate and store ``(filename, bytes)`` pairs in the current session."""
    return commit(list(_prepare_many(files)))


def prepare_zip(data: bytes, stop: threading.Event | None = None) -> tuple[list[Prepared], list[Skipped]]:
    """Read an archive with every guard and prepare its images (no session involved).
    Whole-archive problems raise (UnsafeArchive 422, TooLarge 413) before anything is kept.
    Once ``stop`` is set (the client left), nothing more is inflated or decoded and nothing is
    returned."""
    members: list[ZipMember] = []
    order: list[ZipMember | Rejection] = []
    skipped: list[Skipped] = []
    for item in iter_members(data, settings()):
        if stop is not None and stop.is_set():
            return [], []
        name = clean_filename(item.name)
        if isinstance(item, ZipMember):
            members.append(item)
            order.append(item)
        elif item.status is None:
            skipped.append(Skipped(name, item.reason))
        else:
            order.append(Rejection(name, item.status, item.reason))
    results = iter(_prepare_many(((m.name, m.data) for m in members), stop))
    prepared: list[Prepared] = []
    for entry in order:
        if isinstance(entry, Rejection):
            prepared.append(entry)
            continue
        result = next(results, None)
        if result is None:  # stopped
            return [], []
        if isinstance(result, Rejection) and result.status == UnsupportedImage.status_code:
            skipped.append(Skipped(result.filename, result.detail))
        else:
            prepared.append(result)
    return prepared, skipped


def _no_images_in_archive(skipped: list[Skipped]) -> UnsupportedImage:
    return UnsupportedImage(
        f"the archive contains no supported images ({formats.accepted_labels()})"
        + (f"; {len(skipped)} file(s) skipped" if skipped else "")
    )


def save_and_extract_zip(data: bytes) -> UploadReport:
    """Store every image of a ZIP archive in the current session; list what was not taken."""
    prepared, skipped = prepare_zip(data)
    if not prepared:
        raise _no_images_in_archive(skipped)
    return commit(prepared, UploadReport(skipped=skipped))


def prepare_file(
    data: bytes, filename: str | None, stop: threading.Event | None = None
) -> tuple[list[Prepared], list[Skipped]]:
    """One dropped file, image or ZIP archive (told apart by content), prepared for ``commit``.
    A refused archive becomes one rejection under the archive's name; nothing of it is kept.
    Blocks (call it from a worker thread); ``stop`` ends an archive's work early."""
    if not is_zip(data):
        return [prepare_image(data, filename)], []
    try:
        prepared, skipped = prepare_zip(data, stop)
        if stop is not None and stop.is_set():
            return [], []
        if not prepared:
            raise _no_images_in_archive(skipped)
    except DarkroomError as exc:
        return [Rejection(clean_filename(filename), exc.status_code, exc.message)], []
    return prepared, skipped


# -- read --
def reads_block(sessions_only: bool = False) -> bool:
    """Whether a store call for the current caller may wait on I/O (disk, SQL, network). With
    ``sessions_only`` the call reaches the session store alone (``totals``, ``touch_session``)."""
    stores = _current()
    if sessions_only or current_session_id() is not None or not stores.settings.legacy_fallback:
        return stores.sessions.blocking_io
    return stores.legacy.blocking_io


async def run_store(call: Callable[..., T], *args: object, sessions_only: bool = False) -> T:
    """Run a quick store call of this module (``list_images``, ``load_thumbnail``, ``commit``,
    ``totals``, ...) from the event loop: inline when the store does no I/O (memory mode holds a lock
    for microseconds, far less than a thread hop), else in a store thread, so disk, SQL or network
    waits never stall the loop."""
    if reads_block(sessions_only):
        return await in_store_thread(call, *args)
    return call(*args)


async def in_store_thread(call: Callable[..., T], *args: object) -> T:
    """Run ``call(*args)`` on the store's own bounded threads, in a copy of the caller's context (the
    session and the client are the same there): for blocking store calls and for loops over a whole
    workspace, which never run on the event loop."""
    loop = asyncio.get_running_loop()
    context = contextvars.copy_context()
    return await loop.run_in_executor(_current().store_threads, context.run, call, *args)


def _checked_id(image_id: str) -> str:
    if not is_image_id(image_id):
        raise image_not_found()
    return image_id


def list_images() -> list[ImageRecord]:
    store, key, _ = _namespace()
    return store.list(key)


def get_all_image_ids() -> list[str]:
    return [record.id for record in list_images()]


def get_record(image_id: str) -> ImageRecord:
    store, key, _ = _namespace()
    return store.get(key, _checked_id(image_id))


def load_image(image_id: str) -> tuple[ImageRecord, bytes]:
    """The record and original bytes of one image of the current session (NotFound otherwise)."""
    store, key, _ = _namespace()
    image_id = _checked_id(image_id)
    return store.get(key, image_id), store.read(key, image_id)


def load_thumbnail(image_id: str) -> tuple[ImageRecord, bytes]:
    store, key, _ = _namespace()
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
    store, key, _ = _namespace()
    return store.cache_get(key, _checked_id(image_id), name)


def cache_put(image_id: str, name: str, value: object, nbytes: int) -> None:
    store, key, _ = _namespace()
    store.cache_put(key, _checked_id(image_id), name, value, nbytes)


# -- change --
def delete_image(image_id: str) -> None:
    store, key, session_id = _namespace()
    store.delete(key, _checked_id(image_id))
    _forget_encoded([image_id])
    _publish(IMAGE_REMOVED, session_id, image_id=image_id)


def clear_session() -> int:
    """Delete everything of the current session; returns how many images went."""
    session_id = current_session_id()
    if session_id is None:
        raise BadRequest("a session id is required to clear a workspace")
    stores = _current()
    _forget_encoded(record.id for record in stores.sessions.list(session_id))
    count = stores.sessions.clear(session_id)
    stores.ledger.forget(session_id)
    _publish(SESSION_CLEARED, session_id, reason="cleared")
    return count


def session_exists() -> bool:
    """Whether the current session exists (made, or holding images)."""
    session_id = current_session_id()
    return session_id is not None and _current().sessions.has_session(session_id)


def touch_session() -> None:
    """Mark the current session as in use (it expires only after the idle timeout from now)."""
    session_id = current_session_id()
    if session_id is not None:
        start_session(session_id)


def start_session(session_id: str) -> None:
    """Count ``session_id`` as live and in use from now (``POST /api/sessions``, which has no
    session of its own: the id it made is passed, not set as the current one)."""
    store = _current().sessions
    _admit_session(store, session_id)
    store.touch(session_id)


def expire_idle_sessions(now: float | None = None) -> int:
    """Delete sessions idle for longer than the configured timeout; returns how many went."""
    stores = _current()
    expired = stores.sessions.expire_idle(stores.settings.session_idle_seconds, now)
    for session_id in expired:
        invites.revoke_all(session_id)
        stores.ledger.forget(session_id)
        _publish(SESSION_CLEARED, session_id, reason="expired")
    return len(expired)


def totals() -> StoreTotals:
    return _current().sessions.totals()


def session_bytes_held() -> int:
    store, key, _ = _namespace()
    return store.bytes_held(key)


# -- annotations --
def get_annotations(image_id: str) -> Annotations:
    """The shared tags, rating and note of one image of the current session (NotFound otherwise)."""
    store, key, _ = _namespace()
    return store.get_annotations(key, _checked_id(image_id))


def list_annotations() -> dict[str, Annotations]:
    """The current session's annotated images and their annotations, by image id."""
    store, key, _ = _namespace()
    return store.list_annotations(key)


# Each listed record encoded once: image id -> (annotations version, its JSON). Ids are random and
# never reused; an entry goes with its image (delete, clear) and the bound keeps the rest small.
_LISTING_CACHE_ENTRIES = 50_000
_encoded_records: dict[str, tuple[int, bytes]] = {}


def listing_json() -> bytes:
    """``list_records_with_annotations`` as the API's JSON body, each record encoded only once
    (and again after its annotations change)."""
    store, key, _ = _namespace()
    return _encode_listing(store, key, store.list(key))


async def listing_json_async() -> bytes:
    """``listing_json`` for the event loop: a long listing is encoded in a store thread."""
    if reads_block():
        return await in_store_thread(listing_json)
    store, key, _ = _namespace()
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
    store, key, _ = _namespace()
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
    store, key, session_id = _namespace()
    image_id = _checked_id(image_id)
    annotation_limiter.check(key, client)
    changed = False

    def change(current: Annotations) -> Annotations:
        nonlocal changed
        new = apply_patch(current, patch, author, utc_now_iso())
        changed = new is not current
        return new

    result = store.patch_annotations(key, image_id, change)
    if changed:
        _publish(ANNOTATION_CHANGED, session_id, image_id=image_id, annotations=result.to_public(), by=author)
    return result
