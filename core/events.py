"""Per-session change notifications: image added, image removed, session cleared, progress.

Publishers (the service layer, feature runs) call ``publish`` from any thread. Subscribers get
only their own session's events: either a plain callback (run in the publisher's thread) or an
asyncio queue fed through its loop, which is what the UI and WebSocket clients use.

In redis mode (``share_through``) every event also goes to one Redis pub/sub channel, and a
listener thread hands the events other processes published to this process's subscribers, so a
tab on one process sees, live, what a script pushed through another. Delivery across processes
is best effort: while Redis is away, remote events are lost (the page lists again on reload).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from core.sessions import is_session_id

log = logging.getLogger(__name__)

IMAGE_ADDED = "image_added"
IMAGE_REMOVED = "image_removed"
SESSION_CLEARED = "session_cleared"
PROGRESS = "progress"

ANNOTATION_CHANGED = "annotation_changed"  # data: image_id, annotations (the public form), by
PRESENCE_CHANGED = "presence_changed"  # data: members (the workspace's own, public form)
KINDS = (IMAGE_ADDED, IMAGE_REMOVED, SESSION_CLEARED, PROGRESS, ANNOTATION_CHANGED, PRESENCE_CHANGED)

CHANNEL = "darkroom:events"
LISTEN_POLL_SECONDS = 1.0  # how often the listener looks up from Redis to notice it should stop
RECONNECT_SECONDS = 1.0  # pause before the listener tries Redis again


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


class _RedisRelay:
    """Carries events between processes through one Redis channel. Each message names the process
    that sent it, so a process never delivers its own events twice."""

    def __init__(self, client: Any, deliver: Callable[[Event], None]) -> None:
        self.client = client
        self.deliver = deliver
        self.origin = uuid.uuid4().hex
        self.stopped = threading.Event()
        self.listening = threading.Event()
        self.thread = threading.Thread(target=self._listen, name="darkroom-event-relay", daemon=True)
        self.thread.start()

    def send(self, event: Event) -> None:
        message = json.dumps(
            {"origin": self.origin, "kind": event.kind, "session": event.session_id, "data": event.data}
        )
        try:
            self.client.publish(CHANNEL, message)
        except Exception as exc:  # noqa: BLE001  the change itself happened; only other processes miss it
            log.warning("could not relay a %s event to other processes (%s)", event.kind, type(exc).__name__)

    def _receive(self, raw: bytes) -> None:
        try:
            message = json.loads(raw)
            if message["origin"] == self.origin:
                return
            kind, session_id, data = message["kind"], message["session"], message["data"]
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a malformed message on %s", CHANNEL)
            return
        if kind in KINDS and is_session_id(session_id) and isinstance(data, dict):
            self.deliver(Event(kind, session_id, data))

    def _listen(self) -> None:
        failing = False
        while not self.stopped.is_set():
            pubsub = self.client.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(CHANNEL)
                self.listening.set()
                if failing:
                    log.warning("relaying events through Redis again")
                    failing = False
                while not self.stopped.is_set():
                    message = pubsub.get_message(timeout=LISTEN_POLL_SECONDS)
                    if message is not None and message.get("type") == "message":
                        self._receive(message["data"])
            except Exception as exc:  # noqa: BLE001  Redis went away: wait, then subscribe again
                self.listening.clear()
                if not failing:
                    log.warning("lost the event channel to Redis (%s); retrying", type(exc).__name__)
                    failing = True
                self.stopped.wait(RECONNECT_SECONDS)
            finally:
                pubsub.close()

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=LISTEN_POLL_SECONDS * 5)


class EventBus:
    def __init__(self) -> None:
        self._subscribers: dict[str, list[Subscriber]] = {}
        self._lock = threading.Lock()
        self._relay: _RedisRelay | None = None

    def share_through(self, client: Any | None) -> None:
        """Also exchange events with other processes through ``client`` (a ``redis.Redis``), or
        stop doing so (None)."""
        relay = _RedisRelay(client, self._deliver) if client is not None else None
        with self._lock:
            old, self._relay = self._relay, relay
        if old is not None:
            old.stop()

    def wait_until_shared(self, timeout: float) -> bool:
        """True once the relay listens to Redis (or when there is no relay)."""
        relay = self._relay
        return relay is None or relay.listening.wait(timeout)

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
        relay = self._relay
        if relay is not None:
            relay.send(event)

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
