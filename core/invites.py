"""Invite links: the only way two browser tabs share a workspace.

An invite is an unguessable token that stands for a session for a limited time. Whoever opens the
link joins that session; the session id itself never appears in a URL. Tokens expire (default
30 minutes), can be revoked one by one by the session that made them, and all go when the
session expires. Kept in RAM only: this process's memory, or in redis mode (``share_through``)
the shared RAM-only Redis, so that a link made on one process opens on any other.
"""

from __future__ import annotations

import math
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from core.errors import BadRequest

MAX_ACTIVE_PER_SESSION = 20
MAX_TOKEN_CHARS = 64  # tokens are 32 characters; anything longer is not one of ours
INVITE_KEY = "darkroom:invite:"  # + token: hash of session, created, expires
INDEX_KEY = "darkroom:invites:"  # + session id: sorted set of tokens by expiry

T = TypeVar("T")


@dataclass(frozen=True)
class Invite:
    token: str
    session_id: str
    created_at: float
    expires_at: float

    def seconds_left(self, now: float | None = None) -> float:
        return max(0.0, self.expires_at - (time.time() if now is None else now))


def _too_many() -> BadRequest:
    return BadRequest(f"this workspace already has {MAX_ACTIVE_PER_SESSION} active invite links; revoke one first")


# KEYS: the session's index; ARGV: token, session, created, expires, now, ttl seconds, most active
_CREATE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[5])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[7]) then return 0 end
local invite = ARGV[8] .. ARGV[1]
redis.call('HSET', invite, 'session', ARGV[2], 'created', ARGV[3], 'expires', ARGV[4])
redis.call('EXPIRE', invite, ARGV[6])
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[1])
if redis.call('TTL', KEYS[1]) < tonumber(ARGV[6]) then redis.call('EXPIRE', KEYS[1], ARGV[6]) end
return 1
"""
# KEYS: the session's index; ARGV: token, session, invite key prefix
_REVOKE = """
local invite = ARGV[3] .. ARGV[1]
if redis.call('HGET', invite, 'session') ~= ARGV[2] then return 0 end
redis.call('DEL', invite)
redis.call('ZREM', KEYS[1], ARGV[1])
return 1
"""
# KEYS: the session's index; ARGV: invite key prefix
_REVOKE_ALL = """
local tokens = redis.call('ZRANGE', KEYS[1], 0, -1)
for _, token in ipairs(tokens) do redis.call('DEL', ARGV[1] .. token) end
redis.call('DEL', KEYS[1])
return #tokens
"""


class _RedisInvites:
    """The invite book in Redis: each invite a hash with a TTL, indexed per session."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.create_script = client.register_script(_CREATE)
        self.revoke_script = client.register_script(_REVOKE)
        self.revoke_all_script = client.register_script(_REVOKE_ALL)

    @staticmethod
    def guarded(call: Callable[[], T]) -> T:
        from core.storage.redis import redis_errors  # redis-py is imported only in redis mode

        with redis_errors():
            return call()

    def create(self, session_id: str, ttl_seconds: float, now: float) -> Invite:
        invite = Invite(secrets.token_urlsafe(24), session_id, now, now + ttl_seconds)
        keep_seconds = max(1, math.ceil(invite.expires_at - time.time()))  # Redis forgets it by itself
        args = [invite.token, session_id, repr(now), repr(invite.expires_at), repr(now), keep_seconds]
        made = self.guarded(
            lambda: self.create_script(keys=[INDEX_KEY + session_id], args=[*args, MAX_ACTIVE_PER_SESSION, INVITE_KEY])
        )
        if not made:
            raise _too_many()
        return invite

    def _load(self, tokens: list[str]) -> list[Invite]:
        pipe = self.client.pipeline(transaction=False)
        for token in tokens:
            pipe.hmget(INVITE_KEY + token, "session", "created", "expires")
        found = []
        for token, (session, created, expires) in zip(tokens, self.guarded(pipe.execute), strict=True):
            if session is not None:
                found.append(Invite(token, session.decode(), float(created), float(expires)))
        return found

    def resolve(self, token: str, now: float) -> str | None:
        if not token or len(token) > MAX_TOKEN_CHARS:
            return None
        found = self._load([token])
        return found[0].session_id if found and found[0].expires_at > now else None

    def active(self, session_id: str, now: float) -> list[Invite]:
        raw = self.guarded(lambda: self.client.zrangebyscore(INDEX_KEY + session_id, f"({now!r}", "+inf"))
        return sorted(self._load([t.decode() for t in raw]), key=lambda i: i.created_at)

    def revoke(self, session_id: str, token: str) -> bool:
        if not token or len(token) > MAX_TOKEN_CHARS:
            return False
        return bool(
            self.guarded(
                lambda: self.revoke_script(keys=[INDEX_KEY + session_id], args=[token, session_id, INVITE_KEY])
            )
        )

    def revoke_all(self, session_id: str) -> int:
        return int(self.guarded(lambda: self.revoke_all_script(keys=[INDEX_KEY + session_id], args=[INVITE_KEY])))


