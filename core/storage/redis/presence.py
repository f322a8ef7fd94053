"""The presence mirror of redis mode: one hash per session, member id -> the entry as JSON. The hash
itself expires a while after its last write, so the members of processes that all died go too."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence

from core.presence import LEASE_SECONDS, SCRIPT_SEEN_SECONDS
from core.storage.base import PresenceEntry, PresenceMirror, is_image_id
from core.storage.redis.client import KEY_PREFIX, Client

log = logging.getLogger(__name__)

PRESENCE_KEY = KEY_PREFIX + "presence:"  # + session id: a hash of member id -> JSON
KEY_SECONDS = int(LEASE_SECONDS + SCRIPT_SEEN_SECONDS)  # outlives the longest entry written


def _entry(raw: bytes | str) -> PresenceEntry | None:
    """An entry as stored, or None for one that cannot be read."""
    try:
        fields = json.loads(raw)
        return PresenceEntry(
            str(fields["id"]),
            str(fields["name"]),
            str(fields["colour"]),
            str(fields["kind"]),
            float(fields["joined"]),
            float(fields["until"]),
            fields["viewing"] if is_image_id(fields.get("viewing")) else None,
        )
    except (ValueError, TypeError, KeyError):
        return None


class RedisPresenceMirror(PresenceMirror):
    """Presence entries in Redis, seen by every process. Best effort: while Redis is away, writes
    are dropped and reads are None (each process then lists its own members)."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def write(self, session_id: str, entries: Sequence[PresenceEntry]) -> None:
        key = PRESENCE_KEY + session_id
        stored = {e.id: json.dumps({**e.to_public(), "joined": e.joined, "until": e.until}) for e in entries}
        try:
            pipe = self.client.pipeline()
            pipe.hset(key, mapping=stored)
            pipe.expire(key, KEY_SECONDS)
            pipe.execute()
        except Exception as exc:  # noqa: BLE001  presence is best effort while Redis is away
            log.warning("could not share presence through Redis (%s)", type(exc).__name__)

    def remove(self, session_id: str, member_ids: Sequence[str]) -> None:
        try:
            self.client.hdel(PRESENCE_KEY + session_id, *member_ids)
        except Exception as exc:  # noqa: BLE001
            log.warning("could not share presence through Redis (%s)", type(exc).__name__)

    def read(self, session_id: str) -> list[PresenceEntry] | None:
        try:
            raw = self.client.hgetall(PRESENCE_KEY + session_id)
        except Exception as exc:  # noqa: BLE001
            log.warning("could not read presence from Redis (%s)", type(exc).__name__)
            return None
        return [entry for value in raw.values() if (entry := _entry(value)) is not None]

    def prune(self, session_id: str, now: float) -> bool:
        """Also removes entries that cannot be read."""
        key = PRESENCE_KEY + session_id
        try:
            raw = self.client.hgetall(key)
            expired = [field for field, value in raw.items() if (entry := _entry(value)) is None or entry.until <= now]
            return bool(expired) and self.client.hdel(key, *expired) > 0
        except Exception as exc:  # noqa: BLE001
            log.warning("could not prune presence in Redis (%s)", type(exc).__name__)
            return False
