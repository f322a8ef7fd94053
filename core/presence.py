"""Who is in a workspace: every open tab, plus every script connected over the WebSocket now or in
the last minute. Each member gets a generated name and colour ("Blue Heron") and can rename itself.
A script is one member however many sockets it opens: its sockets are counted on the member of its
client address in that workspace, so reconnects and parallel uploads cannot fill the list.

Presence is per session and only ever answered for the caller's own session: a member list, its
changes (``PRESENCE_CHANGED`` events to that session's subscribers only) and nothing else. No count
or name spans workspaces.

Each process keeps the members connected to it (a tab's socket stays on one process: sticky
routing), and mirrors them into the presence mirror ``core.storage.factory`` chooses
(``core.storage.base.PresenceMirror``; in redis mode one Redis hash per session), each entry with a
lease it renews every few seconds, and lists the union: a tab on process A sees a tab on process B,
and the members of a process that died leave once their lease runs out.
"""

from __future__ import annotations

import logging
import math
import random
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

from core.errors import BadRequest, TooLarge
from core.events import PRESENCE_CHANGED, Event, bus
from core.storage.base import PresenceEntry, PresenceMirror, is_image_id
from core.storage.local import LocalPresenceMirror
from core.text import one_line

SCRIPT_SEEN_SECONDS = 60.0  # a script stays listed this long after its last WebSocket activity
MAX_MEMBERS = 100  # per workspace: tabs and scripts together
MAX_NAME_CHARS = 40
SWEEP_SECONDS = 1.0  # how often lingering scripts are checked while there are any
LEASE_SECONDS = 30.0  # a member its process stopped renewing (it died) goes after this
RENEW_SECONDS = 10.0  # how often a process renews its members' leases
# A member's "viewing" image (the culling view) is told to the workspace at most this often: each
# change re-sends the member list to every tab, so a key held down must not flood them. A change
# in between is kept and told when the interval is over (at the latest by the next sweep).
VIEW_SECONDS = 0.25

log = logging.getLogger(__name__)

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
    client: str | None = None  # a script's client address: its sockets are this one member
    viewing: str | None = None  # the image id it looks at in the culling view, or None
    viewing_told: float = -math.inf  # (clock) when its "viewing" was last told to the workspace
    viewing_pending: bool = False  # "viewing" changed since then

    def to_public(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "colour": self.colour, "kind": self.kind, "viewing": self.viewing}


