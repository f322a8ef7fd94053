"""The event relay of redis mode: every process publishes its events on one Redis pub/sub channel,
and a listener thread hands the ones the others published to this process's bus."""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Callable

from core.events import KINDS, Event
from core.sessions import is_session_id
from core.storage.base import EventRelay
from core.storage.redis.client import KEY_PREFIX, Client

log = logging.getLogger(__name__)

CHANNEL = KEY_PREFIX + "events"
LISTEN_POLL_SECONDS = 1.0  # how often the listener looks up from Redis to notice it should stop
RECONNECT_SECONDS = 1.0  # pause before the listener tries Redis again


class RedisRelay(EventRelay):
    """Carries events between processes through one Redis channel. Each message names the process
    that sent it, so a process never delivers its own events twice."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.origin = uuid.uuid4().hex
        self.stopped = threading.Event()
        self.listening = threading.Event()
        self.thread: threading.Thread | None = None
        self.deliver: Callable[[Event], None] = lambda event: None  # until a bus starts it

    def start(self, deliver: Callable[[Event], None]) -> None:
        self.deliver = deliver
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

    def wait_until_listening(self, timeout: float) -> bool:
        return self.listening.wait(timeout)

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
        if self.thread is not None:
            self.thread.join(timeout=LISTEN_POLL_SECONDS * 5)
