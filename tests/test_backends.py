"""One factory chooses every backend for ``DARKROOM_STORAGE``, and ``data_service.configure`` hands
them to the process's bus, invite book and presence: the modes of one process get the in-process
adapters; redis mode gets Redis adapters, so what one process does, another sees."""

from __future__ import annotations

import queue

import pytest

from core.config import STORAGE_MODES, Settings
from core.events import IMAGE_ADDED, Event, EventBus, bus
from core.invites import Invites, invites
from core.presence import Presence, presence
from core.storage.disk import SessionFolders
from core.storage.factory import BUILDERS, build_backends
from core.storage.local import LocalInviteBook, LocalPresenceMirror, LocalRelay
from core.storage.memory import MemoryStore
from core.storage.sql import SqlStore
from tests.helpers import A, flushed_redis_url

WAIT_SECONDS = 10
BACKENDS_DB = 6  # a database of its own on the run's redis-server


def test_every_storage_mode_has_a_builder():
    assert set(BUILDERS) == set(STORAGE_MODES)


@pytest.mark.parametrize(("mode", "store"), [("memory", MemoryStore), ("disk", SessionFolders), ("sql", SqlStore)])
def test_the_modes_of_one_process_pair_their_store_with_the_in_process_adapters(mode, store, tmp_path):
    backends = build_backends(Settings(storage=mode, storage_dir=tmp_path))
    assert isinstance(backends.sessions, store)
    assert isinstance(backends.relay, LocalRelay)
    assert isinstance(backends.invites, LocalInviteBook)
    assert isinstance(backends.presence, LocalPresenceMirror)


@pytest.mark.parametrize(
    ("mode", "in_process", "outlives"), [("memory", True, False), ("disk", False, True), ("sql", False, True)]
)
def test_a_store_says_where_its_images_live(mode, in_process, outlives, tmp_path):
    """The upload budget and the page ask the store, not the mode: only RAM of this process is
    shared with uploads, and only a store that outlives the process is worth remembering a tab by."""
    store = build_backends(Settings(storage=mode, storage_dir=tmp_path)).sessions
    assert (store.in_process_memory, store.outlives_the_process) == (in_process, outlives)


@pytest.mark.redis
def test_in_redis_mode_events_invites_and_presence_reach_another_process(request, configure):
    from core.storage.redis import RedisInviteBook, RedisPresenceMirror, RedisRelay, connect

    url = flushed_redis_url(request, BACKENDS_DB)
    configure(storage="redis", redis_url=url)
    other_relay = RedisRelay(connect(url))
    other_bus = EventBus(other_relay)
    try:
        assert other_relay.wait_until_listening(WAIT_SECONDS)
        received: queue.Queue[Event] = queue.Queue()
        other_bus.subscribe(A, received.put)
        bus.publish(Event(IMAGE_ADDED, A, {"image": {"id": "x"}}))
        assert received.get(timeout=WAIT_SECONDS).data == {"image": {"id": "x"}}

        invite = invites.create(A, ttl_seconds=60)
        assert Invites(RedisInviteBook(connect(url))).resolve(invite.token) == A

        tab = presence.join(A, "tab")
        try:
            elsewhere = Presence(sweep=False, publish=lambda event: None, mirror=RedisPresenceMirror(connect(url)))
            assert [m.id for m in elsewhere.members(A)] == [tab.id]
        finally:
            presence.leave(A, tab.id)
    finally:
        other_bus.close()
        configure()  # back to memory mode, for the tests after this one