def clean_name(raw: object) -> str:
    """A display name: ``core.text.one_line`` (control and format characters removed, spaces
    collapsed), 1-40 characters."""
    if not isinstance(raw, str):
        raise BadRequest("a name must be a string")
    name = one_line(raw)
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
        wall: Callable[[], float] = time.time,
        mirror: PresenceMirror | None = None,
    ) -> None:
        self.clock = clock
        self.wall = wall  # leases are wall-clock times, comparable across processes
        self._publish = publish or bus.publish
        self._sessions: dict[str, dict[str, Member]] = {}
        self._joined: dict[str, float] = {}  # member id -> wall time it came (the shared list's order)
        self._scripts: dict[tuple[str, str], str] = {}  # (session id, client address) -> member id
        self._lock = threading.Lock()
        self._sweep = sweep
        self._sweeper: threading.Thread | None = None
        self._mirror = mirror or LocalPresenceMirror()
        self._published: dict[str, list[dict[str, Any]]] = {}  # the last list sent per session
        self._renewed = -math.inf

    def use_mirror(self, mirror: PresenceMirror) -> None:
        """Mirror members into ``mirror`` and list every process's members from it from now on;
        this process's members are written there at the next sweep."""
        with self._lock:
            self._mirror = mirror
            self._renewed = -math.inf
            if self._sessions:
                self._start_sweeper()

    # -- helpers (lock held) --
    def _new_member(self, taken_members: list[dict[str, Any]], kind: MemberKind, name: str | None) -> Member:
        taken = {m["name"] for m in taken_members}
        used_colours = {m["colour"] for m in taken_members}
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

    def _live(self, session_id: str, now: float) -> tuple[list[Member], list[str]]:
        """The session's local members, dropping scripts gone for over a minute; and the ids that went."""
        members = self._sessions.get(session_id, {})
        gone = [
            m.id
            for m in members.values()
            if m.kind == "script" and m.connections <= 0 and now - m.last_seen > SCRIPT_SEEN_SECONDS
        ]
        for member_id in gone:
            self._drop(session_id, members.pop(member_id))
        if not members:
            self._sessions.pop(session_id, None)
        return list(members.values()), gone

    def _drop(self, session_id: str, member: Member) -> None:
        self._joined.pop(member.id, None)
        if member.client is not None and self._scripts.get((session_id, member.client)) == member.id:
            del self._scripts[(session_id, member.client)]

    # -- the mirror (called without the lock: it may do network I/O) --
    def _entry(self, member: Member, now: float, wall: float) -> PresenceEntry:
        if member.connections > 0:
            until = wall + LEASE_SECONDS
        else:  # a script whose socket closed: listed until a minute after it was last seen
            until = wall + SCRIPT_SEEN_SECONDS - (now - member.last_seen)
        joined = self._joined.get(member.id, wall)
        return PresenceEntry(member.id, member.name, member.colour, member.kind, joined, until, member.viewing)

    def _share(self, session_id: str, write: Sequence[Member] = (), remove: Sequence[str] = ()) -> None:
        if remove:
            self._mirror.remove(session_id, remove)
        if write:
            now, wall = self.clock(), self.wall()
            self._mirror.write(session_id, [self._entry(m, now, wall) for m in write])

    def _shared_members(self, session_id: str) -> list[dict[str, Any]] | None:
        """Every process's members of the session, in the order they came (None when the mirror
        cannot be read)."""
        entries = self._mirror.read(session_id)
        if entries is None:
            return None
        wall = self.wall()
        listed = sorted((e for e in entries if e.until > wall), key=lambda e: (e.joined, e.id))
        return [e.to_public() for e in listed]

    def _public(self, session_id: str) -> list[dict[str, Any]]:
        shared = self._shared_members(session_id)
        with self._lock:
            local, _ = self._live(session_id, self.clock())
            if shared is None:
                return [m.to_public() for m in local]
        known = {m["id"] for m in shared}  # a local member whose entry was lost still shows
        return shared + [m.to_public() for m in local if m.id not in known]

    def _changed(self, session_id: str) -> None:
        public = self._public(session_id)
        self._published[session_id] = public
        self._publish(Event(PRESENCE_CHANGED, session_id, {"members": public}))

    # -- the API --
    def join(
        self,
        session_id: str,
        kind: MemberKind,
        member_id: str | None = None,
        name: str | None = None,
        client: str | None = None,
    ) -> Member:
        """Add a tab or script (or, given the ``member_id`` it had, bring it back under the same name).
        ``name``: a name it chose before (kept across a reload). ``client``: a script's client
        address; every socket of one address in one workspace is one member, counted once however
        many it opens or how often it reconnects (a new ``name`` renames it). Raises TooLarge when
        100 are in."""
        clean = clean_name(name) if name is not None else None
        with self._lock:
            if member_id is None and kind == "script" and client is not None:
                member_id = self._scripts.get((session_id, client))
            member = self._sessions.get(session_id, {}).get(member_id) if member_id else None
            if member is not None:
                member.connections += 1
                member.last_seen = self.clock()
                renamed = clean is not None and clean != member.name
                if renamed:
                    member.name = clean
        if member is not None:
            if renamed or member.connections == 1:  # a new name, or a lingering script's lease renewed
                self._share(session_id, write=[member])
            if renamed:
                self._changed(session_id)
            return member
        current = self._public(session_id)
        if len(current) >= MAX_MEMBERS:
            raise TooLarge(f"this workspace already has {MAX_MEMBERS} tabs and scripts in it")
        with self._lock:
            if len(self._sessions.get(session_id, {})) >= MAX_MEMBERS:  # joins racing since the count
                raise TooLarge(f"this workspace already has {MAX_MEMBERS} tabs and scripts in it")
            if kind == "script" and client is not None and (session_id, client) in self._scripts:
                return self._rejoin_raced(session_id, client)
            member = self._new_member(current, kind, clean)
            if kind == "script" and client is not None:
                member.client = client
                self._scripts[(session_id, client)] = member.id
            self._sessions.setdefault(session_id, {})[member.id] = member
            self._joined[member.id] = self.wall()
            self._start_sweeper()
        self._share(session_id, write=[member])
        self._changed(session_id)
        return member

    def _rejoin_raced(self, session_id: str, client: str) -> Member:
        # Called with the lock held: another socket of the same script joined since this one looked.
        member = self._sessions[session_id][self._scripts[(session_id, client)]]
        member.connections += 1
        member.last_seen = self.clock()
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
                self._drop(session_id, self._sessions[session_id].pop(member_id))
                if not self._sessions[session_id]:
                    del self._sessions[session_id]
            else:
                self._start_sweeper()
        if member.kind == "tab":
            self._share(session_id, remove=[member_id])
        else:
            self._share(session_id, write=[member])
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
        self._share(session_id, write=[member])
        self._changed(session_id)
        return member

    def view(self, session_id: str, member_id: str, image_id: object) -> bool:
        """The member (a tab of this process) now looks at ``image_id`` in the culling view (None:
        at none). Only the id's form is checked here; that it is an image of this session is the
        caller's to check (the page knows its images). Told to the workspace at once, or, within
        VIEW_SECONDS of the last time, when that interval is over: True if told now. Raises
        BadRequest for anything but an image id or None, or a member not in the workspace."""
        if image_id is not None and not is_image_id(image_id):
            raise BadRequest("'viewing' must be an image id of this workspace or null")
        now = self.clock()
        with self._lock:
            member = self._sessions.get(session_id, {}).get(member_id)
            if member is None:
                raise BadRequest("you are not in this workspace any more; reconnect first")
            if member.viewing == image_id and not member.viewing_pending:
                return False
            member.viewing = image_id  # type: ignore[assignment]  # checked above
            if now - member.viewing_told < VIEW_SECONDS:
                member.viewing_pending = True
                self._start_sweeper()
                return False
            member.viewing_told, member.viewing_pending = now, False
        self._share(session_id, write=[member])
        self._changed(session_id)
        return True

    def _tell_pending_views(self, now: float) -> None:
        """Tell the workspaces the views that waited for their interval to end (lock not held)."""
        with self._lock:
            due: dict[str, list[Member]] = {}
            for session_id, members in self._sessions.items():
                for member in members.values():
                    if member.viewing_pending and now - member.viewing_told >= VIEW_SECONDS:
                        member.viewing_told, member.viewing_pending = now, False
                        due.setdefault(session_id, []).append(member)
        for session_id, members in due.items():
            self._share(session_id, write=members)
            self._changed(session_id)

    def member(self, session_id: str, member_id: str | None) -> Member | None:
        """The member with this id in this session (None for an unknown id or another session's),
        also one connected to another process."""
        if not member_id:
            return None
        with self._lock:
            local = self._sessions.get(session_id, {}).get(member_id)
        if local is not None:
            return local
        found = next((m for m in self._shared_members(session_id) or [] if m["id"] == member_id), None)
        if found is None:
            return None
        return Member(
            found["id"], found["name"], found["colour"], found["kind"], self.clock(), 0, viewing=found["viewing"]
        )

    def members(self, session_id: str) -> list[Member]:
        """Who is in the workspace now, in the order they came."""
        with self._lock:
            _, went = self._live(session_id, self.clock())
        if went:
            self._share(session_id, remove=went)
            self._changed(session_id)
        public = self._public(session_id)
        with self._lock:
            local = dict(self._sessions.get(session_id, {}))
        return [
            local.get(m["id"]) or Member(m["id"], m["name"], m["colour"], m["kind"], self.clock(), viewing=m["viewing"])
            for m in public
        ]

    def forget_session(self, session_id: str) -> None:
        """The workspace was deleted: nobody is in it."""
        with self._lock:
            gone = self._sessions.pop(session_id, {})
            for member in gone.values():
                self._drop(session_id, member)
        self._share(session_id, remove=list(gone))

    @contextmanager
    def attached(
        self, session_id: str, kind: MemberKind = "script", name: str | None = None, client: str | None = None
    ) -> Iterator[Member]:
        """A member for the duration of a connection (a script's WebSocket; ``client`` as in ``join``)."""
        member = self.join(session_id, kind, name=name, client=client)
        try:
            yield member
        finally:
            self.leave(session_id, member.id)

    def sweep(self) -> None:
        """Drop scripts gone for over a minute and tell their workspaces, and tell the views that
        waited for their interval; every RENEW_SECONDS also renew this process's leases and tell of
        members other processes lost."""
        now = self.clock()
        self._tell_pending_views(now)
        with self._lock:
            went = {key: gone for key in list(self._sessions) if (gone := self._live(key, now)[1])}
            renew = now - self._renewed >= RENEW_SECONDS
            if renew:
                self._renewed = now
            local = {key: list(members.values()) for key, members in self._sessions.items()} if renew else {}
        for session_id, gone in went.items():
            self._share(session_id, remove=gone)
            self._changed(session_id)
        for session_id, members in local.items():
            self._share(session_id, write=members)
            pruned = self._mirror.prune(session_id, self.wall())
            if session_id not in went and (pruned or self._public(session_id) != self._published.get(session_id)):
                self._changed(session_id)
        for session_id in [k for k in self._published if k not in self._sessions]:
            self._published.pop(session_id, None)

    def _start_sweeper(self) -> None:
        # Called with the lock held: one daemon thread, alive while there is something to sweep.
        if not self._sweep or (self._sweeper is not None and self._sweeper.is_alive()):
            return
        self._sweeper = threading.Thread(target=self._sweep_while_needed, name="presence-sweeper", daemon=True)
        self._sweeper.start()

    def _sweep_while_needed(self) -> None:
        while True:
            time.sleep(SWEEP_SECONDS)
            try:
                self.sweep()
            except Exception:  # the sweeper must outlive one bad round
                log.exception("presence sweep failed")
            with self._lock:
                if not self._sessions:  # nobody left to renew or to drop
                    self._sweeper = None
                    return


presence = Presence()
