"""Redis mode: sessions shared by many ``darkroom`` processes through one RAM-only Redis.

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
refused at start unless ``DARKROOM_REDIS_ALLOW_PERSISTENCE=1``. Needs Redis 7 or later.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from typing import Any, NoReturn, ParamSpec, TypeVar
from urllib.parse import urlsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from core.annotations import EMPTY as EMPTY_ANNOTATIONS
from core.annotations import Annotations
from core.config import ConfigError
from core.errors import ServiceBusy
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

log = logging.getLogger(__name__)

KEY_PREFIX = "darkroom:"
SESSION_PARTS = ("meta", "order", "rec", "names", "shas", "blobs", "cache", "ann")
GLOBAL_PARTS = ("held", "count", "total", "images", "seen")
TTL_GRACE_SECONDS = 60  # keys outlive the idle timeout a little so that the sweep (and its events) comes first
RETRY_AFTER_SECONDS = 5
SOCKET_TIMEOUT_SECONDS = 10.0
CONNECT_TIMEOUT_SECONDS = 2.0
HEALTH_CHECK_SECONDS = 10
REFRESH_EVERY_SECONDS = 1.0  # reads refresh a session's TTL at most this often per process
MAX_REFRESH_MEMO = 10_000
MIN_REDIS_MAJOR = 7
MAX_ANNOTATE_ATTEMPTS = 50  # concurrent patches of one image retry; this many collisions in a row is a bug
EXPIRE_BATCH = 1000  # most sessions one sweep removes (the next sweep takes the rest)
LIST_CHUNK = 500  # ids per HMGET inside the list script (Lua's stack is bounded)
_SHA_CHARS = 64
_NAME_KEY_CHARS = 96  # sha256 hex + 32 hex of the filename's hash

_JSON_TAG = b"j"
_BYTES_TAG = b"b"

P = ParamSpec("P")
R = TypeVar("R")


class StoreUnavailable(ServiceBusy):
    """The session store (Redis) cannot be reached: 503 with ``Retry-After``; calls work again by
    themselves once it is back."""


class PersistentRedis(ConfigError):
    """The Redis server writes its data to disk (RDB or AOF), which would break the RAM-only promise."""


def store_unavailable() -> StoreUnavailable:
    return StoreUnavailable(
        "the session store (Redis) is not reachable right now; nothing was changed, try again in a few seconds",
        retry_after=RETRY_AFTER_SECONDS,
    )


@contextlib.contextmanager
def redis_errors() -> Iterator[None]:
    """Turn Redis failures into errors a client can act on: unreachable, loading or read-only ->
    503 (StoreUnavailable), out of memory (``maxmemory``) -> 507 (CapacityExceeded)."""
    try:
        yield
    except redis.exceptions.OutOfMemoryError:
        raise storage_full("memory") from None
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, redis.exceptions.ReadOnlyError) as exc:
        log.warning("Redis is not reachable (%s)", type(exc).__name__)
        raise store_unavailable() from None
    except redis.exceptions.ResponseError as exc:
        text = str(exc)
        if "maxmemory" in text:
            raise storage_full("memory") from None
        if text.startswith(("MISCONF", "MASTERDOWN", "LOADING", "READONLY")):
            log.warning("Redis cannot serve writes (%s)", text.split(" ", 1)[0])
            raise store_unavailable() from None
        raise


def _guarded(method: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(method)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        with redis_errors():
            return method(*args, **kwargs)

    return run


def connect(url: str) -> redis.Redis:
    """A client for ``url`` with short timeouts: a call fails fast (503) while Redis is away and
    the pool reconnects by itself when it returns (one immediate retry covers a stale connection)."""
    return redis.Redis.from_url(
        url,
        socket_timeout=SOCKET_TIMEOUT_SECONDS,
        socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
        health_check_interval=HEALTH_CHECK_SECONDS,
        retry=Retry(NoBackoff(), 1, supported_errors=(redis.exceptions.ConnectionError,)),
    )


def describe(url: str) -> str:
    """``host:port/db`` of a Redis URL, without credentials (for messages and logs)."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    return f"{parts.hostname or '127.0.0.1'}:{parts.port or 6379}{parts.path or '/0'}"


def check_version(client: redis.Redis, where: str) -> None:
    """Refuse a Redis older than 7 (the scripts declare their flags, which Redis 7 introduced)."""
    try:
        version = str(client.info("server").get("redis_version", ""))
    except redis.exceptions.ResponseError:  # INFO not allowed: the first script will tell
        return
    major = version.split(".", 1)[0]
    if major.isdigit() and int(major) < MIN_REDIS_MAJOR:
        raise ConfigError(f"Redis at {where} runs version {version}; Darkroom needs Redis {MIN_REDIS_MAJOR} or later")


