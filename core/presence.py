"""Who is in a workspace: every open tab, plus every script connected over the WebSocket now or in
the last minute. Each member gets a generated name and colour ("Blue Heron") and can rename itself.

Presence is per session and only ever answered for the caller's own session: a member list, its
changes (``PRESENCE_CHANGED`` events to that session's subscribers only) and nothing else. No count
or name spans workspaces. It lives in the process's memory: it says who is connected to this
process, which is where a tab's socket is (sticky routing).
"""

from __future__ import annotations

import random
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

from core.annotations import clean_text
from core.errors import BadRequest, TooLarge
from core.events import PRESENCE_CHANGED, Event, bus

SCRIPT_SEEN_SECONDS = 60.0  # a script stays listed this long after its last WebSocket activity
MAX_MEMBERS = 100  # per workspace: tabs and scripts together
MAX_NAME_CHARS = 40
SWEEP_SECONDS = 1.0  # how often lingering scripts are checked while there are any

# Colour words with a colour that reads on white and on the dark header, and animals to pair them with.
COLOURS: tuple[tuple[str, str], ...] = (
    ("Blue", "#1e88e5"),
    ("Red", "#e53935"),
    ("Green", "#43a047"),
    ("Amber", "#ffb300"),
    ("Violet", "#8e24aa"),
    ("Teal", "#00897b"),
    ("Orange", "#fb8c00"),
    ("Pink", "#d81b60"),
    ("Indigo", "#3949ab"),
    ("Lime", "#7cb342"),
    ("Cyan", "#00acc1"),
    ("Brown", "#6d4c41"),
)
ANIMALS: tuple[str, ...] = (
    "Heron",
    "Fox",
    "Otter",
    "Lynx",
    "Owl",
    "Badger",
    "Wren",
    "Hare",
    "Seal",
    "Falcon",
    "Marten",
    "Crane",
    "Ibis",
    "Puffin",
    "Stoat",
    "Kestrel",
)

MemberKind = Literal["tab", "script"]


@dataclass
class Member:
    """One tab or script in a workspace. ``id`` is random and means nothing outside it."""

    id: str
    name: str
    colour: str
    kind: MemberKind
    last_seen: float
    connections: int = 1

    def to_public(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "colour": self.colour, "kind": self.kind}


def clean_name(raw: object) -> str:
    """A display name: control characters removed, spaces collapsed, 1-40 characters."""
    if not isinstance(raw, str):
        raise BadRequest("a name must be a string")
    name = " ".join(clean_text(raw).split())
    if not name:
        raise BadRequest("a name cannot be empty")
    if len(name) > MAX_NAME_CHARS:
        raise TooLarge(f"a name is at most {MAX_NAME_CHARS} characters")
    return name


