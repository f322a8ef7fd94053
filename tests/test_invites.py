"""The in-process invite book: expired invites leave without a scan of every session's, and a
session's short-lived invites cannot pile up behind a long-lived one. (What every invite book
does, on this one and on Redis: ``test_invite_contract.py``.)"""

from __future__ import annotations

from core.invites import MAX_ACTIVE_PER_SESSION, Invites
from core.sessions import new_session_id
from core.storage.local import LocalInviteBook


def test_expired_invites_of_every_session_are_dropped_by_the_next_call():
    book = LocalInviteBook()
    invites = Invites(book)
    for _ in range(500):
        invites.create(new_session_id(), ttl_seconds=60, now=1000.0)
    assert book.held() == 500
    owner = new_session_id()
    fresh = invites.create(owner, ttl_seconds=60, now=1060.0)  # every other one has expired by now
    assert book.held() == 1
    assert [invite.token for invite in invites.active(owner, now=1061.0)] == [fresh.token]


def test_revoking_leaves_nothing_of_the_session_behind():
    book, owner, other = LocalInviteBook(), new_session_id(), new_session_id()
    invites = Invites(book)
    for _ in range(3):
        invites.create(owner, ttl_seconds=60, now=0.0)
    invites.create(other, ttl_seconds=60, now=0.0)
    assert invites.revoke_all(owner) == 3
    assert book.held() == 1


def test_short_lived_invites_behind_a_long_lived_one_do_not_pile_up():
    book, owner = LocalInviteBook(), new_session_id()
    invites = Invites(book)
    invites.create(owner, ttl_seconds=3600, now=0.0)  # keeps the front of the book from being pruned
    for second in range(0, 2000, 2):
        invites.create(owner, ttl_seconds=1, now=float(second))  # expired by the next create
    assert book.held() <= MAX_ACTIVE_PER_SESSION + 1
    assert len(invites.active(owner, now=2001.0)) == 1