def _config_value(client: redis.Redis, name: str) -> str:
    raw = client.config_get(name).get(name, "")
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def check_privacy(client: redis.Redis, allow_persistence: bool, where: str) -> None:
    """Refuse a Redis that writes to disk (PersistentRedis), unless ``allow_persistence``. Where
    ``CONFIG`` is not allowed (managed services rename it), log a warning instead."""
    try:
        save = _config_value(client, "save").strip()
        appendonly = _config_value(client, "appendonly").strip().lower()
        policy = _config_value(client, "maxmemory-policy").strip().lower()
    except redis.exceptions.ResponseError:
        log.warning(
            "cannot read the configuration of Redis at %s (CONFIG is not allowed); make sure RDB and AOF "
            "persistence are off there (save '' and appendonly no), or images may reach its disk",
            where,
        )
        return
    enabled = ([f"RDB snapshots (save {save!r})"] if save else []) + (
        ["AOF (appendonly yes)"] if appendonly == "yes" else []
    )
    if enabled and not allow_persistence:
        raise PersistentRedis(
            f"Redis at {where} has persistence on: {' and '.join(enabled)}; images would be written to its disk. "
            "Turn it off with: redis-cli CONFIG SET save '' ; redis-cli CONFIG SET appendonly no "
            '(and in redis.conf: save "" and appendonly no), or accept it with DARKROOM_REDIS_ALLOW_PERSISTENCE=1'
        )
    if enabled:
        log.warning("Redis at %s has persistence on (%s): images reach its disk", where, " and ".join(enabled))
    if policy and policy != "noeviction":
        log.warning(
            "Redis at %s evicts keys when full (maxmemory-policy %s); use noeviction so that a full Redis "
            "refuses uploads (507) instead of dropping parts of workspaces",
            where,
            policy,
        )


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


# -- the scripts: KEYS are the session's parts then the global parts; ARGV[1] session, ARGV[2] TTL --
_PRELUDE = """
local SID, TTL = ARGV[1], tonumber(ARGV[2])
local META, ORDER, REC, NAMES = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local SHAS, BLOBS, CACHE, ANN = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local HELD, COUNT, TOTAL, IMAGES, SEEN = KEYS[9], KEYS[10], KEYS[11], KEYS[12], KEYS[13]

local function num(v) return tonumber(v or '0') or 0 end

local function now()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end

local function account(bytes, images)
  if bytes ~= 0 then redis.call('HINCRBY', HELD, SID, bytes); redis.call('INCRBY', TOTAL, bytes) end
  if images ~= 0 then redis.call('HINCRBY', COUNT, SID, images); redis.call('INCRBY', IMAGES, images) end
end

-- remove the session's keys and its share of the totals; returns how many images it had
local function drop()
  local held, count = num(redis.call('HGET', HELD, SID)), num(redis.call('HGET', COUNT, SID))
  redis.call('DEL', META, ORDER, REC, NAMES, SHAS, BLOBS, CACHE, ANN)
  redis.call('HDEL', HELD, SID)
  redis.call('HDEL', COUNT, SID)
  if held ~= 0 then redis.call('DECRBY', TOTAL, held) end
  if count ~= 0 then redis.call('DECRBY', IMAGES, count) end
  return count
end

-- the keys went with their TTL while the accounting stayed: settle it before counting on it
local function settle()
  if redis.call('EXISTS', META) == 0 and redis.call('HEXISTS', HELD, SID) == 1 then drop() end
end

local function keep()
  redis.call('HSET', META, 'alive', '1')
  redis.call('ZADD', SEEN, now(), SID)
  for i = 1, 8 do redis.call('EXPIRE', KEYS[i], TTL) end
end

-- nil when nbytes more fit in the quota and the cap, else the refusal
local function room(nbytes, quota, cap)
  local held = num(redis.call('HGET', HELD, SID))
  if held + nbytes > quota then return {'quota', tostring(held), tostring(nbytes)} end
  if num(redis.call('GET', TOTAL)) + nbytes > cap then return {'cap'} end
  return nil
end

local function release_cache(image_id)
  local names = redis.call('HGET', CACHE, 'i:' .. image_id)
  if not names then return 0 end
  local freed = 0
  for _, name in ipairs(cjson.decode(names)) do
    freed = freed + num(redis.call('HGET', CACHE, 'n:' .. image_id .. ':' .. name))
    redis.call('HDEL', CACHE, 'v:' .. image_id .. ':' .. name, 'n:' .. image_id .. ':' .. name)
  end
  redis.call('HDEL', CACHE, 'i:' .. image_id)
  return freed
end
"""

