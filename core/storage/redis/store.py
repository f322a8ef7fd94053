"""The session store of redis mode: sessions shared by many ``darkroom`` processes through one RAM-only Redis.

Everything of a session lives in Redis: records, original bytes, thumbnails, feature caches and
annotations. Each change is one Lua script, so the quota and the global cap are checked and
charged atomically: uploads through several processes at once can never overshoot. A session's
keys carry a TTL refreshed on use (Redis itself forgets a session nobody touches); the idle sweep
removes idle sessions first, settling the totals and telling their tabs.

Keys (``darkroom:`` prefix; session ids are validated before they become part of a key):

- per session ``s:<id>:<part>``: ``meta`` (alive marker), ``order`` (ids in upload order), ``rec``
  (id -> sha256, name hash, record JSON), ``names`` (sha256 + name hash -> id), ``shas`` (sha256 ->
  JSON list of ids sharing those bytes), ``blobs`` (sha256:d / sha256:t -> bytes), ``cache``
  (cached values and their sizes), ``ann`` (id -> annotations JSON);
- global: ``held`` and ``count`` (bytes and images per session), ``total`` and ``images`` (all
  sessions), ``seen`` (sorted set: session -> last use, Redis clock).

Cached values are stored without pickle: JSON for plain values, ``mime`` + bytes for previews.
Privacy: a Redis with RDB or AOF persistence would write images to its disk, so such a server is
refused at start unless ``DARKROOM_REDIS_ALLOW_PERSISTENCE=1`` (``client.check_privacy``). Needs
Redis 7 or later. The scripts are in ``lua/store_*.lua``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any, NoReturn

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
from core.storage.redis.client import (
    KEY_PREFIX,
    Client,
    StoreUnavailable,
    check_privacy,
    check_version,
    connect,
    describe,
    guarded,
    lua,
    out_of_memory_ignored,
    redis_errors,
)

SESSION_PARTS = ("meta", "order", "rec", "names", "shas", "blobs", "cache", "ann")
GLOBAL_PARTS = ("held", "count", "total", "images", "seen")
TTL_GRACE_SECONDS = 60  # keys outlive the idle timeout a little so that the sweep (and its events) comes first
REFRESH_EVERY_SECONDS = 1.0  # reads refresh a session's TTL at most this often per process
MAX_REFRESH_MEMO = 10_000
MAX_ANNOTATE_ATTEMPTS = 50  # concurrent patches of one image retry; this many collisions in a row is a bug
EXPIRE_BATCH = 1000  # most sessions one sweep removes (the next sweep takes the rest)
LIST_CHUNK = 500  # ids per HMGET inside the list script (Lua's stack is bounded)
_SHA_CHARS = 64
_NAME_KEY_CHARS = 96  # sha256 hex + 32 hex of the filename's hash

_JSON_TAG = b"j"
_BYTES_TAG = b"b"


# -- cached values: no pickle, only what the service caches --
def encode_cached(value: object) -> bytes:
    """A cached value as bytes: ``(bytes, mime)`` previews as tag, mime, newline, bytes; anything
    else as JSON (TypeError if it is not JSON-able)."""
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], bytes) and isinstance(value[1], str):
        return _BYTES_TAG + value[1].encode() + b"\n" + value[0]
    return _JSON_TAG + json.dumps(value).encode()


def decode_cached(raw: bytes) -> object:
    if raw[:1] == _BYTES_TAG:
        mime, _, data = raw[1:].partition(b"\n")
        return data, mime.decode()
    return json.loads(raw[1:])


def _name_key(sha256: str, filename: str) -> str:
    return sha256 + hashlib.blake2b(filename.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def _stored_record(record: ImageRecord) -> bytes:
    """What ``rec`` holds per image: sha256, the name key's hash part, then the record as JSON
    (the scripts read the fixed-width head and never parse the JSON)."""
    return (_name_key(record.sha256, record.filename) + json.dumps(asdict(record))).encode()


def _record(raw: bytes) -> ImageRecord:
    return ImageRecord(**json.loads(raw[_NAME_KEY_CHARS:]))


# -- the scripts (lua/store_*.lua): the flags line, the constants they share with this module,
# the prelude, then the operation --
# Writes that grow memory are refused as a whole when Redis is over maxmemory (no flags: Redis 7
# checks at the start); removals run even then (allow-oom); reads say no-writes.
_GROWS = "#!lua"
_FREES = "#!lua flags=allow-oom"
_READS = "#!lua flags=no-writes"
_SCRIPT_FLAGS = {
    "add": _GROWS,
    "list": _READS,
    "fetch": _READS,
    "delete": _FREES,
    "clear": _FREES,
    "expire": _FREES,
    "touch": _GROWS,
    "refresh": _GROWS,
    "cache_put": _GROWS,
    "annotate": _GROWS,
}
_LUA_CONSTANTS = f"local SHA_CHARS, NAME_KEY_CHARS, LIST_CHUNK = {_SHA_CHARS}, {_NAME_KEY_CHARS}, {LIST_CHUNK}"


def _script_source(name: str) -> str:
    """The whole source of the store script ``name``, as it is sent to Redis."""
    return "\n".join((_SCRIPT_FLAGS[name], _LUA_CONSTANTS, lua("store_prelude"), lua(f"store_{name}")))


def _text(raw: object) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


class RedisStore(ImageStore):
    """The session store of redis mode (legacy folder calls stay on the local disk)."""

    def __init__(
        self,
        url: str,
        quota_bytes: int,
        capacity_bytes: int,
        idle_seconds: float = 3600.0,
        allow_persistence: bool = False,
        client: Client | None = None,
        ttl_grace_seconds: int = TTL_GRACE_SECONDS,
    ) -> None:
        self.client = client or connect(url)
        self.where = describe(url)
        self.quota_bytes = quota_bytes
        self.capacity_bytes = capacity_bytes
        self.ttl_seconds = math.ceil(idle_seconds) + ttl_grace_seconds
        with redis_errors():
            check_version(self.client, self.where)
            check_privacy(self.client, allow_persistence, self.where)
        self._scripts = {name: self.client.register_script(_script_source(name)) for name in _SCRIPT_FLAGS}
        self._global_keys = [KEY_PREFIX + part for part in GLOBAL_PARTS]
        self._refreshed: dict[str, float] = {}
        self._refreshed_lock = threading.Lock()

    # -- helpers --
    def _keys(self, key: str) -> list[str]:
        session = parse_session_id(key)  # only a canonical id becomes part of a key name
        return [f"{KEY_PREFIX}s:{session}:{part}" for part in SESSION_PARTS] + self._global_keys

    def _part(self, key: str, part: str) -> str:
        return f"{KEY_PREFIX}s:{parse_session_id(key)}:{part}"

    def _run(self, script: str, key: str, *args: object) -> Any:
        return self._scripts[script](keys=self._keys(key), args=[key, self.ttl_seconds, *args])

    def _refusal(self, answer: list[Any]) -> NoReturn:
        """Raise what a script's refusal means."""
        kind = _text(answer[0])
        if kind == "quota":
            raise workspace_full(int(answer[1]), self.quota_bytes, int(answer[2]))
        if kind == "cap":
            raise storage_full("memory")
        if kind == "nf":
            raise image_not_found()
        raise RuntimeError(f"unexpected answer from a Redis script: {kind!r}")

    def _refresh(self, key: str) -> None:
        """Keep a session that is only read alive (its TTL and last use), at most once a second."""
        now = time.monotonic()
        with self._refreshed_lock:
            if now - self._refreshed.get(key, -math.inf) < REFRESH_EVERY_SECONDS:
                return
            if len(self._refreshed) >= MAX_REFRESH_MEMO:
                self._refreshed.clear()
            self._refreshed[key] = now
        with out_of_memory_ignored():  # a full Redis still serves reads
            self._run("refresh", key)

    # -- contract --
    @guarded
    def add(self, key: str, image: IngestedImage) -> AddOutcome:
        record = ImageRecord.from_ingested(image)
        answer = self._run(
            "add",
            key,
            self.quota_bytes,
            self.capacity_bytes,
            RECORD_OVERHEAD_BYTES,
            record.id,
            record.sha256,
            _name_key(record.sha256, record.filename),
            _stored_record(record),
            image.data,
            image.thumbnail,
        )
        kind = _text(answer[0])
        if kind == "dup":
            return AddOutcome(_record(answer[1]), duplicate=True)
        if kind != "ok":
            self._refusal(answer)
        first = answer[1]
        return AddOutcome(record, same_bytes_as=_record(first) if first else None)

    @guarded
    def list(self, key: str) -> list[ImageRecord]:
        records = [_record(raw) for raw in self._run("list", key)]
        if records:
            self._refresh(key)
        return records

    @guarded
    def get(self, key: str, image_id: str) -> ImageRecord:
        raw = self.client.hget(self._part(key, "rec"), image_id) if is_image_id(image_id) else None
        if raw is None:
            raise image_not_found()
        self._refresh(key)
        return _record(raw)

    def _fetch(self, key: str, image_id: str, which: str) -> bytes:
        data = self._run("fetch", key, image_id, which) if is_image_id(image_id) else None
        if data is None:
            raise image_not_found()
        return data

    @guarded
    def read(self, key: str, image_id: str) -> bytes:
        return self._fetch(key, image_id, "d")

    @guarded
    def read_thumbnail(self, key: str, image_id: str) -> bytes:
        return self._fetch(key, image_id, "t")

    @guarded
    def delete(self, key: str, image_id: str) -> None:
        if not is_image_id(image_id) or not self._run("delete", key, RECORD_OVERHEAD_BYTES, image_id):
            raise image_not_found()

    @guarded
    def clear(self, key: str) -> int:
        with self._refreshed_lock:
            self._refreshed.pop(key, None)
        return int(self._run("clear", key))

    @guarded
    def touch(self, key: str) -> None:
        self._run("touch", key)

    def expire_idle(self, idle_seconds: float, now: float | None = None) -> list[str]:
        """``now``: seconds on Redis's clock (``TIME``), which every process shares; default: now.
        Best effort: if Redis goes away, what was removed so far is returned (its TTLs still run)."""
        expired: list[str] = []
        with contextlib.suppress(StoreUnavailable), redis_errors():
            if now is None:
                seconds, micros = self.client.time()
                now = seconds + micros / 1_000_000
            cutoff = now - idle_seconds
            idle = self.client.zrangebyscore(KEY_PREFIX + "seen", "-inf", cutoff, start=0, num=EXPIRE_BATCH)
            for raw in idle:
                session = _text(raw)
                if self._run("expire", session, cutoff):  # another process may have used or swept it meanwhile
                    expired.append(session)
        return expired

    @guarded
    def cache_get(self, key: str, image_id: str, name: str) -> object | None:
        if not is_image_id(image_id):
            raise image_not_found()
        pipe = self.client.pipeline(transaction=False)
        pipe.hexists(self._part(key, "rec"), image_id)
        pipe.hget(self._part(key, "cache"), f"v:{image_id}:{name}")
        exists, raw = pipe.execute()
        if not exists:
            raise image_not_found()
        return None if raw is None else decode_cached(raw)

    @guarded
    def cache_put(self, key: str, image_id: str, name: str, value: object, nbytes: int) -> None:
        if not is_image_id(image_id):
            raise image_not_found()
        answer = self._run(
            "cache_put", key, self.quota_bytes, self.capacity_bytes, image_id, name, encode_cached(value), int(nbytes)
        )
        if _text(answer[0]) != "ok":
            self._refusal(answer)

    @guarded
    def totals(self) -> StoreTotals:
        pipe = self.client.pipeline(transaction=False)
        pipe.zcard(KEY_PREFIX + "seen")
        pipe.get(KEY_PREFIX + "images")
        pipe.get(KEY_PREFIX + "total")
        sessions, images, held = pipe.execute()
        return StoreTotals(int(sessions), int(images or 0), int(held or 0), self.capacity_bytes)

    @guarded
    def bytes_held(self, key: str) -> int:
        pipe = self.client.pipeline(transaction=False)
        pipe.exists(self._part(key, "meta"))
        pipe.hget(KEY_PREFIX + "held", parse_session_id(key))
        alive, held = pipe.execute()
        return int(held or 0) if alive else 0

    @guarded
    def session_count(self) -> int:
        return int(self.client.zcard(KEY_PREFIX + "seen"))

    @guarded
    def has_session(self, key: str) -> bool:
        return bool(self.client.exists(self._part(key, "meta")))

    # -- annotations --
    @guarded
    def get_annotations(self, key: str, image_id: str) -> Annotations:
        if not is_image_id(image_id):
            raise image_not_found()
        pipe = self.client.pipeline(transaction=False)
        pipe.hexists(self._part(key, "rec"), image_id)
        pipe.hget(self._part(key, "ann"), image_id)
        exists, raw = pipe.execute()
        if not exists:
            raise image_not_found()
        return EMPTY_ANNOTATIONS if raw is None else Annotations.from_json(raw.decode())

    @guarded
    def patch_annotations(self, key: str, image_id: str, change: Callable[[Annotations], Annotations]) -> Annotations:
        """Optimistic: read, apply ``change``, write only if nobody wrote in between, else again."""
        if not is_image_id(image_id):
            raise image_not_found()
        for _ in range(MAX_ANNOTATE_ATTEMPTS):
            raw = self.client.hget(self._part(key, "ann"), image_id)
            current = EMPTY_ANNOTATIONS if raw is None else Annotations.from_json(raw.decode())
            new = change(current)
            if new is current:
                self.get(key, image_id)  # NotFound for an unknown image, as in the other stores
                return new
            stored = b"" if new.is_empty else new.to_json().encode()
            answer = self._run("annotate", key, self.quota_bytes, self.capacity_bytes, image_id, raw or b"", stored)
            kind = _text(answer[0])
            if kind == "ok":
                return new
            if kind != "retry":
                self._refusal(answer)
        raise StoreUnavailable(
            "the annotations of this image are being changed by many clients at once; try again",
            retry_after=1,
        )

    @guarded
    def list_annotations(self, key: str) -> dict[str, Annotations]:
        stored = self.client.hgetall(self._part(key, "ann"))
        return {_text(image_id): Annotations.from_json(raw.decode()) for image_id, raw in stored.items()}