class InviteBook:
    """Invites in this process's memory (or Redis, ``share_through``). Every call costs O(the
    session's own invites), never a scan of every session's: tokens are kept in creation order,
    so the expired ones leave from the front, and indexed by session."""

    def __init__(self) -> None:
        self._invites: dict[str, Invite] = {}  # by token, oldest first
        self._by_session: dict[str, dict[str, None]] = {}  # session -> its tokens
        self._lock = threading.Lock()
        self._shared: _RedisInvites | None = None

    def share_through(self, client: Any | None) -> None:
        """Keep invites in Redis through ``client`` (a ``redis.Redis``) so that every process sees
        them, or in this process's memory again (None)."""
        self._shared = _RedisInvites(client) if client is not None else None

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
        """``session_id``'s unexpired invites, oldest first (at most MAX_ACTIVE_PER_SESSION). Its
        expired ones are dropped here: short-lived invites made behind a long-lived one cannot pile
        up, so a session holds at most MAX_ACTIVE_PER_SESSION + 1 invites after any create."""
        tokens = self._by_session.get(session_id, {})
        for token in [t for t in tokens if self._invites[t].expires_at <= now]:
            self._remove(token)
        return [self._invites[token] for token in self._by_session.get(session_id, ())]

    def create(self, session_id: str, ttl_seconds: float, now: float | None = None) -> Invite:
        now = time.time() if now is None else now
        if self._shared is not None:
            return self._shared.create(session_id, ttl_seconds, now)
        with self._lock:
            self._prune(now)
            if len(self._live(session_id, now)) >= MAX_ACTIVE_PER_SESSION:
                raise _too_many()
            invite = Invite(secrets.token_urlsafe(24), session_id, now, now + ttl_seconds)
            self._invites[invite.token] = invite
            self._by_session.setdefault(session_id, {})[invite.token] = None
            return invite

    def resolve(self, token: str, now: float | None = None) -> str | None:
        """The session an invite token stands for, or None when unknown, expired or revoked."""
        now = time.time() if now is None else now
        if self._shared is not None:
            return self._shared.resolve(token, now)
        with self._lock:
            invite = self._invites.get(token)
            if invite is None or invite.expires_at <= now:
                return None
            return invite.session_id

    def active(self, session_id: str, now: float | None = None) -> list[Invite]:
        now = time.time() if now is None else now
        if self._shared is not None:
            return self._shared.active(session_id, now)
        with self._lock:
            self._prune(now)
            return sorted(self._live(session_id, now), key=lambda i: i.created_at)

    def revoke(self, session_id: str, token: str) -> bool:
        """Revoke one of ``session_id``'s invites; another session's token is left alone."""
        if self._shared is not None:
            return self._shared.revoke(session_id, token)
        with self._lock:
            invite = self._invites.get(token)
            if invite is None or invite.session_id != session_id:
                return False
            self._remove(token)
            return True

    def revoke_all(self, session_id: str) -> int:
        if self._shared is not None:
            return self._shared.revoke_all(session_id)
        with self._lock:
            tokens = self._by_session.pop(session_id, {})
            for token in tokens:
                del self._invites[token]
            return len(tokens)

    def held(self) -> int:
        """Invites this process keeps in memory, expired ones not yet dropped included (tests)."""
        with self._lock:
            return len(self._invites)


invites = InviteBook()
