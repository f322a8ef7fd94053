"""Fair decode scheduling: sessions and client addresses take turns for the decode workers, each
has a share of running plus queued decodes, and a session past its share is refused alone.

Every test runs a real one-worker ``DecodePool``. A ``blocker`` holds the worker until the test
opens its gate, so the queue is built while nothing can start; the order tasks then ran in is read
from the start times they return, never from how long anything took."""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.clients import client_scope
from core.config import Settings
from core.errors import ServiceBusy, TooLarge
from core.sandbox import DecodePool
from core.sessions import new_session_id, session_scope
from tests import sandbox_tasks

ATTACKER_ADDRESS = "203.0.113.66"
INNOCENT_ADDRESS = "198.51.100.7"


@pytest.fixture
def make_pool():
    pools: list[DecodePool] = []

    def make(**overrides: object) -> DecodePool:
        limits = {"decode_workers": 1, "decode_seconds": 30, **overrides}
        pool = DecodePool(dataclasses.replace(Settings(), **limits))
        pools.append(pool)
        pool.call(sandbox_tasks.sleep, 0)  # the worker is up before a test starts counting
        return pool

    yield make
    for pool in pools:
        pool.close(grace_seconds=0)


class Gate:
    """Tasks that hold the worker until the test opens the gate."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def submit(self, pool: DecodePool) -> concurrent.futures.Future[int]:
        return pool.submit(sandbox_tasks.started_then_wait_for, str(self.path))

    def open(self) -> None:
        self.path.touch()


@pytest.fixture
def gate(tmp_path: Path) -> Gate:
    return Gate(tmp_path / "gate")


@contextlib.contextmanager
def acting_as(session_id: str | None, address: str) -> Iterator[None]:
    """Submit as this session from this client address, as a request's scopes would."""
    with client_scope(address), session_scope(session_id):
        yield


def answered(pool: DecodePool, futures: list[concurrent.futures.Future[int]]) -> list[int]:
    return [pool.result(future) for future in futures]


def assert_nothing_left(pool: DecodePool, *sessions: str | None) -> None:
    assert pool.in_flight() == 0
    assert all(pool.queued(session) == 0 for session in sessions)
    assert pool.owners() == (0, 0)  # no empty queue or count is kept for a session or an address


def test_an_innocent_sessions_decode_runs_before_an_attackers_queued_ones(make_pool, gate):
    pool = make_pool(decode_session_tasks=8, decode_client_tasks=8)
    attacker, innocent = new_session_id(), new_session_id()
    with acting_as(attacker, ATTACKER_ADDRESS):
        flood = [gate.submit(pool) for _ in range(5)]  # the first runs, four wait
    with acting_as(innocent, INNOCENT_ADDRESS):
        upload = gate.submit(pool)
    assert pool.queued(attacker) == 4 and pool.queued(innocent) == 1
    gate.open()
    started = answered(pool, flood)
    innocent_started = pool.result(upload)
    assert started[0] < innocent_started < min(started[1:])
    assert_nothing_left(pool, attacker, innocent)


def test_sessions_of_one_address_take_turns_and_a_new_one_goes_next(make_pool, gate):
    pool = make_pool(decode_session_tasks=8, decode_client_tasks=16)
    busy, newcomer = new_session_id(), new_session_id()
    with acting_as(busy, ATTACKER_ADDRESS):
        flood = [gate.submit(pool) for _ in range(4)]
    with acting_as(newcomer, ATTACKER_ADDRESS):  # one NAT, two workspaces
        first, second = gate.submit(pool), gate.submit(pool)
    gate.open()
    busy_started, newcomer_started = answered(pool, flood), answered(pool, [first, second])
    order = sorted([(t, "busy") for t in busy_started] + [(t, "newcomer") for t in newcomer_started])
    assert [owner for _, owner in order] == ["busy", "newcomer", "busy", "newcomer", "busy", "busy"]
    assert_nothing_left(pool, busy, newcomer)


def test_legacy_calls_share_one_owner_and_wait_their_turn(make_pool, gate):
    pool = make_pool(decode_session_tasks=3, decode_client_tasks=8)
    innocent = new_session_id()
    with acting_as(None, ATTACKER_ADDRESS):
        flood = [gate.submit(pool) for _ in range(3)]
        with pytest.raises(ServiceBusy, match="this workspace already has 3 images"):
            gate.submit(pool)
    with acting_as(innocent, ATTACKER_ADDRESS):
        upload = gate.submit(pool)
    assert pool.queued(None) == 2
    gate.open()
    started = answered(pool, flood)
    assert started[0] < pool.result(upload) < min(started[1:])
    assert_nothing_left(pool, None, innocent)


