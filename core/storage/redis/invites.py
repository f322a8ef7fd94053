"""The invite book of redis mode: each invite a hash with a TTL (Redis forgets it by itself),
indexed per session by a sorted set of tokens by expiry. The scripts are ``lua/invite_*.lua``."""

from __future__ import annotations

import math
import time

from core.invites import Invite
from core.storage.base import InviteBook
from core.storage.redis.client import KEY_PREFIX, Client, guarded, lua

INVITE_KEY = KEY_PREFIX + "invite:"  # + token: hash of session, created, expires
INDEX_KEY = KEY_PREFIX + "invites:"  # + session id: sorted set of tokens by expiry


class RedisInviteBook(InviteBook):
    """Invites in Redis, seen by every process. Failures are 503 (``client.redis_errors``)."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.create_script = client.register_script(lua("invite_create"))
        self.revoke_script = client.register_script(lua("invite_revoke"))
        self.revoke_all_script = client.register_script(lua("invite_revoke_all"))

    @guarded
    def add(self, invite: Invite, most_active: int, now: float) -> bool:
        keep_seconds = max(1, math.ceil(invite.expires_at - time.time()))  # Redis forgets it by itself
        args = [invite.token, invite.session_id, repr(invite.created_at), repr(invite.expires_at), repr(now)]
        made = self.create_script(
            keys=[INDEX_KEY + invite.session_id], args=[*args, keep_seconds, most_active, INVITE_KEY]
        )
        return bool(made)

    def _load(self, tokens: list[str]) -> list[Invite]:
        pipe = self.client.pipeline(transaction=False)
        for token in tokens:
            pipe.hmget(INVITE_KEY + token, "session", "created", "expires")
        found = []
        for token, (session, created, expires) in zip(tokens, pipe.execute(), strict=True):
            if session is not None:
                found.append(Invite(token, session.decode(), float(created), float(expires)))
        return found

    @guarded
    def find(self, token: str) -> Invite | None:
        found = self._load([token])
        return found[0] if found else None

    @guarded
    def live(self, session_id: str, now: float) -> list[Invite]:
        raw = self.client.zrangebyscore(INDEX_KEY + session_id, f"({now!r}", "+inf")
        return self._load([t.decode() for t in raw])

    @guarded
    def remove(self, session_id: str, token: str) -> bool:
        return bool(self.revoke_script(keys=[INDEX_KEY + session_id], args=[token, session_id, INVITE_KEY]))

    @guarded
    def remove_all(self, session_id: str) -> int:
        return int(self.revoke_all_script(keys=[INDEX_KEY + session_id], args=[INVITE_KEY]))
