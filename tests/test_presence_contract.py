"""The PresenceMirror contract (``core.storage.base``), run on every adapter: the in-process mirror
and a real throw-away Redis. Then two ``Presence`` objects on one mirror act like two processes:
tabs on each see the other's, and the members of a process that died leave when their lease ends."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from core.events import Event
from core.presence import LEASE_SECONDS, Presence
from core.storage.base import PresenceEntry, PresenceMirror
from core.storage.local import LocalPresenceMirror
from tests.helpers import ADAPTERS, A, B, Clock, flushed_redis_url

PRESENCE_DB = 3  # a database of its own on the run's redis-server
WALL = 2_000_000.0


@pytest.fixture(params=ADAPTERS)
def make_mirror(request) -> Callable[[], PresenceMirror]:
    """The mirror of one more process: the one in-process mirror, or a new client of one Redis."""
    if request.param == "local":
        mirror = LocalPresenceMirror()
        return lambda: mirror
    from core.storage.redis import RedisPresenceMirror, connect

    url = flushed_redis_url(request, PRESENCE_DB)
    return lambda: RedisPresenceMirror(connect(url))


def entry(member_id: str, name: str = "Blue Heron", joined: float = WALL, until: float = WALL + 30) -> PresenceEntry:
    return PresenceEntry(member_id, name, "#1e88e5", "tab", joined, until)


def by_id(entries: list[PresenceEntry] | None) -> dict[str, PresenceEntry]:
    assert entries is not None
    return {e.id: e for e in entries}


def test_written_entries_are_read_back_by_every_process(make_mirror):
    here, there = make_mirror(), make_mirror()
    here.write(A, [entry("m1"), entry("m2", "Red Fox", joined=WALL + 1)])
    assert by_id(there.read(A)) == {"m1": entry("m1"), "m2": entry("m2", "Red Fox", joined=WALL + 1)}
    there.write(A, [entry("m1", "Ada")])  # a rename replaces the entry
    assert by_id(here.read(A))["m1"].name == "Ada"


def test_removed_entries_are_gone_and_unknown_ids_are_ignored(make_mirror):
    mirror = make_mirror()
    mirror.write(A, [entry("m1"), entry("m2")])
    mirror.remove(A, ["m1", "never-there"])
    assert list(by_id(mirror.read(A))) == ["m2"]
    mirror.remove(A, ["m2"])
    assert mirror.read(A) == []


def test_workspaces_never_see_each_others_entries(make_mirror):
    mirror = make_mirror()
    mirror.write(A, [entry("m1")])
    mirror.remove(B, ["m1"])  # another workspace's removal does not reach it
    assert mirror.read(B) == []
    assert list(by_id(mirror.read(A))) == ["m1"]


def test_prune_removes_expired_entries_and_only_the_first_process_to_prune_says_so(make_mirror):
    here, there = make_mirror(), make_mirror()
    here.write(A, [entry("lapsed", until=WALL + 10), entry("current", until=WALL + 30)])
    assert here.prune(A, WALL + 9) is False
    assert here.prune(A, WALL + 10) is True
    assert there.prune(A, WALL + 10) is False
    assert list(by_id(there.read(A))) == ["current"]


# -- two processes' presences on one mirror --
@pytest.fixture
def pair(make_mirror) -> tuple[Presence, Presence, Clock, list[Event]]:
    """Two Presence objects (two processes) on one mirror, with one wall clock."""
    clock, wall = Clock(), Clock(WALL)
    published: list[Event] = []

    def process() -> Presence:
        return Presence(clock=clock, publish=published.append, sweep=False, wall=wall, mirror=make_mirror())

    return process(), process(), wall, published


def test_tabs_on_two_processes_see_each_other(pair):
    first, second, wall, published = pair
    on_first = first.join(A, "tab")
    wall.now += 1
    on_second = second.join(A, "tab")
    assert [m.id for m in first.members(A)] == [on_first.id, on_second.id]
    assert [m.id for m in second.members(A)] == [on_first.id, on_second.id]
    assert [m["id"] for m in published[-1].data["members"]] == [on_first.id, on_second.id]
    assert first.member(A, on_second.id).name == on_second.name  # an edit through A is named for B's tab
    assert first.members(B) == [] and second.member(B, on_first.id) is None
    second.leave(A, on_second.id)
    assert [m.id for m in first.members(A)] == [on_first.id]


def test_members_of_a_process_that_died_leave_after_their_lease(pair):
    first, second, wall, published = pair
    survivor = first.join(A, "tab")
    second.join(A, "tab")  # then the second process dies: nobody renews its lease
    wall.now += LEASE_SECONDS - 1
    assert len(first.members(A)) == 2
    wall.now += 2
    published.clear()
    first.sweep()  # renews its own lease and notices the list changed
    assert [m.id for m in first.members(A)] == [survivor.id]
    assert published and [m["id"] for m in published[-1].data["members"]] == [survivor.id]


def test_the_viewed_image_travels_with_the_entry(make_mirror):
    here, there = make_mirror(), make_mirror()
    viewing = "0123456789abcdef0123456789abcdef"
    here.write(A, [PresenceEntry("m1", "Blue Heron", "#1e88e5", "tab", WALL, WALL + 30, viewing), entry("m2")])
    read = by_id(there.read(A))
    assert read["m1"].viewing == viewing and read["m1"].to_public()["viewing"] == viewing
    assert read["m2"].viewing is None


def test_a_view_on_one_process_shows_in_the_other_processes_list(pair):
    first, second, wall, published = pair
    looking = first.join(A, "tab")
    second.join(A, "tab")
    image = "0123456789abcdef0123456789abcdef"
    assert first.view(A, looking.id, image) is True
    assert {m.id: m.viewing for m in second.members(A)}[looking.id] == image
    assert second.member(A, looking.id).viewing == image
    assert [m["viewing"] for m in published[-1].data["members"] if m["id"] == looking.id] == [image]
