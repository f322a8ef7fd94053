"""The default session store: RAM only, a byte quota per session, a cap for all, idle expiry."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from core.annotations import EMPTY as EMPTY_ANNOTATIONS
from core.annotations import Annotations
from core.ingest import IngestedImage
from core.storage.base import (
    RECORD_OVERHEAD_BYTES,
    AddOutcome,
    ImageRecord,
    ImageStore,
    StoreTotals,
    image_not_found,
    storage_full,
    workspace_full,
)


@dataclass
class _Blob:
    """The bytes of one upload, shared by every record of the same content in a namespace."""

    data: bytes
    thumbnail: bytes
    ids: dict[str, None] = field(default_factory=dict)  # the records sharing it, in upload order

    @property
    def first_id(self) -> str:
        return next(iter(self.ids))

    @property
    def nbytes(self) -> int:
        return len(self.data) + len(self.thumbnail)


@dataclass
class _Entry:
    record: ImageRecord
    cache: dict[str, tuple[object, int]] = field(default_factory=dict)
    annotations: Annotations = EMPTY_ANNOTATIONS

    @property
    def nbytes(self) -> int:
        return RECORD_OVERHEAD_BYTES + sum(n for _, n in self.cache.values()) + self.annotations.nbytes


@dataclass
class _Namespace:
    images: dict[str, _Entry] = field(default_factory=dict)
    blobs: dict[str, _Blob] = field(default_factory=dict)  # by sha256
    by_name: dict[tuple[str, str], str] = field(default_factory=dict)  # (sha256, filename) -> id
    bytes_held: int = 0
    last_used: float = field(default_factory=time.monotonic)


class MemoryStore(ImageStore):
    blocking_io = False  # RAM only: each call holds the lock for microseconds
    in_process_memory = True
    outlives_the_process = False

    def __init__(self, quota_bytes: int, capacity_bytes: int) -> None:
        self.quota_bytes = quota_bytes
        self.capacity_bytes = capacity_bytes
        self._namespaces: dict[str, _Namespace] = {}
        self._bytes_total = 0
        self._images_total = 0  # images over every namespace
        self._lock = threading.Lock()
        self._never_used: dict[str, None] = {}  # touched, nothing added yet: oldest first

    # -- helpers (call with the lock held) --
    def _entry(self, key: str, image_id: str) -> _Entry:
        namespace = self._namespaces.get(key)
        entry = namespace.images.get(image_id) if namespace else None
        if entry is None:
            raise image_not_found()
        namespace.last_used = time.monotonic()
        return entry

    def _reserve(self, namespace: _Namespace, nbytes: int) -> None:
        if namespace.bytes_held + nbytes > self.quota_bytes:
            raise workspace_full(namespace.bytes_held, self.quota_bytes, nbytes)
        if self._bytes_total + nbytes > self.capacity_bytes:
            raise storage_full("memory")
        namespace.bytes_held += nbytes
        self._bytes_total += nbytes

    def _release(self, namespace: _Namespace, nbytes: int) -> None:
        namespace.bytes_held -= nbytes
        self._bytes_total -= nbytes

    # -- contract --
    def add(self, key: str, image: IngestedImage) -> AddOutcome:
        with self._lock:
            namespace = self._namespaces.get(key) or _Namespace()
            namespace.last_used = time.monotonic()
            same_name = namespace.by_name.get((image.sha256, image.filename))
            if same_name is not None:
                return AddOutcome(namespace.images[same_name].record, duplicate=True)
            entry = _Entry(ImageRecord.from_ingested(image))
            blob = namespace.blobs.get(image.sha256)
            shared = blob is not None
            if blob is None:
                blob = _Blob(image.data, image.thumbnail)
            self._reserve(namespace, entry.nbytes + (0 if shared else blob.nbytes))
            first = namespace.images.get(blob.first_id) if shared else None
            blob.ids[entry.record.id] = None
            namespace.blobs[image.sha256] = blob
            namespace.images[entry.record.id] = entry
            self._images_total += 1
            namespace.by_name[(image.sha256, image.filename)] = entry.record.id
            self._namespaces[key] = namespace
            self._never_used.pop(key, None)
            return AddOutcome(entry.record, same_bytes_as=first.record if first else None)

    def _blob(self, key: str, image_id: str) -> _Blob:
        entry = self._entry(key, image_id)
        return self._namespaces[key].blobs[entry.record.sha256]

    def list(self, key: str) -> list[ImageRecord]:
        with self._lock:
            namespace = self._namespaces.get(key)
            if namespace is None:
                return []
            namespace.last_used = time.monotonic()
            return [e.record for e in namespace.images.values()]

    def get(self, key: str, image_id: str) -> ImageRecord:
        with self._lock:
            return self._entry(key, image_id).record

    def read(self, key: str, image_id: str) -> bytes:
        with self._lock:
            return self._blob(key, image_id).data

    def read_thumbnail(self, key: str, image_id: str) -> bytes:
        with self._lock:
            return self._blob(key, image_id).thumbnail

    def delete(self, key: str, image_id: str) -> None:
        with self._lock:
            entry = self._entry(key, image_id)
            namespace = self._namespaces[key]
            record = entry.record
            del namespace.images[image_id]
            self._images_total -= 1
            del namespace.by_name[(record.sha256, record.filename)]
            blob = namespace.blobs[record.sha256]
            del blob.ids[image_id]  # the next one in upload order becomes the first, in O(1)
            released = entry.nbytes
            if not blob.ids:
                del namespace.blobs[record.sha256]
                released += blob.nbytes
            self._release(namespace, released)

    def clear(self, key: str) -> int:
        with self._lock:
            namespace = self._namespaces.pop(key, None)
            self._never_used.pop(key, None)
            if namespace is None:
                return 0
            self._bytes_total -= namespace.bytes_held
            self._images_total -= len(namespace.images)
            return len(namespace.images)

    def touch(self, key: str) -> None:
        with self._lock:
            if key not in self._namespaces:
                self._namespaces[key] = _Namespace()
                self._never_used[key] = None
            self._namespaces[key].last_used = time.monotonic()

    def expire_idle(self, idle_seconds: float, now: float | None = None) -> list[str]:
        now = time.monotonic() if now is None else now
        with self._lock:
            expired = [k for k, ns in self._namespaces.items() if now - ns.last_used >= idle_seconds]
            for key in expired:
                namespace = self._namespaces.pop(key)
                self._bytes_total -= namespace.bytes_held
                self._images_total -= len(namespace.images)
                self._never_used.pop(key, None)
            return expired

    def cache_get(self, key: str, image_id: str, name: str) -> object | None:
        with self._lock:
            hit = self._entry(key, image_id).cache.get(name)
            return None if hit is None else hit[0]

    def cache_put(self, key: str, image_id: str, name: str, value: object, nbytes: int) -> None:
        with self._lock:
            entry = self._entry(key, image_id)
            namespace = self._namespaces[key]
            old = entry.cache.get(name)
            delta = nbytes - (old[1] if old else 0)
            if delta > 0:
                self._reserve(namespace, delta)
            else:
                self._release(namespace, -delta)
            entry.cache[name] = (value, nbytes)

    def totals(self) -> StoreTotals:
        with self._lock:
            return StoreTotals(
                sessions=len(self._namespaces),
                images=self._images_total,  # counted as they come and go: O(1), whatever the sessions
                bytes_held=self._bytes_total,
                capacity_bytes=self.capacity_bytes,
            )

    def bytes_held(self, key: str) -> int:
        with self._lock:
            namespace = self._namespaces.get(key)
            return namespace.bytes_held if namespace else 0

    def session_count(self) -> int:
        with self._lock:
            return len(self._namespaces)

    def has_session(self, key: str) -> bool:
        with self._lock:
            return key in self._namespaces

    def evict_empty_session(self) -> str | None:
        with self._lock:
            while self._never_used:
                key = next(iter(self._never_used))
                del self._never_used[key]
                namespace = self._namespaces.get(key)
                if namespace is not None and not namespace.images and not namespace.bytes_held:
                    del self._namespaces[key]
                    return key
            return None

    def get_annotations(self, key: str, image_id: str) -> Annotations:
        with self._lock:
            return self._entry(key, image_id).annotations

    def patch_annotations(self, key: str, image_id: str, change: Callable[[Annotations], Annotations]) -> Annotations:
        with self._lock:
            entry = self._entry(key, image_id)
            new = change(entry.annotations)
            if new is entry.annotations:
                return new
            delta = new.nbytes - entry.annotations.nbytes
            namespace = self._namespaces[key]
            if delta > 0:
                self._reserve(namespace, delta)
            else:
                self._release(namespace, -delta)
            entry.annotations = new
            return new

    def list_annotations(self, key: str) -> dict[str, Annotations]:
        with self._lock:
            namespace = self._namespaces.get(key)
            if namespace is None:
                return {}
            return {i: e.annotations for i, e in namespace.images.items() if not e.annotations.is_empty}
