"""SQL mode: metadata in a database through SQLAlchemy Core, image bytes in a blob store (fsspec).

SQLite file by default (``<root>/darkroom.db``), PostgreSQL with ``DARKROOM_DATABASE_URL``; blobs
in a local folder by default (``<root>/blobs``), any fsspec URL otherwise (``s3://...`` with s3fs).

A blob is written (atomically: a temporary file, fsync, rename; object stores put whole objects)
before its row is inserted, and the row is deleted before its blob, so the only thing a crash can
leave is a blob without a row, or (if a blob store lost a file) a row without a blob. ``repair()``
runs at start and removes both. Blobs are keyed ``<session_id>/<sha256>``: the same bytes under
two names in one session are held once; nothing is shared across sessions.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fsspec
from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Engine

from core.annotations import EMPTY as EMPTY_ANNOTATIONS
from core.annotations import Annotations
from core.ingest import IngestedImage
from core.sessions import parse_session_id
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
from core.storage.disk import write_atomically

SCHEMA_VERSION = 2  # 1: images and sessions; 2: annotations


class SchemaError(RuntimeError):
    """The database was written by a newer Darkroom (or is not Darkroom's)."""


metadata = MetaData()
meta = Table(
    "darkroom_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", String(200), nullable=False),
)
sessions = Table(
    "darkroom_sessions",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("last_used", Float, nullable=False),
)
images = Table(
    "darkroom_images",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),  # upload order
    Column("session_id", String(36), ForeignKey(sessions.c.id, ondelete="CASCADE"), nullable=False, index=True),
    Column("id", String(32), nullable=False),
    Column("filename", Text, nullable=False),
    Column("format", String(8), nullable=False),
    Column("width", Integer, nullable=False),
    Column("height", Integer, nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("thumbnail_bytes", Integer, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("uploaded_at", String(40), nullable=False),
    Column("thumbnail_mime", String(40), nullable=False),
    UniqueConstraint("session_id", "id"),
)
annotations_table = Table(  # schema version 2
    "darkroom_annotations",
    metadata,
    Column("session_id", String(36), ForeignKey(sessions.c.id, ondelete="CASCADE"), primary_key=True),
    Column("image_id", String(32), primary_key=True),
    Column("state", Text, nullable=False),  # Annotations.to_json()
    Column("nbytes", Integer, nullable=False),  # what the state counts against the quota
)
_RECORD_FIELDS = (
    "id",
    "filename",
    "format",
    "width",
    "height",
    "size_bytes",
    "sha256",
    "uploaded_at",
    "thumbnail_mime",
)


def engine_for(url: str) -> Engine:
    if url.startswith(("postgres://", "postgresql://")):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]  # psycopg 3 is the driver we ship
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, pool_pre_ping=True)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(connection: Any, _: Any) -> None:
            cursor = connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.close()

    return engine


def _record(row: Any) -> ImageRecord:
    return ImageRecord(**{name: getattr(row, name) for name in _RECORD_FIELDS})


