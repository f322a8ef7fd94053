"""The EventRelay contract (``core.storage.base``), run on every adapter: the in-process relay and
a real throw-away Redis. Buses whose relays share a channel act like the buses of several
processes: what one publishes reaches the others' subscribers of that session, once, and only them."""

from __future__ import annotations

import queue
from collections.abc import Callable, Iterator

import pytest

from core.events import IMAGE_ADDED, IMAGE_REMOVED, Event, EventBus
from core.storage.base import EventRelay
from core.storage.local import LocalChannel, LocalRelay
from tests.helpers import ADAPTERS, A, B, flushed_redis_url

RELAY_DB = 5  # pub/sub spans databases; flushing one of its own keeps the run's others untouched
WAIT_SECONDS = 10


@pytest.fixture(params=ADAPTERS)
def make_relay(request) -> Callable[[], EventRelay]:
    """The relay of one more process: on one in-process channel, or a new client of one Redis."""
    if request.param == "local":
        channel = LocalChannel()
        return lambda: LocalRelay(channel)
    from core.storage.redis import RedisRelay, connect

    url = flushed_redis_url(request, RELAY_DB)
    return lambda: RedisRelay(connect(url))


@pytest.fixture
def new_bus(make_relay) -> Iterator[Callable[[], EventBus]]:
    """Buses of separate processes, each listening before it is handed over; all closed afterwards."""
    made: list[EventBus] = []

    def make() -> EventBus:
        relay = make_relay()
        bus = EventBus(relay)
        made.append(bus)
        assert relay.wait_until_listening(WAIT_SECONDS)
        return bus

    yield make
    for bus in made:
        bus.close()


def collect(bus: EventBus, session_id: str) -> queue.Queue[Event]:
    received: queue.Queue[Event] = queue.Queue()
    bus.subscribe(session_id, received.put)
    return received


def test_an_event_published_in_one_process_reaches_subscribers_in_another_once(new_bus):
    here, there = new_bus(), new_bus()
    got_here, got_there = collect(here, A), collect(there, A)
    here.publish(Event(IMAGE_ADDED, A, {"image": {"id": "x"}}))
    here.publish(Event(IMAGE_REMOVED, A, {"image_id": "x"}))  # events arrive in the order sent
    remote = [got_there.get(timeout=WAIT_SECONDS) for _ in range(2)]
    assert [(e.kind, e.session_id, e.data) for e in remote] == [
        (IMAGE_ADDED, A, {"image": {"id": "x"}}),
        (IMAGE_REMOVED, A, {"image_id": "x"}),
    ]
    assert [got_here.get_nowait().kind for _ in range(2)] == [IMAGE_ADDED, IMAGE_REMOVED]
    there.publish(Event(IMAGE_ADDED, A, {"image": {"id": "y"}}))  # after this, an echo would have come
    assert got_here.get(timeout=WAIT_SECONDS).data == {"image": {"id": "y"}}
    assert got_here.empty() and got_there.get_nowait().data == {"image": {"id": "y"}}


def test_another_sessions_subscribers_get_nothing(new_bus):
    here, there = new_bus(), new_bus()
    theirs, mine = collect(there, B), collect(there, A)
    here.publish(Event(IMAGE_ADDED, A, {"image": {"id": "x"}}))
    here.publish(Event(IMAGE_REMOVED, A, {"image_id": "x"}))
    assert mine.get(timeout=WAIT_SECONDS).kind == IMAGE_ADDED
    assert mine.get(timeout=WAIT_SECONDS).kind == IMAGE_REMOVED
    assert theirs.empty()


def test_a_closed_bus_gets_no_more_events_from_the_others(new_bus):
    here, there, third = new_bus(), new_bus(), new_bus()
    gone, still = collect(there, A), collect(third, A)
    there.close()
    here.publish(Event(IMAGE_ADDED, A, {"image": {"id": "x"}}))
    assert still.get(timeout=WAIT_SECONDS).kind == IMAGE_ADDED  # the event went out to every process
    assert gone.empty()
