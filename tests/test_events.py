"""Per-session notifications: API changes reach that session's subscribers and no one else's."""

from __future__ import annotations

import queue

from core.events import IMAGE_ADDED, IMAGE_REMOVED, SESSION_CLEARED, EventBus, bus
from tests.helpers import make_jpeg, new_session, upload


def collect(session_id: str):
    received: queue.Queue = queue.Queue()
    return received, bus.subscribe(session_id, received.put)


def drain(received: queue.Queue) -> list:
    items = []
    while not received.empty():
        items.append(received.get_nowait())
    return items


def test_api_changes_are_published_to_that_session_only(api):
    mine, theirs = new_session(api), new_session(api)
    my_events, stop_mine = collect(mine)
    their_events, stop_theirs = collect(theirs)
    try:
        record = upload(api, mine, ("a.jpg", make_jpeg())).json()["accepted"][0]
        api.delete(f"/api/images/{record['id']}", params={"session_id": mine})
        api.delete("/api/session", params={"session_id": mine})
        events = drain(my_events)
        assert [e.kind for e in events] == [IMAGE_ADDED, IMAGE_REMOVED, SESSION_CLEARED]
        assert events[0].data["image"] == record
        assert events[1].data == {"image_id": record["id"]}
        assert drain(their_events) == []
    finally:
        stop_mine()
        stop_theirs()
    assert bus.subscriber_count(mine) == 0


def test_legacy_uploads_publish_nothing(api):
    seen: list = []
    original = bus.publish
    bus.publish = seen.append  # type: ignore[method-assign]
    try:
        upload(api, None, ("shared.jpg", make_jpeg()))
    finally:
        bus.publish = original  # type: ignore[method-assign]
    assert seen == []


async def test_queue_subscription_receives_events_from_other_threads():
    import asyncio

    from core.events import Event

    local = EventBus()
    events, stop = local.subscribe_queue("s")
    await asyncio.to_thread(local.publish, Event(IMAGE_ADDED, "s", {"n": 1}))
    event = await asyncio.wait_for(events.get(), 2)
    assert event.data == {"n": 1}
    stop()
    assert local.subscriber_count("s") == 0


def test_a_failing_subscriber_does_not_stop_the_others():
    from core.events import Event

    local = EventBus()
    got: list = []

    def broken(event):
        raise RuntimeError("boom")

    local.subscribe("s", broken)
    local.subscribe("s", got.append)
    local.publish(Event(IMAGE_ADDED, "s"))
    assert len(got) == 1
