"""Per-session change notifications: image added, image removed, session cleared, progress.

Publishers (the service layer, feature runs) call ``publish`` from any thread. Subscribers get
only their own session's events: either a plain callback (run in the publisher's thread) or an
asyncio queue fed through its loop, which is what the UI and WebSocket clients use.

Every event also goes through the bus's relay (``core.storage.base.EventRelay``, chosen with the
other backends by ``core.storage.factory``), which hands it to the other processes' buses: in redis
mode a Redis pub/sub channel, so a tab on one process sees, live, what a script pushed through
another. Delivery across processes is best effort: while Redis is away, remote events are lost (the
page lists again on reload).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from core.storage.base import EventRelay
from core.storage.local import LocalRelay

log = logging.getLogger(__name__)

IMAGE_ADDED = "image_added"
IMAGE_REMOVED = "image_removed"
SESSION_CLEARED = "session_cleared"
PROGRESS = "progress"

ANNOTATION_CHANGED = "annotation_changed"  # data: image_id, annotations (the public form), by
PRESENCE_CHANGED = "presence_changed"  # data: members (the workspace's own, public form)
KINDS = (IMAGE_ADDED, IMAGE_REMOVED, SESSION_CLEARED, PROGRESS, ANNOTATION_CHANGED, PRESENCE_CHANGED)


@dataclass(frozen=True)
class Event:
    kind: str
    session_id: str
    data: dict[str, Any] = field(default_factory=dict)


Subscriber = Callable[[Event], None]


class EventQueue(asyncio.Queue[Event]):
    """A subscriber's queue; ``overflowed`` once an event had to be dropped for lack of room."""

    def __init__(self, maxsize: int = 0) -> None:
        super().__init__(maxsize)
        self.overflowed = False


class EventBus:
    """This process's subscribers per session, and its link to the other processes' buses."""

    def __init__(self, relay: EventRelay | None = None) -> None:
        self._subscribers: dict[str, list[Subscriber]] = {}
        self._lock = threading.Lock()
        self._relay = relay or LocalRelay()
        self._relay.start(self._deliver)

    def use_relay(self, relay: EventRelay) -> None:
        """Exchange events with other processes through ``relay`` from now on (the old one stops)."""
        relay.start(self._deliver)
        with self._lock:
            old, self._relay = self._relay, relay
        old.stop()

    def close(self) -> None:
        """Stop exchanging events with other processes."""
        self._relay.stop()

    def subscribe(self, session_id: str, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback`` for every event of ``session_id``; returns the function that stops it."""
        with self._lock:
            self._subscribers.setdefault(session_id, []).append(callback)

        def unsubscribe() -> None:
            with self._lock:
                callbacks = self._subscribers.get(session_id, [])
                if callback in callbacks:
                    callbacks.remove(callback)
                if not callbacks:
                    self._subscribers.pop(session_id, None)

        return unsubscribe

    def subscribe_queue(
        self, session_id: str, loop: asyncio.AbstractEventLoop | None = None, maxsize: int = 0
    ) -> tuple[EventQueue, Callable[[], None]]:
        """An asyncio queue on ``loop`` (the running one by default) that receives the events. With
        ``maxsize``, events past it are dropped and the queue is marked ``overflowed`` (a reader too
        slow to keep up, such as a script that stopped reading its socket, is then let go)."""
        loop = loop or asyncio.get_running_loop()
        queue = EventQueue(maxsize)

        def put(event: Event) -> None:
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                queue.overflowed = True

        def forward(event: Event) -> None:
            loop.call_soon_threadsafe(put, event)

        return queue, self.subscribe(session_id, forward)

    def publish(self, event: Event) -> None:
        """Deliver ``event`` to this process's subscribers of its session, and to other processes'."""
        self._deliver(event)
        self._relay.send(event)

    def _deliver(self, event: Event) -> None:
        with self._lock:
            callbacks = list(self._subscribers.get(event.session_id, ()))
        for callback in callbacks:
            try:
                callback(event)
            except Exception:  # one broken subscriber must not stop the others
                log.exception("event subscriber failed for a %s event", event.kind)

    def subscriber_count(self, session_id: str) -> int:
        with self._lock:
            return len(self._subscribers.get(session_id, ()))


bus = EventBus()
