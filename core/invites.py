"""Invite links: the only way two browser tabs share a workspace.

An invite is an unguessable token that stands for a session for a limited time. Whoever opens the
link joins that session; the session id itself never appears in a URL. Tokens expire (default
30 minutes), can be revoked one by one by the session that made them, and all go when the
session expires. Kept in RAM only, in the invite book ``core.storage.factory`` chooses
(``core.storage.base.InviteBook``): this process's memory, or in redis mode the shared RAM-only
Redis, so that a link made on one process opens on any other.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

from core.errors import BadRequest
from core.storage.base import InviteBook
from core.storage.local import LocalInviteBook

MAX_ACTIVE_PER_SESSION = 20
MAX_TOKEN_CHARS = 64  # tokens are 32 characters; anything longer is not one of ours
TOKEN_BYTES = 24


@dataclass(frozen=True)
class Invite:
    token: str
    session_id: str
    created_at: float
    expires_at: float

    def seconds_left(self, now: float | None = None) -> float:
        return max(0.0, self.expires_at - (time.time() if now is None else now))


def _is_token(token: str) -> bool:
    return bool(token) and len(token) <= MAX_TOKEN_CHARS


class Invites:
    """Makes, resolves and revokes invites, kept in an invite book (this process's memory by default)."""

    def __init__(self, book: InviteBook | None = None) -> None:
        self._book = book or LocalInviteBook()

    def use_book(self, book: InviteBook) -> None:
        """Keep invites in ``book`` from now on (those in the old one are gone)."""
        self._book = book

    def create(self, session_id: str, ttl_seconds: float, now: float | None = None) -> Invite:
        """A new invite to ``session_id`` for ``ttl_seconds``; BadRequest when the session already
        has MAX_ACTIVE_PER_SESSION active ones."""
        now = time.time() if now is None else now
        invite = Invite(secrets.token_urlsafe(TOKEN_BYTES), session_id, now, now + ttl_seconds)
        if not self._book.add(invite, MAX_ACTIVE_PER_SESSION, now):
            raise BadRequest(
                f"this workspace already has {MAX_ACTIVE_PER_SESSION} active invite links; revoke one first"
            )
        return invite

    def resolve(self, token: str, now: float | None = None) -> str | None:
        """The session an invite token stands for, or None when unknown, expired or revoked."""
        now = time.time() if now is None else now
        invite = self._book.find(token) if _is_token(token) else None
        return invite.session_id if invite is not None and invite.expires_at > now else None

    def active(self, session_id: str, now: float | None = None) -> list[Invite]:
        """The session's unexpired invites, oldest first."""
        now = time.time() if now is None else now
        return sorted(self._book.live(session_id, now), key=lambda invite: invite.created_at)

    def revoke(self, session_id: str, token: str) -> bool:
        """Revoke one of ``session_id``'s invites; another session's token is left alone."""
        return _is_token(token) and self._book.remove(session_id, token)

    def revoke_all(self, session_id: str) -> int:
        return self._book.remove_all(session_id)


invites = Invites()
