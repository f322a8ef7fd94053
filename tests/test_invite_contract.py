"""The InviteBook contract (``core.storage.base``), run on every adapter (Cosmic Python style: one
suite, many adapters): the in-process book and a real throw-away Redis. Two ``Invites`` on one
book act like two processes: a link made on one opens on the other."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from core.errors import BadRequest
from core.invites import MAX_ACTIVE_PER_SESSION, MAX_TOKEN_CHARS, Invites
from core.storage.base import InviteBook
from core.storage.local import LocalInviteBook
from tests.helpers import ADAPTERS, A, B, flushed_redis_url

INVITES_DB = 4  # a database of its own on the run's redis-server
TTL_SECONDS = 600  # long enough that Redis keeps every key for the whole test


@pytest.fixture(params=ADAPTERS)
def make_book(request) -> Callable[[], InviteBook]:
    """The book of one more process: the one in-process book, or a new client of one Redis."""
    if request.param == "local":
        book = LocalInviteBook()
        return lambda: book
    from core.storage.redis import RedisInviteBook, connect

    url = flushed_redis_url(request, INVITES_DB)
    return lambda: RedisInviteBook(connect(url))


@pytest.fixture
def now() -> float:
    """Wall-clock seconds now: Redis forgets an invite by a TTL counted from its own clock."""
    return time.time()


def test_an_invite_made_in_one_process_opens_in_another(make_book, now):
    here, there = Invites(make_book()), Invites(make_book())
    invite = here.create(A, ttl_seconds=TTL_SECONDS, now=now)
    assert there.resolve(invite.token, now=now) == A
    assert [i.token for i in there.active(A, now=now)] == [invite.token]
    assert there.revoke(A, invite.token) is True
    assert here.resolve(invite.token, now=now) is None


def test_an_invite_resolves_until_it_expires(make_book, now):
    invites = Invites(make_book())
    invite = invites.create(A, ttl_seconds=60, now=now)
    assert (invite.created_at, invite.expires_at) == (now, now + 60)
    assert invites.resolve(invite.token, now=now + 59) == A
    assert invites.resolve(invite.token, now=now + 60) is None
    assert invites.active(A, now=now + 60) == []


def test_unknown_and_overlong_tokens_stand_for_nothing(make_book, now):
    invites = Invites(make_book())
    invite = invites.create(A, ttl_seconds=TTL_SECONDS, now=now)
    for token in ("", "x" * 32, invite.token + "x" * MAX_TOKEN_CHARS):
        assert invites.resolve(token, now=now) is None
        assert invites.revoke(A, token) is False
    assert invites.resolve(invite.token, now=now) == A


def test_a_session_is_capped_by_its_live_invites_only(make_book, now):
    invites = Invites(make_book())
    for _ in range(MAX_ACTIVE_PER_SESSION):
        invites.create(A, ttl_seconds=10, now=now)
    with pytest.raises(BadRequest, match="active invite links"):
        invites.create(A, ttl_seconds=10, now=now + 5)
    invites.create(B, ttl_seconds=10, now=now + 5)  # another session is not held back
    assert invites.create(A, ttl_seconds=10, now=now + 10).session_id == A  # the old ones expired


def test_an_invite_with_a_shorter_life_behind_a_longer_one_never_resolves_after_it_expires(make_book, now):
    invites = Invites(make_book())
    long = invites.create(A, ttl_seconds=TTL_SECONDS, now=now)
    short = invites.create(A, ttl_seconds=10, now=now)
    assert invites.resolve(short.token, now=now + 5) == A
    assert invites.resolve(short.token, now=now + 10) is None
    assert [i.token for i in invites.active(A, now=now + 10)] == [long.token]


def test_active_lists_a_sessions_invites_oldest_first(make_book, now):
    invites = Invites(make_book())
    made = [invites.create(A, ttl_seconds=TTL_SECONDS - n, now=now + n) for n in range(3)]
    invites.create(B, ttl_seconds=TTL_SECONDS, now=now)
    assert [i.token for i in invites.active(A, now=now + 3)] == [i.token for i in made]


def test_revoking_a_sessions_invites_leaves_the_others_alone(make_book, now):
    invites = Invites(make_book())
    mine = [invites.create(A, ttl_seconds=TTL_SECONDS, now=now) for _ in range(3)]
    theirs = invites.create(B, ttl_seconds=TTL_SECONDS, now=now)
    assert invites.revoke(B, mine[0].token) is False  # not another session's to revoke
    assert invites.revoke(A, mine[0].token) is True
    assert invites.revoke(A, mine[0].token) is False  # already gone
    assert invites.revoke_all(A) == 2
    assert all(invites.resolve(invite.token, now=now) is None for invite in mine)
    assert invites.resolve(theirs.token, now=now) == B
    assert invites.revoke_all(A) == 0
