"""The in-process adapters of the event relay, the invite book and the presence mirror: what every
mode but redis uses, where this process is the only one. Each keeps the contract of
``core.storage.base`` as its Redis adapter does, so the same contract tests run on both; several
buses or presences of one process that share an adapter act like processes sharing one Redis."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from core.storage.base import EventRelay, InviteBook, PresenceEntry, PresenceMirror

if TYPE_CHECKING:
    from core.events import Event
    from core.invites import Invite


class LocalChannel:
    """What the local relays of one process send through: each event goes to every relay on it
    but the sender."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._relays: dict[LocalRelay, Callable[[Event], None]] = {}

    def join(self, relay: LocalRelay, deliver: Callable[[Event], None]) -> None:
        with self._lock:
            self._relays[relay] = deliver

    def leave(self, relay: LocalRelay) -> None:
        with self._lock:
            self._relays.pop(relay, None)

    def send(self, sender: LocalRelay, event: Event) -> None:
        with self._lock:
            others = [deliver for relay, deliver in self._relays.items() if relay is not sender]
        for deliver in others:
            deliver(event)


class LocalRelay(EventRelay):
    """A relay on an in-process channel (its own by default: then there is nobody to relay to)."""

    def __init__(self, channel: LocalChannel | None = None) -> None:
        self.channel = channel or LocalChannel()

    def start(self, deliver: Callable[[Event], None]) -> None:
        self.channel.join(self, deliver)

    def send(self, event: Event) -> None:
        self.channel.send(self, event)

    def wait_until_listening(self, timeout: float) -> bool:
        return True

    def stop(self) -> None:
        self.channel.leave(self)


class LocalInviteBook(InviteBook):
    """Invites in this process's memory. Tokens are kept in creation order, so the expired ones
    leave from the front, and indexed by session: no call scans every session's invites."""

    def __init__(self) -> None:
        self._invites: dict[str, Invite] = {}  # by token, oldest first
        self._by_session: dict[str, dict[str, None]] = {}  # session -> its tokens
        self._lock = threading.Lock()

    def _prune(self, now: float) -> None:
        """Drop expired invites from the front (amortised O(1)). One made with a shorter time to
        live behind a longer one waits for it, for its session's next call, or for its session's end;
        it never resolves."""
        while self._invites:
            token, invite = next(iter(self._invites.items()))
            if invite.expires_at > now:
                return
            self._remove(token)

    def _remove(self, token: str) -> None:
        invite = self._invites.pop(token)
        tokens = self._by_session[invite.session_id]
        del tokens[token]
        if not tokens:
            del self._by_session[invite.session_id]

    def _live(self, session_id: str, now: float) -> list[Invite]:
        """``session_id``'s unexpired invites, oldest first. Its expired ones are dropped here:
        short-lived invites made behind a long-lived one cannot pile up, so a session holds at most
        one more than the most it may have active after any add."""
        tokens = self._by_session.get(session_id, {})
        for token in [t for t in tokens if self._invites[t].expires_at <= now]:
            self._remove(token)
        return [self._invites[token] for token in self._by_session.get(session_id, ())]

    def add(self, invite: Invite, most_active: int, now: float) -> bool:
        with self._lock:
            self._prune(now)
            if len(self._live(invite.session_id, now)) >= most_active:
                return False
            self._invites[invite.token] = invite
            self._by_session.setdefault(invite.session_id, {})[invite.token] = None
            return True

    def find(self, token: str) -> Invite | None:
        with self._lock:
            return self._invites.get(token)

    def live(self, session_id: str, now: float) -> list[Invite]:
        with self._lock:
            self._prune(now)
            return self._live(session_id, now)

    def remove(self, session_id: str, token: str) -> bool:
        with self._lock:
            invite = self._invites.get(token)
            if invite is None or invite.session_id != session_id:
                return False
            self._remove(token)
            return True

    def remove_all(self, session_id: str) -> int:
        with self._lock:
            tokens = self._by_session.pop(session_id, {})
            for token in tokens:
                del self._invites[token]
            return len(tokens)

    def held(self) -> int:
        """Invites kept, expired ones not yet dropped included (tests)."""
        with self._lock:
            return len(self._invites)


class LocalPresenceMirror(PresenceMirror):
    """Presence entries in this process's memory: per session, by member id."""

    def __init__(self) -> None:
        self._sessions: dict[str, dict[str, PresenceEntry]] = {}
        self._lock = threading.Lock()

    def write(self, session_id: str, entries: Sequence[PresenceEntry]) -> None:
        with self._lock:
            self._sessions.setdefault(session_id, {}).update((entry.id, entry) for entry in entries)

    def remove(self, session_id: str, member_ids: Sequence[str]) -> None:
        with self._lock:
            self._drop(session_id, member_ids)

    def read(self, session_id: str) -> list[PresenceEntry] | None:
        with self._lock:
            return list(self._sessions.get(session_id, {}).values())

    def prune(self, session_id: str, now: float) -> bool:
        with self._lock:
            entries = self._sessions.get(session_id, {})
            return self._drop(session_id, [e.id for e in entries.values() if e.until <= now]) > 0

    def _drop(self, session_id: str, member_ids: Sequence[str]) -> int:
        # Called with the lock held; a session without entries is forgotten.
        entries = self._sessions.get(session_id)
        if entries is None:
            return 0
        dropped = sum(entries.pop(member_id, None) is not None for member_id in member_ids)
        if not entries:
            del self._sessions[session_id]
        return dropped