class Presence:
    """Members per session. Thread-safe; changes are published to the session's event subscribers."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        publish: Callable[[Event], None] | None = None,
        sweep: bool = True,
    ) -> None:
        self.clock = clock
        self._publish = publish or bus.publish
        self._sessions: dict[str, dict[str, Member]] = {}
        self._lock = threading.Lock()
        self._sweep = sweep
        self._sweeper: threading.Thread | None = None

    # -- helpers (lock held) --
    def _new_member(self, members: dict[str, Member], kind: MemberKind, name: str | None) -> Member:
        taken = {m.name for m in members.values()}
        used_colours = {m.colour for m in members.values()}
        candidates = [(c, hexa, a) for c, hexa in COLOURS for a in ANIMALS if f"{c} {a}" not in taken]
        fresh = [x for x in candidates if x[1] not in used_colours] or candidates
        colour_word, colour, animal = random.choice(fresh) if fresh else (*random.choice(COLOURS), "Guest")
        return Member(
            id=secrets.token_urlsafe(9),
            name=name or f"{colour_word} {animal}",
            colour=colour,
            kind=kind,
            last_seen=self.clock(),
        )

    def _live(self, session_id: str, now: float) -> tuple[list[Member], bool]:
        """The session's members, dropping scripts gone for over a minute; and whether any went."""
        members = self._sessions.get(session_id, {})
        gone = [
            m.id
            for m in members.values()
            if m.kind == "script" and m.connections <= 0 and now - m.last_seen > SCRIPT_SEEN_SECONDS
        ]
        for member_id in gone:
            del members[member_id]
        if not members:
            self._sessions.pop(session_id, None)
        return list(members.values()), bool(gone)

    def _changed(self, session_id: str) -> None:
        with self._lock:
            members, _ = self._live(session_id, self.clock())
            public = [m.to_public() for m in members]
        self._publish(Event(PRESENCE_CHANGED, session_id, {"members": public}))

    # -- the API --
    def join(self, session_id: str, kind: MemberKind, member_id: str | None = None, name: str | None = None) -> Member:
        """Add a tab or script (or, given the ``member_id`` it had, bring it back under the same name).
        ``name``: a name it chose before (kept across a reload). Raises TooLarge when 100 are in."""
        clean = clean_name(name) if name is not None else None
        with self._lock:
            members = self._sessions.setdefault(session_id, {})
            member = members.get(member_id) if member_id else None
            if member is not None:
                member.connections += 1
                member.last_seen = self.clock()
                return member
            self._live(session_id, self.clock())
            members = self._sessions.setdefault(session_id, {})
            if len(members) >= MAX_MEMBERS:
                raise TooLarge(f"this workspace already has {MAX_MEMBERS} tabs and scripts in it")
            member = self._new_member(members, kind, clean)
            members[member.id] = member
        self._changed(session_id)
        return member

    def leave(self, session_id: str, member_id: str) -> None:
        """A tab closed (it goes at once) or a script's socket closed (it stays for a minute)."""
        with self._lock:
            member = self._sessions.get(session_id, {}).get(member_id)
            if member is None:
                return
            member.connections -= 1
            member.last_seen = self.clock()
            if member.connections > 0:
                return
            if member.kind == "tab":
                del self._sessions[session_id][member_id]
                if not self._sessions[session_id]:
                    del self._sessions[session_id]
            else:
                self._start_sweeper()
        self._changed(session_id)

    def seen(self, session_id: str, member_id: str) -> None:
        """The member did something (a script sent a message): it counts as present from now."""
        with self._lock:
            member = self._sessions.get(session_id, {}).get(member_id)
            if member is not None:
                member.last_seen = self.clock()

    def rename(self, session_id: str, member_id: str, name: object) -> Member:
        """Give the member a name of its choosing (BadRequest/TooLarge for a bad one)."""
        clean = clean_name(name)
        with self._lock:
            member = self._sessions.get(session_id, {}).get(member_id)
            if member is None:
                raise BadRequest("you are not in this workspace any more; reconnect first")
            member.name = clean
        self._changed(session_id)
        return member

    def member(self, session_id: str, member_id: str | None) -> Member | None:
        """The member with this id in this session (None for an unknown id or another session's)."""
        if not member_id:
            return None
        with self._lock:
            return self._sessions.get(session_id, {}).get(member_id)

    def members(self, session_id: str) -> list[Member]:
        """Who is in the workspace now, in the order they came."""
        with self._lock:
            members, went = self._live(session_id, self.clock())
        if went:
            self._changed(session_id)
        return members

    def forget_session(self, session_id: str) -> None:
        """The workspace was deleted: nobody is in it."""
        with self._lock:
            self._sessions.pop(session_id, None)

    @contextmanager
    def attached(self, session_id: str, kind: MemberKind = "script", name: str | None = None) -> Iterator[Member]:
        """A member for the duration of a connection (a script's WebSocket)."""
        member = self.join(session_id, kind, name=name)
        try:
            yield member
        finally:
            self.leave(session_id, member.id)

    def sweep(self) -> None:
        """Drop scripts gone for over a minute and tell their workspaces."""
        now = self.clock()
        with self._lock:
            went = [key for key in list(self._sessions) if self._live(key, now)[1]]
        for session_id in went:
            self._changed(session_id)

    def _lingering(self) -> bool:
        with self._lock:
            return any(m.kind == "script" and m.connections <= 0 for ms in self._sessions.values() for m in ms.values())

    def _start_sweeper(self) -> None:
        # Called with the lock held: one daemon thread, alive while scripts linger.
        if not self._sweep or (self._sweeper is not None and self._sweeper.is_alive()):
            return
        self._sweeper = threading.Thread(target=self._sweep_while_lingering, name="presence-sweeper", daemon=True)
        self._sweeper.start()

    def _sweep_while_lingering(self) -> None:
        while True:
            time.sleep(SWEEP_SECONDS)
            self.sweep()
            if not self._lingering():
                with self._lock:
                    self._sweeper = None
                    # A script may have started lingering between the check and here.
                    if any(
                        m.kind == "script" and m.connections <= 0 for ms in self._sessions.values() for m in ms.values()
                    ):
                        self._start_sweeper()
                return


presence = Presence()