def test_a_session_past_its_share_gets_503_while_another_session_proceeds(make_pool, gate):
    pool = make_pool(decode_session_tasks=3, decode_client_tasks=16)
    greedy, other = new_session_id(), new_session_id()
    with acting_as(greedy, ATTACKER_ADDRESS):
        mine = [gate.submit(pool) for _ in range(3)]
        with pytest.raises(ServiceBusy) as refused:
            gate.submit(pool)
    assert refused.value.status_code == 503 and refused.value.headers == {"Retry-After": "2"}
    assert refused.value.message.startswith("this workspace already has 3 images being decoded")
    with acting_as(other, ATTACKER_ADDRESS):  # the same address, a session of its own: not refused
        theirs = [gate.submit(pool) for _ in range(3)]
    assert pool.queued(greedy) == 2 and pool.queued(other) == 3
    gate.open()
    answered(pool, mine + theirs)
    with acting_as(greedy, ATTACKER_ADDRESS):  # its share is back once its decodes are done
        assert pool.call(sandbox_tasks.sleep, 0) == 0
    assert_nothing_left(pool, greedy, other)


def test_one_address_with_many_sessions_is_capped_by_its_client_share(make_pool, gate):
    pool = make_pool(decode_session_tasks=8, decode_client_tasks=4)
    hoarded = [new_session_id() for _ in range(5)]
    held = []
    for session in hoarded[:4]:
        with acting_as(session, ATTACKER_ADDRESS):
            held.append(gate.submit(pool))
    with acting_as(hoarded[4], ATTACKER_ADDRESS), pytest.raises(ServiceBusy) as refused:
        gate.submit(pool)  # a fresh session does not get around its address's share
    assert refused.value.status_code == 503 and refused.value.headers == {"Retry-After": "2"}
    assert refused.value.message.startswith("your address already has 4 images being decoded")
    innocent = new_session_id()
    with acting_as(innocent, INNOCENT_ADDRESS):
        upload = gate.submit(pool)
    gate.open()
    answered(pool, [*held, upload])
    assert_nothing_left(pool, *hoarded, innocent)


def test_a_session_with_nothing_in_flight_is_admitted_when_the_queue_is_full(make_pool, gate):
    pool = make_pool(decode_queue=2, decode_session_tasks=8, decode_client_tasks=8)
    assert pool.capacity == 3
    attacker, innocent = new_session_id(), new_session_id()
    with acting_as(attacker, ATTACKER_ADDRESS):
        flood = [gate.submit(pool) for _ in range(3)]
        with pytest.raises(ServiceBusy, match="the server is busy decoding 3 images"):
            gate.submit(pool)
    with acting_as(innocent, INNOCENT_ADDRESS):
        upload = gate.submit(pool)  # the queue is full, but this session has nothing in flight
        with pytest.raises(ServiceBusy, match="the server is busy"):
            gate.submit(pool)  # a second one waits for room like everyone's
    assert pool.in_flight() == 4
    gate.open()
    started = answered(pool, flood)
    assert started[0] < pool.result(upload) < min(started[1:])
    assert_nothing_left(pool, attacker, innocent)


def test_newcomers_past_a_full_queue_are_bounded_too(make_pool, gate):
    pool = make_pool(decode_queue=0, decode_session_tasks=8, decode_client_tasks=8)
    newcomers = [new_session_id() for _ in range(3)]
    held = []
    for index, session in enumerate(newcomers[:2]):
        with acting_as(session, f"192.0.2.{index}"):
            held.append(gate.submit(pool))
    with acting_as(newcomers[2], "192.0.2.99"), pytest.raises(ServiceBusy, match="the server is busy"):
        gate.submit(pool)  # twice the pool's bound holds, whatever the number of sessions
    gate.open()
    answered(pool, held)
    assert_nothing_left(pool, *newcomers)


def test_cancelling_queued_decodes_frees_their_share_at_once(make_pool, gate):
    pool = make_pool(decode_session_tasks=4, decode_client_tasks=6)
    session, other = new_session_id(), new_session_id()
    with acting_as(session, ATTACKER_ADDRESS):
        running, *waiting = [gate.submit(pool) for _ in range(4)]
        with pytest.raises(ServiceBusy):
            gate.submit(pool)
        for future in waiting:
            pool.cancel(future)
        assert pool.queued(session) == 0 and pool.in_flight() == 1
        again = [gate.submit(pool) for _ in range(3)]  # the session's share is whole again
    with acting_as(other, ATTACKER_ADDRESS):  # and so is the address's: 4 of its 6 are in flight
        theirs = [gate.submit(pool) for _ in range(2)]
        with pytest.raises(ServiceBusy, match="your address already has 6"):
            gate.submit(pool)
    for future in waiting:
        assert future.cancelled()
    for future in [*again, *theirs]:
        pool.cancel(future)
    assert pool.owners() == (1, 1)  # only the running task's owners are still counted
    gate.open()
    pool.result(running)
    assert_nothing_left(pool, session, other)


@pytest.mark.slow  # three decodes run into the wall-clock backstop
def test_a_failed_or_refused_decode_leaks_no_share(make_pool):
    pool = make_pool(decode_session_tasks=2, decode_client_tasks=2, decode_seconds=0.2)
    session = new_session_id()
    with acting_as(session, ATTACKER_ADDRESS):
        for _ in range(3):
            with pytest.raises(TooLarge, match="longer than"):  # over the wall-clock backstop
                pool.call(sandbox_tasks.sleep, 60)
        assert pool.call(sandbox_tasks.sleep, 0) == 0
    assert_nothing_left(pool, session)


