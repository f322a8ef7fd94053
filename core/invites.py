"""Invite links: the only way two browser tabs share a workspace.

An invite is an unguessable token that stands for a session for a limited time. Whoever opens the
link joins that session; the session id itself never appears in a URL. Tokens expire (default
30 minutes), can be revoked one by one by the session that made them, and all go when the
session expires. Kept in RAM only.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass

from core.errors import BadRequest

MAX_ACTIVE_PER_SESSION = 20


@dataclass(frozen=True)
class Invite:
    token: str
    session_id: str
    created_at: float
    expires_at: float

    def seconds_left(self, now: float | None = None) -> float:
        return max(0.0, self.expires_at - (time.time() if now is None else now))


class InviteBook:
    def __init__(self) -> None:
        self._invites: dict[str, Invite] = {}
        self._lock = threading.Lock()

    def _prune(self, now: float) -> None:
        for token in [t for t, invite in self._invites.items() if invite.expires_at <= now]:
            del self._invites[token]

    def create(self, session_id: str, ttl_seconds: float, now: float | None = None) -> Invite:
        now = time.time() if now is None else now
        with self._lock:
            self._prune(now)
            if sum(1 for i in self._invites.values() if i.session_id == session_id) >= MAX_ACTIVE_PER_SESSION:
                raise BadRequest(
                    f"this workspace already has {MAX_ACTIVE_PER_SESSION} active invite links; revoke one first"
                )
            invite = Invite(secrets.token_urlsafe(24), session_id, now, now + ttl_seconds)
            self._invites[invite.token] = invite
            return invite

    def resolve(self, token: str, now: float | None = None) -> str | None:
        """The session an invite token stands for, or None when unknown, expired or revoked."""
        now = time.time() if now is None else now
        with self._lock:
            invite = self._invites.get(token)
            if invite is None or invite.expires_at <= now:
                return None
            return invite.session_id

    def active(self, session_id: str, now: float | None = None) -> list[Invite]:
        now = time.time() if now is None else now
        with self._lock:
            self._prune(now)
            return sorted((i for i in self._invites.values() if i.session_id == session_id), key=lambda i: i.created_at)

    def revoke(self, session_id: str, token: str) -> bool:
        """Revoke one of ``session_id``'s invites; another session's token is left alone."""
        with self._lock:
            invite = self._invites.get(token)
            if invite is None or invite.session_id != session_id:
                return False
            del self._invites[token]
            return True

    def revoke_all(self, session_id: str) -> int:
        with self._lock:
            tokens = [t for t, i in self._invites.items() if i.session_id == session_id]
            for token in tokens:
                del self._invites[token]
            return len(tokens)


invites = InviteBook()
