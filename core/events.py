"""Per-session change notifications: image added, image removed, session cleared, progress.

Publishers (the service layer, feature runs) call ``publish`` from any thread. Subscribers get
only their own session's events: either a plain callback (run in the publisher's thread) or an
asyncio queue fed through its loop, which is what the UI and WebSocket clients use.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

IMAGE_ADDED = "image_added"
IMAGE_REMOVED = "image_removed"
SESSION_CLEARED = "session_cleared"
PROGRESS = "progress"


@dataclass(frozen=True)
class Event:
    kind: str
    session_id: str
    data: dict[str, Any] = field(default_factory=dict)


Subscriber = Callable[[Event], None]


class EventBus:
    def __init__(self) -> None:
        self._subscribers: dict[str, list[Subscriber]] = {}
        self._lock = threading.Lock()

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
        self, session_id: str, loop: asyncio.AbstractEventLoop | None = None
    ) -> tuple[asyncio.Queue[Event], Callable[[], None]]:
        """An asyncio queue on ``loop`` (the running one by default) that receives the events."""
        loop = loop or asyncio.get_running_loop()
        queue: asyncio.Queue[Event] = asyncio.Queue()

        def forward(event: Event) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, event)

        return queue, self.subscribe(session_id, forward)

    def publish(self, event: Event) -> None:
        with self._lock:
            callbacks = list(self._subscribers.get(event.session_id, ()))
        for callback in callbacks:
            try:
                callback(event)
            except Exception:  # noqa: BLE001  one broken subscriber must not stop the others
                log.exception("event subscriber failed for a %s event", event.kind)

    def subscriber_count(self, session_id: str) -> int:
        with self._lock:
            return len(self._subscribers.get(session_id, ()))


bus = EventBus()
