"""The one place ``DARKROOM_STORAGE`` is read: it picks the backends, built together as one set.

Every mode gives a session store, an event relay, an invite book and a presence mirror (the
contracts are in ``core.storage.base``). The modes of one process (memory, disk, sql) pair their
store with the in-process adapters of ``core.storage.local``; redis mode gives Redis adapters on one
shared client (``core.storage.redis``). Adding a backend is one builder in ``BUILDERS``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from core.config import Settings
from core.storage.base import EventRelay, ImageStore, InviteBook, PresenceMirror
from core.storage.disk import SessionFolders
from core.storage.local import LocalInviteBook, LocalPresenceMirror, LocalRelay
from core.storage.memory import MemoryStore


@dataclass(frozen=True)
class Backends:
    """What one storage mode provides."""

    sessions: ImageStore
    relay: EventRelay
    invites: InviteBook
    presence: PresenceMirror


def in_process(sessions: ImageStore) -> Backends:
    """``sessions`` with the in-process relay, invite book and presence mirror."""
    return Backends(sessions, LocalRelay(), LocalInviteBook(), LocalPresenceMirror())


def _memory(settings: Settings) -> Backends:
    return in_process(MemoryStore(settings.session_quota_bytes, settings.memory_cap_bytes))


def _disk(settings: Settings) -> Backends:
    return in_process(SessionFolders(settings.sessions_dir(), settings.session_quota_bytes, settings.memory_cap_bytes))


def _sql(settings: Settings) -> Backends:
    from core.storage.sql import SqlStore  # SQLAlchemy is imported only when asked for

    store = SqlStore(settings.database(), settings.blobs(), settings.session_quota_bytes, settings.memory_cap_bytes)
    return in_process(store)


def _redis(settings: Settings) -> Backends:
    from core.storage.redis import shared_backends  # redis-py is imported only when asked for

    return shared_backends(settings)


BUILDERS: dict[str, Callable[[Settings], Backends]] = {"memory": _memory, "disk": _disk, "sql": _sql, "redis": _redis}


def build_backends(settings: Settings) -> Backends:
    """The backends ``settings.storage`` selects (``core.config.STORAGE_MODES`` lists the modes)."""
    return BUILDERS[settings.storage](settings)
