"""The seed's service names, and the wiring of the stores every service call goes through.

``save_uploaded_images``, ``save_and_extract_zip``, ``load_image`` and ``get_all_image_ids`` keep
the seed's names here. With a session in ``CURRENT_SESSION_ID`` they use that session's private
workspace; with none, the legacy shared folder (or they refuse, when ``DARKROOM_LEGACY_FALLBACK=0``).
Their code lives where its concern does:

- ``core.uploads``: the one upload pipeline (a part's bytes -> prepared images -> ``commit``);
- ``core.workspace``: reads and lifecycle (list, load, previews, cache, delete, clear, expiry,
  totals, annotations, the listing's JSON).

This module builds the stores from the settings and says which one the current caller uses
(``namespace``), which decode pool (``sandbox``) and on which threads a blocking store call runs
(``run_store``, ``in_store_thread``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import importlib
import logging
import threading
from collections.abc import Callable
from typing import TypeVar

from core.admission import SessionLedger
from core.config import Settings, get_settings
from core.errors import BadRequest, ServiceBusy
from core.events import bus
from core.invites import invites
from core.presence import presence
from core.sandbox import DecodePool, decode_pool
from core.sessions import LEGACY_KEY, current_session_id
from core.storage.base import ImageStore
from core.storage.disk import FolderStore
from core.storage.factory import build_backends

log = logging.getLogger(__name__)

T = TypeVar("T")


class _Stores:
    """The stores built from the settings, replaced as a whole by ``configure``: the backends of
    ``DARKROOM_STORAGE`` (the session store; the event relay, invite book and presence mirror, handed
    to ``bus``, ``invites`` and ``presence``), the legacy folder, the ledger of which address started
    which session, and the threads that run blocking store calls (their own, so that deletes and the
    idle sweep never wait behind uploads, archives and feature runs on the default executor)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        backends = build_backends(settings)
        self.sessions = backends.sessions
        self.legacy = FolderStore(settings.legacy_dir, settings.session_quota_bytes)
        self.ledger = SessionLedger(settings.client_sessions, settings.client_sessions_per_minute)
        self.store_threads = concurrent.futures.ThreadPoolExecutor(
            max_workers=max(1, settings.store_threads), thread_name_prefix="darkroom-store"
        )
        bus.use_relay(backends.relay)
        invites.use_book(backends.invites)
        presence.use_mirror(backends.presence)


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


def current_stores() -> _Stores:
    """The stores in use, built on first use (``core.uploads`` and ``core.workspace`` reach them here)."""
    return _current()


def namespace() -> tuple[ImageStore, str, str | None]:
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


def sandbox() -> DecodePool:
    """The decode pool, with the current settings' limits."""
    return decode_pool(settings())


def reads_block(sessions_only: bool = False) -> bool:
    """Whether a store call for the current caller may wait on I/O (disk, SQL, network). With
    ``sessions_only`` the call reaches the session store alone (``totals``, ``touch_session``)."""
    stores = _current()
    if sessions_only or current_session_id() is not None or not stores.settings.legacy_fallback:
        return stores.sessions.blocking_io
    return stores.legacy.blocking_io


async def run_store(call: Callable[..., T], *args: object, sessions_only: bool = False) -> T:
    """Run a quick store call (``workspace.list_images``, ``workspace.load_thumbnail``,
    ``uploads.commit``, ``workspace.totals``, ...) from the event loop: inline when the store does no
    I/O (memory mode holds a lock for microseconds, far less than a thread hop), else in a store
    thread, so disk, SQL or network waits never stall the loop."""
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


# The seed's four service names: served from their modules, which import this one's wiring at
# their top, so this one can only import them once they are asked for.
_SERVED_FROM = {
    "save_uploaded_images": "core.uploads",
    "save_and_extract_zip": "core.uploads",
    "load_image": "core.workspace",
    "get_all_image_ids": "core.workspace",
}


def __getattr__(name: str) -> object:
    """A name of ``_SERVED_FROM``, from the module that holds it."""
    module = _SERVED_FROM.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
