"""Redis mode: many ``darkroom`` processes share one RAM-only Redis. All the Redis code is here:

- ``client.py``: the client, its errors (503/507), the start-up checks, the Lua loader;
- ``store.py``: the session store (``RedisStore``), with its scripts in ``lua/store_*.lua``;
- ``relay.py``: the event relay (one pub/sub channel);
- ``invites.py``: the invite book, with its scripts in ``lua/invite_*.lua``;
- ``presence.py``: the presence mirror (a hash per session, entries with leases).

``shared_backends`` builds the set ``core.storage.factory`` asks for, on the store's one client.
"""

from __future__ import annotations

from core.config import Settings
from core.storage.factory import Backends
from core.storage.redis.client import Client, PersistentRedis, StoreUnavailable, connect
from core.storage.redis.invites import RedisInviteBook
from core.storage.redis.presence import RedisPresenceMirror
from core.storage.redis.relay import RedisRelay
from core.storage.redis.store import RedisStore, decode_cached, encode_cached

__all__ = [
    "Client",
    "PersistentRedis",
    "RedisInviteBook",
    "RedisPresenceMirror",
    "RedisRelay",
    "RedisStore",
    "StoreUnavailable",
    "connect",
    "decode_cached",
    "encode_cached",
    "shared_backends",
]


def shared_backends(settings: Settings) -> Backends:
    """The session store on ``DARKROOM_REDIS_URL`` (refused if that Redis writes to disk), and the
    relay, invite book and presence mirror on the same client."""
    store = RedisStore(
        settings.redis_url,
        settings.session_quota_bytes,
        settings.memory_cap_bytes,
        idle_seconds=settings.session_idle_seconds,
        allow_persistence=settings.redis_allow_persistence,
    )
    client = store.client
    return Backends(store, RedisRelay(client), RedisInviteBook(client), RedisPresenceMirror(client))