def test_submitted_counts_every_accepted_task_and_no_refused_one(make_pool, gate):
    pool = make_pool(decode_session_tasks=2, decode_client_tasks=8)
    before = pool.submitted
    session = new_session_id()
    with acting_as(session, ATTACKER_ADDRESS):
        held = [gate.submit(pool) for _ in range(2)]
        with pytest.raises(ServiceBusy):
            gate.submit(pool)
    assert pool.submitted == before + 2
    gate.open()
    answered(pool, held)


async def test_the_owner_reaches_the_pool_from_awaited_and_threaded_calls(make_pool, gate):
    import asyncio

    pool = make_pool(decode_session_tasks=8, decode_client_tasks=8)
    session = new_session_id()
    with acting_as(session, ATTACKER_ADDRESS):
        held = gate.submit(pool)
        awaited = asyncio.ensure_future(pool.run(sandbox_tasks.sleep, 0))
        threaded = asyncio.ensure_future(asyncio.to_thread(pool.call, sandbox_tasks.sleep, 0))
    for _ in range(1000):  # the thread needs a moment to reach the pool
        if pool.queued(session) == 2:
            break
        await asyncio.sleep(0.01)
    assert pool.queued(session) == 2  # both reached the pool as this session's
    gate.open()
    assert await awaited == 0 and await threaded == 0
    pool.result(held)
    assert_nothing_left(pool, session)


# -- big decodes: at most workers - 1 at once, a light decode takes the free worker --


def heavy(pool: DecodePool, gate: Gate) -> concurrent.futures.Future[int]:
    return pool.submit(sandbox_tasks.started_then_wait_for, str(gate.path), heavy=True)


def test_a_light_decode_takes_the_free_worker_while_big_ones_wait(make_pool, gate):
    pool = make_pool(decode_workers=2, decode_session_tasks=8, decode_client_tasks=8)
    assert pool.heavy_slots == 1
    attacker, innocent = new_session_id(), new_session_id()
    with acting_as(attacker, ATTACKER_ADDRESS):
        big = [heavy(pool, gate) for _ in range(4)]  # one runs; the second worker is kept
    assert pool.queued(attacker) == 3
    with acting_as(innocent, INNOCENT_ADDRESS):
        small = pool.submit(sandbox_tasks.sleep, 0)
    assert pool.result(small) == 0  # answered while the gate is shut: it never waited for a big one
    assert pool.queued(attacker) == 3
    gate.open()
    answered(pool, big)
    assert_nothing_left(pool, attacker, innocent)


def test_a_light_decode_behind_big_ones_in_its_own_queue_waits_its_turn_there(make_pool, gate):
    pool = make_pool(decode_workers=2, decode_session_tasks=8, decode_client_tasks=8)
    session = new_session_id()
    with acting_as(session, ATTACKER_ADDRESS):
        big = [heavy(pool, gate) for _ in range(2)]
        small = gate.submit(pool)  # after the queued big one: a session's own decodes stay in order
    assert pool.queued(session) == 2
    gate.open()
    first, second = answered(pool, big)
    assert first < second < pool.result(small)
    assert_nothing_left(pool, session)


def test_a_light_decode_of_another_queue_runs_while_every_head_is_big(make_pool, gate):
    pool = make_pool(decode_workers=2, decode_session_tasks=8, decode_client_tasks=8)
    one, two, three = new_session_id(), new_session_id(), new_session_id()
    with acting_as(one, ATTACKER_ADDRESS):
        running = heavy(pool, gate)
    with acting_as(two, ATTACKER_ADDRESS):
        waiting = heavy(pool, gate)  # its turn comes first, but the heavy slot is taken
    with acting_as(three, INNOCENT_ADDRESS):
        small = pool.submit(sandbox_tasks.sleep, 0)
    assert pool.result(small) == 0
    assert pool.queued(two) == 1
    gate.open()
    assert pool.result(running) < pool.result(waiting)
    assert_nothing_left(pool, one, two, three)


def test_one_worker_still_runs_big_decodes_one_at_a_time(make_pool, gate):
    pool = make_pool(decode_session_tasks=8, decode_client_tasks=8)
    assert pool.heavy_slots == 1
    session = new_session_id()
    with acting_as(session, ATTACKER_ADDRESS):
        big = [heavy(pool, gate) for _ in range(2)]
    gate.open()
    first, second = answered(pool, big)
    assert first < second
    assert_nothing_left(pool, session)


@pytest.mark.parametrize(
    ("fmt", "pixels", "expected"),
    [
        ("PNG", 16_000_001, True),
        ("PNG", 16_000_000, False),
        ("TIFF", None, True),  # its size is not read at a glance: treated as big
        ("JPEG", 50_000_000, False),  # decoded reduced, never big
        ("JPEG", None, False),
    ],
)
def test_heavy_is_over_the_pixel_setting_or_of_unknown_size_and_never_a_jpeg(make_pool, fmt, pixels, expected):
    pool = make_pool(decode_heavy_pixels=16_000_000)
    assert pool.is_heavy(fmt, pixels) is expected
