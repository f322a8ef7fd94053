"""Presence: who is in a workspace, with generated names, renames, scripts lingering a minute, and
nothing of one workspace visible from another. (Across processes, on every presence mirror:
``test_presence_contract.py``.)"""

from __future__ import annotations

import pytest

from core.errors import BadRequest, TooLarge
from core.events import PRESENCE_CHANGED, Event
from core.presence import COLOURS, MAX_MEMBERS, MAX_NAME_CHARS, SCRIPT_SEEN_SECONDS, VIEW_SECONDS, Presence
from tests.helpers import Clock

A = "11111111-1111-4111-8111-111111111111"
B = "22222222-2222-4222-8222-222222222222"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def events() -> list[Event]:
    return []


@pytest.fixture
def presence(clock, events) -> Presence:
    return Presence(clock=clock, publish=events.append, sweep=False)


def test_each_tab_gets_a_colour_and_animal_name(presence):
    first = presence.join(A, "tab")
    second = presence.join(A, "tab")
    colour_words = {word for word, _ in COLOURS}
    for member in (first, second):
        colour_word, animal = member.name.split(" ")
        assert colour_word in colour_words and animal
        assert member.colour.startswith("#") and len(member.colour) == 7
    assert first.name != second.name and first.colour != second.colour and first.id != second.id
    assert [m.id for m in presence.members(A)] == [first.id, second.id]


def test_joins_leaves_and_renames_are_published_to_that_workspace_only(presence, events):
    tab = presence.join(A, "tab")
    generated = tab.name
    presence.join(B, "tab")
    presence.rename(A, tab.id, "  Ada\x00 Lovelace ")
    presence.leave(A, tab.id)
    mine = [e for e in events if e.session_id == A]
    assert all(e.kind == PRESENCE_CHANGED for e in events)
    assert [[m["name"] for m in e.data["members"]] for e in mine] == [[generated], ["Ada Lovelace"], []]
    assert all(m["name"] != "Ada Lovelace" for e in events if e.session_id == B for m in e.data["members"])


def test_workspaces_never_see_each_others_members(presence):
    presence.join(A, "tab")
    presence.join(A, "script")
    presence.join(B, "tab")
    assert len(presence.members(A)) == 2 and len(presence.members(B)) == 1
    stranger = presence.members(B)[0]
    assert presence.member(A, stranger.id) is None
    with pytest.raises(BadRequest):
        presence.rename(A, stranger.id, "Mallory")
    assert presence.members(B)[0].name == stranger.name


def test_a_closed_tab_disappears_at_once(presence):
    tab = presence.join(A, "tab")
    presence.leave(A, tab.id)
    assert presence.members(A) == []


def test_a_script_stays_a_minute_after_its_socket_closes(presence, clock, events):
    script = presence.join(A, "script")
    presence.leave(A, script.id)
    clock.now += SCRIPT_SEEN_SECONDS - 1
    assert [m.id for m in presence.members(A)] == [script.id]
    clock.now += 2
    events.clear()
    presence.sweep()
    assert presence.members(A) == []
    assert events and events[-1].data["members"] == []


def test_a_connected_script_stays_however_quiet(presence, clock):
    script = presence.join(A, "script")
    clock.now += 10 * SCRIPT_SEEN_SECONDS
    assert [m.id for m in presence.members(A)] == [script.id]


def test_a_reconnecting_tab_keeps_its_name(presence):
    tab = presence.join(A, "tab")
    again = presence.join(A, "tab", member_id=tab.id)
    assert again is tab
    presence.leave(A, tab.id)
    assert presence.members(A) == [tab]  # one of its two connections is still open
    presence.leave(A, tab.id)
    assert presence.members(A) == []


def test_a_chosen_name_is_kept(presence):
    assert presence.join(A, "tab", name="Grace").name == "Grace"


@pytest.mark.parametrize(("name", "error"), [("", BadRequest), ("\x00\x01", BadRequest), (7, BadRequest)])
def test_bad_names_are_refused(presence, name, error):
    tab = presence.join(A, "tab")
    with pytest.raises(error):
        presence.rename(A, tab.id, name)


def test_long_names_are_refused(presence):
    tab = presence.join(A, "tab")
    with pytest.raises(TooLarge):
        presence.rename(A, tab.id, "n" * (MAX_NAME_CHARS + 1))


def test_a_workspace_holds_a_bounded_number_of_members(presence):
    for _ in range(MAX_MEMBERS):
        presence.join(A, "tab")
    with pytest.raises(TooLarge):
        presence.join(A, "tab")
    assert len({m.name for m in presence.members(A)}) == MAX_MEMBERS  # names stay distinct
    presence.join(B, "tab")  # another workspace is not affected