class BlobStore:
    """Bytes by key in an fsspec filesystem; local folders get temporary file, fsync, rename."""

    def __init__(self, url: str) -> None:
        self.fs, root = fsspec.core.url_to_fs(url)
        self.root = root.rstrip("/")
        self.local = "file" in (self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,))
        if self.local:
            Path(self.root).mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> str:
        return f"{self.root}/{key}"

    def put(self, key: str, data: bytes) -> None:
        if self.local:
            folder, _, name = self._path(key).rpartition("/")
            Path(folder).mkdir(parents=True, exist_ok=True)
            write_atomically(Path(folder), name, data)
        else:
            self.fs.pipe_file(self._path(key), data)

    def get(self, key: str) -> bytes:
        return self.fs.cat_file(self._path(key))

    def exists(self, key: str) -> bool:
        return self.fs.exists(self._path(key))

    def remove(self, *keys: str) -> None:
        for key in keys:
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm_file(self._path(key))

    def remove_folder(self, prefix: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm(self._path(prefix), recursive=True)

    def keys(self) -> list[str]:
        if not self.fs.exists(self.root):
            return []
        found = self.fs.find(self.root)
        return [path[len(self.root) + 1 :] for path in found]


class SqlStore(ImageStore):
    def __init__(self, database_url: str, blob_url: str, quota_bytes: int, capacity_bytes: int) -> None:
        self.engine = engine_for(database_url)
        self.blobs = BlobStore(blob_url)
        self.quota_bytes = quota_bytes
        self.capacity_bytes = capacity_bytes
        self._lock = threading.RLock()
        self._cache: dict[tuple[str, str, str], tuple[object, int]] = {}
        self._touched: dict[str, float] = {}
        self._migrate()
        self.repair()
        with self.engine.connect() as connection:
            # Bytes of every row and blob, kept up to date by add/delete/clear (one process writes),
            # so the global cap is checked without summing the whole table on every upload.
            self._stored = self._held(connection)

    # -- schema and repair --
    def _migrate(self) -> None:
        metadata.create_all(self.engine)
        with self.engine.begin() as connection:
            version = connection.execute(select(meta.c.value).where(meta.c.key == "schema_version")).scalar()
            if version is None:
                connection.execute(insert(meta).values(key="schema_version", value=str(SCHEMA_VERSION)))
            elif int(version) > SCHEMA_VERSION:
                raise SchemaError(
                    f"the database has schema version {version}; this Darkroom knows up to {SCHEMA_VERSION}"
                )
            elif int(version) < 2:  # 1 -> 2: create_all above made the annotations table
                connection.execute(update(meta).where(meta.c.key == "schema_version").values(value="2"))
            # Future versions upgrade here, one step at a time, inside this transaction.

    def repair(self) -> tuple[int, int]:
        """Remove blobs without a row (a crash between the blob and its row) and rows whose blob is
        gone. Returns (blobs removed, rows removed)."""
        with self._lock:
            with self.engine.connect() as connection:
                rows = connection.execute(select(images.c.session_id, images.c.id, images.c.sha256)).all()
            present = set(self.blobs.keys())
            broken = [
                r
                for r in rows
                if f"{r.session_id}/{r.sha256}" not in present or f"{r.session_id}/{r.sha256}.thumb" not in present
            ]
            if broken:
                with self.engine.begin() as connection:
                    for row in broken:
                        connection.execute(
                            delete(images).where(images.c.session_id == row.session_id, images.c.id == row.id)
                        )
                        connection.execute(
                            delete(annotations_table).where(
                                annotations_table.c.session_id == row.session_id,
                                annotations_table.c.image_id == row.id,
                            )
                        )
            wanted = {f"{r.session_id}/{r.sha256}" for r in rows if r not in broken}
            wanted |= {key + ".thumb" for key in wanted}
            orphans = [key for key in present if key not in wanted]
            self.blobs.remove(*orphans)
            return len(orphans), len(broken)

    # -- helpers --
    @staticmethod
    def _key(key: str) -> str:
        return parse_session_id(key)

    def _cache_bytes(self, key: str | None = None) -> int:
        return sum(n for (k, _, _), (_, n) in self._cache.items() if key is None or k == key)

    def _held(self, connection: Any, key: str | None = None) -> int:
        """Bytes held as the memory store counts them: each distinct content once per session, a
        record's overhead per row, and the caches."""
        where = [images.c.session_id == key] if key is not None else []
        per_content = (
            select(
                images.c.session_id,
                images.c.sha256,
                func.max(images.c.size_bytes + images.c.thumbnail_bytes).label("n"),
            )
            .where(*where)
            .group_by(images.c.session_id, images.c.sha256)
            .subquery()
        )
        content = connection.execute(select(func.coalesce(func.sum(per_content.c.n), 0))).scalar()
        rows = connection.execute(select(func.count()).select_from(images).where(*where)).scalar()
        notes = connection.execute(
            select(func.coalesce(func.sum(annotations_table.c.nbytes), 0)).where(
                *([annotations_table.c.session_id == key] if key is not None else [])
            )
        ).scalar()
        return int(content) + int(rows) * RECORD_OVERHEAD_BYTES + int(notes) + self._cache_bytes(key)

    def _row(self, connection: Any, key: str, image_id: str) -> Any:
        row = None
        if is_image_id(image_id):
            row = connection.execute(select(images).where(images.c.session_id == key, images.c.id == image_id)).first()
        if row is None:
            raise image_not_found()
        return row

    def _mark_used(self, connection: Any, key: str, now: float | None = None) -> None:
        now = time.time() if now is None else now
        if now - self._touched.get(key, 0) < 1:
            return
        self._touched[key] = now
        updated = connection.execute(update(sessions).where(sessions.c.id == key).values(last_used=now)).rowcount
        if not updated:
            connection.execute(insert(sessions).values(id=key, last_used=now))

    # -- contract --
    def add(self, key: str, image: IngestedImage) -> AddOutcome:
        key = self._key(key)
        with self._lock:
            with self.engine.begin() as connection:
                self._mark_used(connection, key)
                same = connection.execute(
                    select(images)
                    .where(images.c.session_id == key, images.c.sha256 == image.sha256)
                    .order_by(images.c.seq)
                ).all()
                for row in same:
                    if row.filename == image.filename:
                        return AddOutcome(_record(row), duplicate=True)
                first = _record(same[0]) if same else None
                nbytes = RECORD_OVERHEAD_BYTES + (0 if first else len(image.data) + len(image.thumbnail))
                held = self._held(connection, key)
                if held + nbytes > self.quota_bytes:
                    raise workspace_full(held, self.quota_bytes, nbytes)
                if self._stored + self._cache_bytes() + nbytes > self.capacity_bytes:
                    raise storage_full()
            blob = f"{key}/{image.sha256}"
            if first is None:  # the blob before the row: a crash leaves at most an orphan blob
                self.blobs.put(blob, image.data)
                self.blobs.put(blob + ".thumb", image.thumbnail)
            record = ImageRecord.from_ingested(image)
            try:
                with self.engine.begin() as connection:
                    connection.execute(
                        insert(images).values(session_id=key, thumbnail_bytes=len(image.thumbnail), **record.__dict__)
                    )
            except BaseException:
                if first is None:
                    self.blobs.remove(blob, blob + ".thumb")
                raise
            self._stored += nbytes
            return AddOutcome(record, same_bytes_as=first)

    def list(self, key: str) -> list[ImageRecord]:
        key = self._key(key)
        with self.engine.begin() as connection:
            rows = connection.execute(select(images).where(images.c.session_id == key).order_by(images.c.seq)).all()
            if rows:
                self._mark_used(connection, key)
        return [_record(row) for row in rows]

    def get(self, key: str, image_id: str) -> ImageRecord:
        with self.engine.connect() as connection:
            return _record(self._row(connection, self._key(key), image_id))

    def _read(self, key: str, image_id: str, suffix: str) -> bytes:
        key = self._key(key)
        with self.engine.connect() as connection:
            row = self._row(connection, key, image_id)
        try:
            return self.blobs.get(f"{key}/{row.sha256}{suffix}")
        except FileNotFoundError:
            raise image_not_found() from None

    def read(self, key: str, image_id: str) -> bytes:
        return self._read(key, image_id, "")

    def read_thumbnail(self, key: str, image_id: str) -> bytes:
        return self._read(key, image_id, ".thumb")

    def delete(self, key: str, image_id: str) -> None:
        key = self._key(key)
        with self._lock:
            with self.engine.begin() as connection:
                row = self._row(connection, key, image_id)
                connection.execute(delete(images).where(images.c.session_id == key, images.c.id == row.id))
                annotated = (annotations_table.c.session_id == key, annotations_table.c.image_id == row.id)
                annotation_bytes = connection.execute(select(annotations_table.c.nbytes).where(*annotated)).scalar()
                connection.execute(delete(annotations_table).where(*annotated))
                still_used = connection.execute(
                    select(func.count())
                    .select_from(images)
                    .where(images.c.session_id == key, images.c.sha256 == row.sha256)
                ).scalar()
            self._stored -= RECORD_OVERHEAD_BYTES + (0 if still_used else row.size_bytes + row.thumbnail_bytes)
            self._stored -= int(annotation_bytes or 0)
            if not still_used:  # the row went first: a crash here leaves an orphan blob, repaired at start
                self.blobs.remove(f"{key}/{row.sha256}", f"{key}/{row.sha256}.thumb")
            self._cache = {k: v for k, v in self._cache.items() if (k[0], k[1]) != (key, image_id)}

    def clear(self, key: str) -> int:
        key = self._key(key)
        with self._lock:
            with self.engine.begin() as connection:
                self._stored -= self._held(connection, key) - self._cache_bytes(key)
                count = connection.execute(delete(images).where(images.c.session_id == key)).rowcount
                connection.execute(delete(annotations_table).where(annotations_table.c.session_id == key))
                connection.execute(delete(sessions).where(sessions.c.id == key))
            self._touched.pop(key, None)
            self.blobs.remove_folder(key)
            self._cache = {k: v for k, v in self._cache.items() if k[0] != key}
            return count

    def has_session(self, key: str) -> bool:
        with self.engine.connect() as connection:
            found = connection.execute(select(sessions.c.id).where(sessions.c.id == self._key(key))).first()
        return found is not None

    def touch(self, key: str) -> None:
        with self.engine.begin() as connection:
            self._mark_used(connection, self._key(key))

    def expire_idle(self, idle_seconds: float, now: float | None = None) -> list[str]:
        now = time.time() if now is None else now
        with self.engine.connect() as connection:
            idle = (
                connection.execute(select(sessions.c.id).where(sessions.c.last_used < now - idle_seconds))
                .scalars()
                .all()
            )
        for key in idle:
            self.clear(key)
        return list(idle)

    def cache_get(self, key: str, image_id: str, name: str) -> object | None:
        key = self._key(key)
        hit = self._cache.get((key, image_id, name))
        if hit is None:
            self.get(key, image_id)  # NotFound when the image is gone
            return None
        return hit[0]

    def cache_put(self, key: str, image_id: str, name: str, value: object, nbytes: int) -> None:
        key = self._key(key)
        with self._lock:
            with self.engine.connect() as connection:
                self._row(connection, key, image_id)
                old = self._cache.get((key, image_id, name), (None, 0))[1]
                held = self._held(connection, key) - old
                if held + nbytes > self.quota_bytes:
                    raise workspace_full(held, self.quota_bytes, nbytes)
            self._cache[(key, image_id, name)] = (value, nbytes)

    def totals(self) -> StoreTotals:
        with self.engine.connect() as connection:
            count = connection.execute(select(func.count()).select_from(sessions)).scalar()
            rows = connection.execute(select(func.count()).select_from(images)).scalar()
        return StoreTotals(int(count), int(rows), self._stored + self._cache_bytes(), self.capacity_bytes)

    def bytes_held(self, key: str) -> int:
        with self.engine.connect() as connection:
            return self._held(connection, self._key(key))

    def get_annotations(self, key: str, image_id: str) -> Annotations:
        key = self._key(key)
        with self.engine.connect() as connection:
            self._row(connection, key, image_id)
            state = connection.execute(
                select(annotations_table.c.state).where(
                    annotations_table.c.session_id == key, annotations_table.c.image_id == image_id
                )
            ).scalar()
        return EMPTY_ANNOTATIONS if state is None else Annotations.from_json(state)

    def patch_annotations(self, key: str, image_id: str, change: Callable[[Annotations], Annotations]) -> Annotations:
        key = self._key(key)
        with self._lock:
            with self.engine.begin() as connection:
                # The image row locked (PostgreSQL; SQLite's writer lock does the same) so that
                # patches from several processes apply one after the other.
                row = None
                if is_image_id(image_id):
                    row = connection.execute(
                        select(images.c.id).where(images.c.session_id == key, images.c.id == image_id).with_for_update()
                    ).first()
                if row is None:
                    raise image_not_found()
                where = (annotations_table.c.session_id == key, annotations_table.c.image_id == image_id)
                found = connection.execute(select(annotations_table.c.state).where(*where)).scalar()
                old = EMPTY_ANNOTATIONS if found is None else Annotations.from_json(found)
                new = change(old)
                if new is old:
                    return new
                delta = new.nbytes - old.nbytes
                if delta > 0:
                    held = self._held(connection, key)
                    if held + delta > self.quota_bytes:
                        raise workspace_full(held, self.quota_bytes, delta)
                    if self._stored + self._cache_bytes() + delta > self.capacity_bytes:
                        raise storage_full()
                values = {"state": new.to_json(), "nbytes": new.nbytes}
                if found is None:
                    connection.execute(insert(annotations_table).values(session_id=key, image_id=image_id, **values))
                else:
                    connection.execute(update(annotations_table).where(*where).values(**values))
            self._stored += delta
            return new

    def list_annotations(self, key: str) -> dict[str, Annotations]:
        key = self._key(key)
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(annotations_table.c.image_id, annotations_table.c.state).where(
                    annotations_table.c.session_id == key
                )
            ).all()
        return {row.image_id: Annotations.from_json(row.state) for row in rows}
