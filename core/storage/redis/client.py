"""The one Redis client of a process, and what every Redis adapter needs around it: failures turned
into errors a client can act on, the start-up checks (version, persistence), and the Lua scripts
read from ``lua/`` next to this module."""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Iterator
from importlib import resources
from typing import ParamSpec, TypeVar
from urllib.parse import urlsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from core.config import ConfigError
from core.errors import ServiceBusy
from core.storage.base import storage_full

log = logging.getLogger(__name__)

KEY_PREFIX = "darkroom:"  # every key and channel of ours starts with it
RETRY_AFTER_SECONDS = 5
SOCKET_TIMEOUT_SECONDS = 10.0
CONNECT_TIMEOUT_SECONDS = 2.0
HEALTH_CHECK_SECONDS = 10
MIN_REDIS_MAJOR = 7
LUA_FOLDER = "lua"

P = ParamSpec("P")
R = TypeVar("R")

Client = redis.Redis


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


def guarded(method: Callable[P, R]) -> Callable[P, R]:
    """``method`` run inside ``redis_errors``."""

    @functools.wraps(method)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        with redis_errors():
            return method(*args, **kwargs)

    return run


@contextlib.contextmanager
def out_of_memory_ignored() -> Iterator[None]:
    """For writes that only keep something alive: a full Redis still serves what it holds."""
    with contextlib.suppress(redis.exceptions.OutOfMemoryError):
        yield


def connect(url: str) -> Client:
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


def check_version(client: Client, where: str) -> None:
    """Refuse a Redis older than 7 (the scripts declare their flags, which Redis 7 introduced)."""
    try:
        version = str(client.info("server").get("redis_version", ""))
    except redis.exceptions.ResponseError:  # INFO not allowed: the first script will tell
        return
    major = version.split(".", 1)[0]
    if major.isdigit() and int(major) < MIN_REDIS_MAJOR:
        raise ConfigError(f"Redis at {where} runs version {version}; Darkroom needs Redis {MIN_REDIS_MAJOR} or later")


def _config_value(client: Client, name: str) -> str:
    raw = client.config_get(name).get(name, "")
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def check_privacy(client: Client, allow_persistence: bool, where: str) -> None:
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


@functools.cache
def lua(name: str) -> str:
    """The source of ``lua/<name>.lua`` (shipped as package data, see pyproject.toml)."""
    return resources.files(__package__).joinpath(LUA_FOLDER, f"{name}.lua").read_text(encoding="utf-8")
