"""Who may start a session: a share of the live sessions and of their creation rate per client address.

Any well-formed UUID4 is a session (scripts may invent their own ids, as the seed's API promises), so
sessions are admitted when they first hold something or are first kept alive, not when their id is
made. Without shares, one address could fill ``DARKROOM_MAX_SESSIONS`` with one-image uploads and
lock every newcomer out. So, per client address (``core.clients``):

* at most ``DARKROOM_CLIENT_SESSIONS`` live sessions, and
* at most ``DARKROOM_CLIENT_SESSIONS_PER_MINUTE`` new ones per minute (a token bucket),

each refused with 503 and ``Retry-After``. When the server's cap is still reached (many addresses),
a newcomer never waits for another address's sessions: a session made and never used gives way
first, else the least recently started session of the address holding the most sessions, unless
that address is the newcomer's own (then the newcomer gets the 503).

The ledger knows the sessions this process admitted; in Redis mode each process keeps its own, so
the shares hold per process. Its size is bounded by the live sessions and the addresses they came
from.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from core.errors import ServiceBusy

SECONDS_PER_MINUTE = 60.0
SESSION_SHARE_RETRY_SECONDS = 30
# A bucket that is full again and has no live session is forgotten once this many are kept.
MAX_IDLE_BUCKETS = 10_000


@dataclass
class _Bucket:
    tokens: float
    updated: float


class SessionLedger:
    """The live sessions each client address started, and each address's rate of new ones."""

    def __init__(self, per_client: int, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_client = per_client
        self.per_minute = per_minute
        self._clock = clock
        self._lock = threading.Lock()
        self._owner: dict[str, str] = {}  # session id -> the address that started it
        self._sessions: dict[str, OrderedDict[str, None]] = {}  # address -> its sessions, oldest first
        self._buckets: dict[str, _Bucket] = {}

    def _refill(self, address: str, now: float) -> _Bucket:
        bucket = self._buckets.get(address)
        if bucket is None:
            if len(self._buckets) >= MAX_IDLE_BUCKETS:
                self._drop_idle_buckets(now)
            bucket = self._buckets[address] = _Bucket(float(self.per_minute), now)
        rate = self.per_minute / SECONDS_PER_MINUTE
        bucket.tokens = min(float(self.per_minute), bucket.tokens + (now - bucket.updated) * rate)
        bucket.updated = now
        return bucket

    def _drop_idle_buckets(self, now: float) -> None:
        rate = self.per_minute / SECONDS_PER_MINUTE
        for address, bucket in list(self._buckets.items()):
            full = bucket.tokens + (now - bucket.updated) * rate >= self.per_minute
            if full and address not in self._sessions:
                del self._buckets[address]

    def check(self, address: str) -> None:
        """Refuse ``address`` one more session when it holds its share or starts them too fast."""
        with self._lock:
            held = len(self._sessions.get(address, ()))
            if held >= self.per_client:
                raise ServiceBusy(
                    f"your address already holds {held} workspaces, the most one address may; "
                    "reuse one of them, or clear some (DELETE /api/session) and try again",
                    retry_after=SESSION_SHARE_RETRY_SECONDS,
                )
            bucket = self._refill(address, self._clock())
            if bucket.tokens < 1:
                wait = math.ceil((1 - bucket.tokens) * SECONDS_PER_MINUTE / max(self.per_minute, 1))
                raise ServiceBusy(
                    f"your address starts new workspaces faster than {self.per_minute} a minute; try again in {wait} s",
                    retry_after=max(1, wait),
                )

    def record(self, session_id: str, address: str) -> None:
        """``address`` started ``session_id`` (after ``check`` let it)."""
        with self._lock:
            if session_id in self._owner:
                return
            self._owner[session_id] = address
            self._sessions.setdefault(address, OrderedDict())[session_id] = None
            self._refill(address, self._clock()).tokens -= 1

    def forget(self, session_id: str) -> None:
        """``session_id`` is gone (cleared, expired, evicted)."""
        with self._lock:
            address = self._owner.pop(session_id, None)
            sessions = self._sessions.get(address) if address is not None else None
            if sessions is not None:
                sessions.pop(session_id, None)
                if not sessions:
                    del self._sessions[address]

    def give_way(self, newcomer: str) -> str | None:
        """The session that gives way to ``newcomer`` at the server's cap: the oldest of the address
        holding the most sessions, if that is another address; None otherwise."""
        with self._lock:
            if not self._sessions:
                return None
            address = max(self._sessions, key=lambda a: len(self._sessions[a]))
            if address == newcomer or len(self._sessions[address]) <= len(self._sessions.get(newcomer, ())):
                return None
            return next(iter(self._sessions[address]))

    def held(self, address: str) -> int:
        with self._lock:
            return len(self._sessions.get(address, ()))
