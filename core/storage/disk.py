"""Images as files in folders: the legacy shared folder ``storage/images/``, and in disk mode
one folder per session, ``storage/images/<session_id>/``.

Each image is three files named from a random id, never from user input: ``<id>.<ext>`` (the
original bytes), ``<id>.thumb`` (the preview) and ``<id>.json`` (the record). Each is written to a
temporary file in the same folder, fsynced and renamed into place; the record goes last, so an
image is visible only once all of it is on disk. On first use, leftovers of an interrupted write
(temporary files, images without a record) are removed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from core import formats
from core.annotations import EMPTY as EMPTY_ANNOTATIONS
from core.annotations import Annotations
from core.errors import QuotaExceeded
from core.ingest import IngestedImage
from core.sessions import is_session_id, parse_session_id
from core.storage.base import (
    RECORD_OVERHEAD_BYTES,
    AddOutcome,
    ImageRecord,
    ImageStore,
    StoreTotals,
    image_not_found,
    is_image_id,
    storage_full,
    workspace_full,
)
from core.units import format_bytes

_TEMP_PREFIX = ".tmp-"
_ANNOTATIONS_SUFFIX = ".annotations"  # <id>.annotations: the image's tags, rating and note (JSON)


def write_atomically(folder: Path, name: str, data: bytes) -> None:
    """Write ``folder/name`` so that readers see the old file or the whole new one, never a part."""
    fd, temp_path = tempfile.mkstemp(dir=folder, prefix=_TEMP_PREFIX)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_path, folder / name)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_path)
        raise


def link_atomically(source: Path, target: Path) -> None:
    """Make ``target`` a hard link to ``source``, appearing whole or not at all."""
    temp_path = target.with_name(f"{_TEMP_PREFIX}{target.name}")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temp_path)
    os.link(source, temp_path)
    os.replace(temp_path, target)


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class _Index:
    records: dict[str, ImageRecord] = field(default_factory=dict)
    by_sha256: dict[str, str] = field(default_factory=dict)
    by_name: dict[tuple[str, str], str] = field(default_factory=dict)  # (sha256, filename) -> id
    bytes_held: int = 0
    cache: dict[tuple[str, str], tuple[object, int]] = field(default_factory=dict)
    annotations: dict[str, Annotations] = field(default_factory=dict)


def _legacy_full(held: int, quota: int, needed: int) -> QuotaExceeded:
    return QuotaExceeded(f"the shared folder is full ({format_bytes(quota)}); use a session id for a private workspace")


class FolderStore(ImageStore):
    """One folder; the namespace key is ignored (the legacy folder: everyone sees the same images;
    in disk mode ``SessionFolders`` keeps one of these per session)."""

    def __init__(
        self,
        folder: Path,
        quota_bytes: int,
        full: Callable[[int, int, int], QuotaExceeded] = _legacy_full,
    ) -> None:
        self.folder = Path(folder)
        self.quota_bytes = quota_bytes
        self.full = full  # the error for a full folder: (held, quota, needed)
        self._index: _Index | None = None
        self._lock = threading.Lock()

    # -- on-disk layout --
    def _data_path(self, record: ImageRecord) -> Path:
        return self.folder / f"{record.id}{formats.get(record.format).extensions[0]}"

    def _load(self) -> _Index:
        if self._index is not None:
            return self._index
        self.folder.mkdir(parents=True, exist_ok=True)
        index = _Index()
        names = set(os.listdir(self.folder))
        for name in sorted(names):
            if name.startswith(_TEMP_PREFIX):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.folder / name)
        loaded: list[ImageRecord] = []
        for name in names:
            stem, dot, ext = name.partition(".")
            if ext != "json" or not is_image_id(stem):
                continue
            try:
                record = ImageRecord(**json.loads((self.folder / name).read_text("utf-8")))
            except (OSError, ValueError, TypeError):
                continue
            if self._data_path(record).name in names and f"{record.id}.thumb" in names:
                loaded.append(record)
        for record in sorted(loaded, key=lambda r: (r.uploaded_at, r.id)):
            index.records[record.id] = record
            shared = record.sha256 in index.by_sha256
            index.by_sha256.setdefault(record.sha256, record.id)
            index.by_name[(record.sha256, record.filename)] = record.id
            index.bytes_held += self._nbytes(record, (self.folder / f"{record.id}.thumb").stat().st_size, shared)
            if f"{record.id}{_ANNOTATIONS_SUFFIX}" in names:
                with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
                    text = (self.folder / f"{record.id}{_ANNOTATIONS_SUFFIX}").read_text("utf-8")
                    index.annotations[record.id] = Annotations.from_json(text)
                    index.bytes_held += index.annotations[record.id].nbytes
        # Files of an image whose record never landed are leftovers of an interrupted upload.
        for name in names:
            stem = name.partition(".")[0]
            if is_image_id(stem) and stem not in index.records and not name.endswith(".json"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.folder / name)
        self._index = index
        return index

    @staticmethod
    def _nbytes(record: ImageRecord, thumbnail_size: int, shared: bool = False) -> int:
        # As the memory store counts: bytes held once per content (hard links), a record each.
        return RECORD_OVERHEAD_BYTES + (0 if shared else record.size_bytes + thumbnail_size)

    def _record(self, index: _Index, image_id: str) -> ImageRecord:
        record = index.records.get(image_id) if is_image_id(image_id) else None
        if record is None:
            raise image_not_found()
        return record

    # -- contract --
    def add(self, key: str, image: IngestedImage) -> AddOutcome:
        with self._lock:
            index = self._load()
            same_name = index.by_name.get((image.sha256, image.filename))
            if same_name is not None:
                return AddOutcome(index.records[same_name], duplicate=True)
            first_id = index.by_sha256.get(image.sha256)
            first = index.records[first_id] if first_id else None
            nbytes = RECORD_OVERHEAD_BYTES + (0 if first else len(image.data) + len(image.thumbnail))
            if index.bytes_held + nbytes > self.quota_bytes:
                raise self.full(index.bytes_held, self.quota_bytes, nbytes)
            record = ImageRecord.from_ingested(image)
            try:
                if first is not None:  # same bytes, new name: hard links hold them once
                    link_atomically(self._data_path(first), self._data_path(record))
                    link_atomically(self.folder / f"{first.id}.thumb", self.folder / f"{record.id}.thumb")
                else:
                    write_atomically(self.folder, self._data_path(record).name, image.data)
                    write_atomically(self.folder, f"{record.id}.thumb", image.thumbnail)
                body = json.dumps(record.__dict__, ensure_ascii=False).encode("utf-8")
                write_atomically(self.folder, f"{record.id}.json", body)
                _fsync_folder(self.folder)
            except BaseException:
                self._remove_files(record)
                raise
            index.records[record.id] = record
            index.by_sha256.setdefault(record.sha256, record.id)
            index.by_name[(record.sha256, record.filename)] = record.id
            index.bytes_held += nbytes
            return AddOutcome(record, same_bytes_as=first)

    def _remove_files(self, record: ImageRecord) -> None:
        # The record first: without it the image is invisible even if the rest stays behind.
        for path in (
            self.folder / f"{record.id}.json",
            self._data_path(record),
            self.folder / f"{record.id}.thumb",
            self.folder / f"{record.id}{_ANNOTATIONS_SUFFIX}",
        ):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    def list(self, key: str) -> list[ImageRecord]:
        with self._lock:
            return list(self._load().records.values())

    def get(self, key: str, image_id: str) -> ImageRecord:
        with self._lock:
            return self._record(self._load(), image_id)

    def read(self, key: str, image_id: str) -> bytes:
        with self._lock:
            record = self._record(self._load(), image_id)
            try:
                return self._data_path(record).read_bytes()
            except FileNotFoundError:
                raise image_not_found() from None

    def read_thumbnail(self, key: str, image_id: str) -> bytes:
        with self._lock:
            record = self._record(self._load(), image_id)
            try:
                return (self.folder / f"{record.id}.thumb").read_bytes()
            except FileNotFoundError:
                raise image_not_found() from None

    def delete(self, key: str, image_id: str) -> None:
        with self._lock:
            index = self._load()
            record = self._record(index, image_id)
            shared = any(r.sha256 == record.sha256 and r.id != record.id for r in index.records.values())
            index.bytes_held -= self._nbytes(record, (self.folder / f"{record.id}.thumb").stat().st_size, shared)
            index.bytes_held -= sum(n for (i, _), (_, n) in index.cache.items() if i == record.id)
            index.bytes_held -= index.annotations.pop(record.id, EMPTY_ANNOTATIONS).nbytes
            self._remove_files(record)
            del index.records[record.id]
            del index.by_name[(record.sha256, record.filename)]
            if index.by_sha256.get(record.sha256) == record.id:
                del index.by_sha256[record.sha256]
                other = next((r.id for r in index.records.values() if r.sha256 == record.sha256), None)
                if other is not None:
                    index.by_sha256[record.sha256] = other
            index.cache = {k: v for k, v in index.cache.items() if k[0] != record.id}

    def clear(self, key: str) -> int:
        with self._lock:
            index = self._load()
            count = len(index.records)
            for record in list(index.records.values()):
                self._remove_files(record)
            self._index = _Index()
            return count

    def touch(self, key: str) -> None:
        return None

    def expire_idle(self, idle_seconds: float, now: float | None = None) -> list[str]:
        return []  # the shared folder is permanent by design

    def cache_get(self, key: str, image_id: str, name: str) -> object | None:
        with self._lock:
            index = self._load()
            self._record(index, image_id)
            hit = index.cache.get((image_id, name))
            return None if hit is None else hit[0]

    def cache_put(self, key: str, image_id: str, name: str, value: object, nbytes: int) -> None:
        with self._lock:
            index = self._load()
            self._record(index, image_id)
            old = index.cache.get((image_id, name), (None, 0))[1]
            if index.bytes_held - old + nbytes > self.quota_bytes:
                raise self.full(index.bytes_held - old, self.quota_bytes, nbytes)
            index.cache[(image_id, name)] = (value, nbytes)
            index.bytes_held += nbytes - old

    def totals(self) -> StoreTotals:
        with self._lock:
            index = self._load()
            return StoreTotals(1, len(index.records), index.bytes_held, self.quota_bytes)

    def get_annotations(self, key: str, image_id: str) -> Annotations:
        with self._lock:
            index = self._load()
            self._record(index, image_id)
            return index.annotations.get(image_id, EMPTY_ANNOTATIONS)

    def patch_annotations(self, key: str, image_id: str, change: Callable[[Annotations], Annotations]) -> Annotations:
        with self._lock:
            index = self._load()
            record = self._record(index, image_id)
            old = index.annotations.get(image_id, EMPTY_ANNOTATIONS)
            new = change(old)
            if new is old:
                return new
            if new.nbytes > old.nbytes and index.bytes_held - old.nbytes + new.nbytes > self.quota_bytes:
                raise self.full(index.bytes_held, self.quota_bytes, new.nbytes - old.nbytes)
            write_atomically(self.folder, f"{record.id}{_ANNOTATIONS_SUFFIX}", new.to_json().encode("utf-8"))
            _fsync_folder(self.folder)
            index.annotations[image_id] = new
            index.bytes_held += new.nbytes - old.nbytes
            return new

    def list_annotations(self, key: str) -> dict[str, Annotations]:
        with self._lock:
            return dict(self._load().annotations)

    def bytes_held(self, key: str) -> int:
        with self._lock:
            return self._load().bytes_held


class SessionFolders(ImageStore):
    """Disk mode: each session's images in ``<root>/<session_id>/`` (a ``FolderStore`` each), so
    they survive a restart. The session id is validated before it becomes a path: only a
    canonical lowercase UUID4 is ever joined to ``root``. A session's last use is the folder's
    modification time, so expiry works across restarts too (expiry deletes the folder)."""

    def __init__(self, root: Path, quota_bytes: int, capacity_bytes: int) -> None:
        self.root = Path(root)
        self.quota_bytes = quota_bytes
        self.capacity_bytes = capacity_bytes
        self._stores: dict[str, FolderStore] | None = None
        self._last_used: dict[str, float] = {}
        self._reserved = 0
        self._lock = threading.Lock()

    def _all(self) -> dict[str, FolderStore]:
        if self._stores is None:
            self.root.mkdir(parents=True, exist_ok=True)
            self._stores = {}
            for entry in os.scandir(self.root):
                if entry.is_dir(follow_symlinks=False) and is_session_id(entry.name):
                    self._stores[entry.name] = self._open(entry.name)
                    self._last_used[entry.name] = entry.stat().st_mtime
        return self._stores

    def _open(self, key: str) -> FolderStore:
        return FolderStore(self.root / parse_session_id(key), self.quota_bytes, workspace_full)

    def _store(self, key: str, create: bool = False) -> FolderStore | None:
        with self._lock:
            stores = self._all()
            store = stores.get(parse_session_id(key))
            if store is None and create:
                store = stores[key] = self._open(key)
            if store is not None:
                self._mark_used(key)
            return store

    def _mark_used(self, key: str) -> None:
        now = time.time()
        if now - self._last_used.get(key, 0) > 1:  # the folder's mtime is the persistent record
            with contextlib.suppress(FileNotFoundError):
                os.utime(self.root / key)
        self._last_used[key] = now

    def _existing(self, key: str) -> FolderStore:
        store = self._store(key)
        if store is None:
            raise image_not_found()
        return store

    def add(self, key: str, image: IngestedImage) -> AddOutcome:
        store = self._store(key, create=True)
        assert store is not None
        nbytes = len(image.data) + len(image.thumbnail) + RECORD_OVERHEAD_BYTES
        with self._lock:
            held = sum(s.bytes_held(k) for k, s in self._all().items()) + self._reserved
            if held + nbytes > self.capacity_bytes:
                raise storage_full()
            self._reserved += nbytes
        try:
            return store.add(key, image)
        finally:
            with self._lock:
                self._reserved -= nbytes

    def list(self, key: str) -> list[ImageRecord]:
        store = self._store(key)
        return store.list(key) if store else []

    def get(self, key: str, image_id: str) -> ImageRecord:
        return self._existing(key).get(key, image_id)

    def read(self, key: str, image_id: str) -> bytes:
        return self._existing(key).read(key, image_id)

    def read_thumbnail(self, key: str, image_id: str) -> bytes:
        return self._existing(key).read_thumbnail(key, image_id)

    def delete(self, key: str, image_id: str) -> None:
        self._existing(key).delete(key, image_id)

    def clear(self, key: str) -> int:
        with self._lock:
            store = self._all().pop(parse_session_id(key), None)
            self._last_used.pop(key, None)
        if store is None:
            return 0
        count = len(store.list(key))
        shutil.rmtree(store.folder, ignore_errors=True)
        return count

    def has_session(self, key: str) -> bool:
        return (self.root / parse_session_id(key)).is_dir()

    def touch(self, key: str) -> None:
        store = self._store(key, create=True)
        assert store is not None
        store.folder.mkdir(parents=True, exist_ok=True)

    def expire_idle(self, idle_seconds: float, now: float | None = None) -> list[str]:
        now = time.time() if now is None else now
        with self._lock:
            self._all()
            idle = [k for k, used in self._last_used.items() if now - used > idle_seconds]
        for key in idle:
            self.clear(key)
        return idle

    def cache_get(self, key: str, image_id: str, name: str) -> object | None:
        return self._existing(key).cache_get(key, image_id, name)

    def cache_put(self, key: str, image_id: str, name: str, value: object, nbytes: int) -> None:
        self._existing(key).cache_put(key, image_id, name, value, nbytes)

    def totals(self) -> StoreTotals:
        with self._lock:
            stores = dict(self._all())
        images = held = 0
        for key, store in stores.items():
            images += len(store.list(key))
            held += store.bytes_held(key)
        return StoreTotals(len(stores), images, held, self.capacity_bytes)

    def bytes_held(self, key: str) -> int:
        store = self._store(key)
        return store.bytes_held(key) if store else 0

    def get_annotations(self, key: str, image_id: str) -> Annotations:
        return self._existing(key).get_annotations(key, image_id)

    def patch_annotations(self, key: str, image_id: str, change: Callable[[Annotations], Annotations]) -> Annotations:
        return self._existing(key).patch_annotations(key, image_id, change)

    def list_annotations(self, key: str) -> dict[str, Annotations]:
        store = self._store(key)
        return store.list_annotations(key) if store else {}