def test_attached_member_leaves_when_the_block_ends(presence, clock):
    with presence.attached(A, "script", name="Importer") as member:
        assert presence.members(A) == [member]
    clock.now += SCRIPT_SEEN_SECONDS + 1
    assert presence.members(A) == []


def test_one_scripts_sockets_are_one_member_however_many_it_opens(presence, clock, events):
    sockets = [presence.join(A, "script", client="203.0.113.7") for _ in range(150)]
    assert len({m.id for m in sockets}) == 1 and sockets[0].connections == 150
    assert len(presence.members(A)) == 1
    assert len([e for e in events if e.kind == PRESENCE_CHANGED]) == 1  # one join told, not 150
    other = presence.join(A, "script", client="198.51.100.1")  # another script: another member
    assert [m.id for m in presence.members(A)] == [sockets[0].id, other.id]
    assert presence.join(B, "script", client="203.0.113.7").id != sockets[0].id  # per workspace


def test_a_reconnecting_script_comes_back_as_the_member_it_was(presence, clock):
    first = presence.join(A, "script", client="203.0.113.7", name="Importer")
    presence.leave(A, first.id)
    clock.now += SCRIPT_SEEN_SECONDS - 1  # still listed: it reconnects within the minute
    again = presence.join(A, "script", client="203.0.113.7")
    assert again is first and again.name == "Importer" and presence.members(A) == [first]
    renamed = presence.join(A, "script", client="203.0.113.7", name="Nightly")  # a new name renames it
    assert renamed is first and first.name == "Nightly"


def test_reconnects_cannot_fill_the_list(presence, clock):
    for _ in range(3 * MAX_MEMBERS):
        member = presence.join(A, "script", client="203.0.113.7")
        presence.leave(A, member.id)
    assert len(presence.members(A)) == 1
    presence.join(A, "tab")  # the workspace's tabs still get in


def test_a_script_gone_a_minute_comes_back_as_a_new_member(presence, clock):
    first = presence.join(A, "script", client="203.0.113.7")
    presence.leave(A, first.id)
    clock.now += SCRIPT_SEEN_SECONDS + 1
    presence.sweep()
    assert presence.members(A) == []
    assert presence.join(A, "script", client="203.0.113.7").id != first.id


IMAGE = "0123456789abcdef0123456789abcdef"
OTHER_IMAGE = "fedcba9876543210fedcba9876543210"


def test_a_members_viewed_image_is_told_to_its_workspace_only(presence, events):
    tab = presence.join(A, "tab")
    presence.join(B, "tab")
    events.clear()
    assert presence.view(A, tab.id, IMAGE) is True
    assert [e.session_id for e in events] == [A]
    assert [m["viewing"] for m in events[-1].data["members"]] == [IMAGE]
    assert presence.members(A)[0].to_public()["viewing"] == IMAGE
    assert [m.viewing for m in presence.members(B)] == [None]
    assert presence.view(A, tab.id, IMAGE) is False  # the same image again: nothing to tell
    assert len(events) == 1


def test_viewing_takes_an_image_id_or_none_and_only_for_a_member(presence):
    tab = presence.join(A, "tab")
    for bad in ("../etc", "x" * 32, 7, ["0" * 32], IMAGE.upper()):
        with pytest.raises(BadRequest):
            presence.view(A, tab.id, bad)
    with pytest.raises(BadRequest):
        presence.view(A, "not-a-member", IMAGE)
    with pytest.raises(BadRequest):
        presence.view(B, tab.id, IMAGE)  # a member of another workspace
    assert presence.members(A)[0].viewing is None


def test_views_in_quick_succession_are_told_at_most_every_interval_and_the_last_one_wins(presence, clock, events):
    tab = presence.join(A, "tab")
    presence.sweep()  # the first sweep renews the leases (and tells a changed list): not under test here
    events.clear()
    presence.view(A, tab.id, IMAGE)
    clock.now += VIEW_SECONDS / 3
    assert presence.view(A, tab.id, OTHER_IMAGE) is False
    clock.now += VIEW_SECONDS / 3
    assert presence.view(A, tab.id, None) is False
    assert len(events) == 1  # the two later views wait for the interval
    presence.sweep()
    assert len(events) == 1
    clock.now += VIEW_SECONDS
    presence.sweep()  # the interval is over: the last view is told, once
    presence.sweep()
    assert len(events) == 2 and events[-1].data["members"][0]["viewing"] is None