# Writes that grow memory are refused as a whole when Redis is over maxmemory (no flags: Redis 7
# checks at the start); removals run even then (allow-oom); reads say no-writes.
_GROWS = "#!lua\n"
_FREES = "#!lua flags=allow-oom\n"
_READS = "#!lua flags=no-writes\n"

_ADD = """
settle()
local quota, cap, overhead = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local image_id, sha, name_key = ARGV[6], ARGV[7], ARGV[8]
local same = redis.call('HGET', NAMES, name_key)
if same then
  keep()
  return {'dup', redis.call('HGET', REC, same)}
end
local ids_json = redis.call('HGET', SHAS, sha)
local ids = {}
if ids_json then ids = cjson.decode(ids_json) end
local nbytes = overhead
if #ids == 0 then nbytes = nbytes + #ARGV[10] + #ARGV[11] end
local refusal = room(nbytes, quota, cap)
if refusal then return refusal end
local first = ''
if #ids == 0 then
  redis.call('HSET', BLOBS, sha .. ':d', ARGV[10], sha .. ':t', ARGV[11])
else
  first = redis.call('HGET', REC, ids[1]) or ''
end
ids[#ids + 1] = image_id
redis.call('HSET', SHAS, sha, cjson.encode(ids))
redis.call('HSET', REC, image_id, ARGV[9])
redis.call('RPUSH', ORDER, image_id)
redis.call('HSET', NAMES, name_key, image_id)
account(nbytes, 1)
keep()
return {'ok', first}
"""

_LIST = f"""
local ids = redis.call('LRANGE', ORDER, 0, -1)
local out = {{}}
for i = 1, #ids, {LIST_CHUNK} do
  local chunk = {{}}
  for j = i, math.min(i + {LIST_CHUNK - 1}, #ids) do chunk[#chunk + 1] = ids[j] end
  local found = redis.call('HMGET', REC, unpack(chunk))
  for j = 1, #chunk do
    if found[j] then out[#out + 1] = found[j] end
  end
end
return out
"""

_FETCH = f"""
local rec = redis.call('HGET', REC, ARGV[3])
if not rec then return false end
return redis.call('HGET', BLOBS, string.sub(rec, 1, {_SHA_CHARS}) .. ':' .. ARGV[4])
"""

_DELETE = f"""
local image_id = ARGV[4]
local rec = redis.call('HGET', REC, image_id)
if not rec then return 0 end
local sha, name_key = string.sub(rec, 1, {_SHA_CHARS}), string.sub(rec, 1, {_NAME_KEY_CHARS})
local released = tonumber(ARGV[3]) + release_cache(image_id) + redis.call('HSTRLEN', ANN, image_id)
redis.call('HDEL', ANN, image_id)
redis.call('HDEL', REC, image_id)
redis.call('LREM', ORDER, 1, image_id)
redis.call('HDEL', NAMES, name_key)
local kept = {{}}
for _, id in ipairs(cjson.decode(redis.call('HGET', SHAS, sha) or '[]')) do
  if id ~= image_id then kept[#kept + 1] = id end
end
if #kept == 0 then
  released = released + redis.call('HSTRLEN', BLOBS, sha .. ':d') + redis.call('HSTRLEN', BLOBS, sha .. ':t')
  redis.call('HDEL', BLOBS, sha .. ':d', sha .. ':t')
  redis.call('HDEL', SHAS, sha)
else
  redis.call('HSET', SHAS, sha, cjson.encode(kept))
end
account(-released, -1)
keep()
return 1
"""

_CLEAR = """
local alive = redis.call('EXISTS', META)
local count = drop()
redis.call('ZREM', SEEN, SID)
if alive == 1 then return count end
return 0
"""

_EXPIRE = """
local score = redis.call('ZSCORE', SEEN, SID)
if not score or tonumber(score) > tonumber(ARGV[3]) then return 0 end
drop()
redis.call('ZREM', SEEN, SID)
return 1
"""

_TOUCH = """
settle()
keep()
return 1
"""

_REFRESH = """
if redis.call('EXISTS', META) == 1 then keep() end
return 1
"""

_CACHE_PUT = """
local quota, cap = tonumber(ARGV[3]), tonumber(ARGV[4])
local image_id, name, nbytes = ARGV[5], ARGV[6], tonumber(ARGV[8])
if redis.call('HEXISTS', REC, image_id) == 0 then return {'nf'} end
local nfield = 'n:' .. image_id .. ':' .. name
local old = redis.call('HGET', CACHE, nfield)
local delta = nbytes - num(old)
if delta > 0 then
  local refusal = room(delta, quota, cap)
  if refusal then return refusal end
end
if not old then
  local names = redis.call('HGET', CACHE, 'i:' .. image_id)
  local list = {}
  if names then list = cjson.decode(names) end
  list[#list + 1] = name
  redis.call('HSET', CACHE, 'i:' .. image_id, cjson.encode(list))
end
redis.call('HSET', CACHE, 'v:' .. image_id .. ':' .. name, ARGV[7], nfield, ARGV[8])
account(delta, 0)
keep()
return {'ok'}
"""

