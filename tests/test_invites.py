"""The in-memory invite book: bounded per session, expired invites leave without a scan of every
session's, and revoking one session's invites leaves the others' alone."""

from __future__ import annotations

import pytest

from core.errors import BadRequest
from core.invites import MAX_ACTIVE_PER_SESSION, InviteBook
from core.sessions import new_session_id


def test_expired_invites_of_every_session_are_dropped_by_the_next_call():
    book = InviteBook()
    for _ in range(500):
        book.create(new_session_id(), ttl_seconds=60, now=1000.0)
    assert book.held() == 500
    owner = new_session_id()
    fresh = book.create(owner, ttl_seconds=60, now=1060.0)  # every other one has expired by now
    assert book.held() == 1
    assert [invite.token for invite in book.active(owner, now=1061.0)] == [fresh.token]


def test_a_session_is_capped_by_its_live_invites_only():
    book, owner = InviteBook(), new_session_id()
    for _ in range(MAX_ACTIVE_PER_SESSION):
        book.create(owner, ttl_seconds=10, now=0.0)
    with pytest.raises(BadRequest, match="active invite links"):
        book.create(owner, ttl_seconds=10, now=5.0)
    book.create(new_session_id(), ttl_seconds=10, now=5.0)  # another session is not held back
    assert book.create(owner, ttl_seconds=10, now=10.0).session_id == owner  # the old ones expired


def test_an_invite_with_a_shorter_life_behind_a_longer_one_never_resolves_after_it_expires():
    book, owner = InviteBook(), new_session_id()
    book.create(owner, ttl_seconds=3600, now=0.0)
    short = book.create(owner, ttl_seconds=10, now=0.0)
    assert book.resolve(short.token, now=5.0) == owner
    assert book.resolve(short.token, now=10.0) is None
    assert len(book.active(owner, now=10.0)) == 1


def test_revoking_a_sessions_invites_leaves_the_others_alone():
    book, owner, other = InviteBook(), new_session_id(), new_session_id()
    mine = [book.create(owner, ttl_seconds=60, now=0.0) for _ in range(3)]
    theirs = book.create(other, ttl_seconds=60, now=0.0)
    assert book.revoke(other, mine[0].token) is False
    assert book.revoke(owner, mine[0].token) is True
    assert book.revoke_all(owner) == 2
    assert all(book.resolve(invite.token, now=1.0) is None for invite in mine)
    assert book.resolve(theirs.token, now=1.0) == other
    assert book.held() == 1


def test_short_lived_invites_behind_a_long_lived_one_do_not_pile_up():
    book, owner = InviteBook(), new_session_id()
    book.create(owner, ttl_seconds=3600, now=0.0)  # keeps the front of the book from being pruned
    for second in range(0, 2000, 2):
        book.create(owner, ttl_seconds=1, now=float(second))  # expired by the next create
    assert book.held() <= MAX_ACTIVE_PER_SESSION + 1
    assert len(book.active(owner, now=2001.0)) == 1