_ANNOTATE = """
local quota, cap, image_id = tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
if redis.call('HEXISTS', REC, image_id) == 0 then return {'nf'} end
local current = redis.call('HGET', ANN, image_id) or ''
if current ~= ARGV[6] then return {'retry'} end
local delta = #ARGV[7] - #current
if delta > 0 then
  local refusal = room(delta, quota, cap)
  if refusal then return refusal end
end
if ARGV[7] == '' then redis.call('HDEL', ANN, image_id) else redis.call('HSET', ANN, image_id, ARGV[7]) end
account(delta, 0)
keep()
return {'ok'}
"""

_SCRIPTS = {
    "add": _GROWS + _PRELUDE + _ADD,
    "list": _READS + _PRELUDE + _LIST,
    "fetch": _READS + _PRELUDE + _FETCH,
    "delete": _FREES + _PRELUDE + _DELETE,
    "clear": _FREES + _PRELUDE + _CLEAR,
    "expire": _FREES + _PRELUDE + _EXPIRE,
    "touch": _GROWS + _PRELUDE + _TOUCH,
    "refresh": _GROWS + _PRELUDE + _REFRESH,
    "cache_put": _GROWS + _PRELUDE + _CACHE_PUT,
    "annotate": _GROWS + _PRELUDE + _ANNOTATE,
}


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
        client: redis.Redis | None = None,
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
        self._scripts = {name: self.client.register_script(source) for name, source in _SCRIPTS.items()}
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
        with contextlib.suppress(redis.exceptions.OutOfMemoryError):  # a full Redis still serves reads
            self._run("refresh", key)

    # -- contract --
    @_guarded
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

    @_guarded
    def list(self, key: str) -> list[ImageRecord]:
        records = [_record(raw) for raw in self._run("list", key)]
        if records:
            self._refresh(key)
        return records

    @_guarded
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

    @_guarded
    def read(self, key: str, image_id: str) -> bytes:
        return self._fetch(key, image_id, "d")

    @_guarded
    def read_thumbnail(self, key: str, image_id: str) -> bytes:
        return self._fetch(key, image_id, "t")

    @_guarded
    def delete(self, key: str, image_id: str) -> None:
        if not is_image_id(image_id) or not self._run("delete", key, RECORD_OVERHEAD_BYTES, image_id):
            raise image_not_found()

    @_guarded
    def clear(self, key: str) -> int:
        with self._refreshed_lock:
            self._refreshed.pop(key, None)
        return int(self._run("clear", key))

    @_guarded
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

    @_guarded
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

    @_guarded
    def cache_put(self, key: str, image_id: str, name: str, value: object, nbytes: int) -> None:
        if not is_image_id(image_id):
            raise image_not_found()
        answer = self._run(
            "cache_put", key, self.quota_bytes, self.capacity_bytes, image_id, name, encode_cached(value), int(nbytes)
        )
        if _text(answer[0]) != "ok":
            self._refusal(answer)

    @_guarded
    def totals(self) -> StoreTotals:
        pipe = self.client.pipeline(transaction=False)
        pipe.zcard(KEY_PREFIX + "seen")
        pipe.get(KEY_PREFIX + "images")
        pipe.get(KEY_PREFIX + "total")
        sessions, images, held = pipe.execute()
        return StoreTotals(int(sessions), int(images or 0), int(held or 0), self.capacity_bytes)

    @_guarded
    def bytes_held(self, key: str) -> int:
        pipe = self.client.pipeline(transaction=False)
        pipe.exists(self._part(key, "meta"))
        pipe.hget(KEY_PREFIX + "held", parse_session_id(key))
        alive, held = pipe.execute()
        return int(held or 0) if alive else 0

    @_guarded
    def session_count(self) -> int:
        return int(self.client.zcard(KEY_PREFIX + "seen"))

    @_guarded
    def has_session(self, key: str) -> bool:
        return bool(self.client.exists(self._part(key, "meta")))

    # -- annotations --
    @_guarded
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

    @_guarded
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

    @_guarded
    def list_annotations(self, key: str) -> dict[str, Annotations]:
        stored = self.client.hgetall(self._part(key, "ann"))
        return {_text(image_id): Annotations.from_json(raw.decode()) for image_id, raw in stored.items()}
