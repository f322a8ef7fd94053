"""The decode sandbox: a task that runs too long, asks for too much memory or kills its worker
gets a 413/422 of its own, the worker is replaced, and the pool goes on serving; a full queue is a
503 with Retry-After; bytes reach workers without touching the disk."""

from __future__ import annotations

import dataclasses
import signal

import pytest

from core.config import Settings
from core.errors import CorruptImage, ServiceBusy, TooLarge
from core.sandbox import DecodePool
from tests import sandbox_tasks
from tests.helpers import make_jpeg

MiB = 1024 * 1024


@pytest.fixture
def make_pool():
    pools: list[DecodePool] = []

    def make(**overrides: object) -> DecodePool:
        pool = DecodePool(dataclasses.replace(Settings(), **overrides))
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.close(grace_seconds=0)


@pytest.mark.slow
def test_a_task_over_its_cpu_budget_is_413_and_the_pool_carries_on(make_pool):
    pool = make_pool(decode_workers=1, decode_seconds=1)
    with pytest.raises(TooLarge, match="more than its 1 s CPU budget"):
        pool.call(sandbox_tasks.spin, 60)
    assert pool.call(sandbox_tasks.sleep, 0) == 0


@pytest.mark.slow
def test_a_task_blocked_without_using_cpu_stops_at_the_wall_clock_backstop(make_pool):
    pool = make_pool(decode_workers=1, decode_seconds=0.2)
    with pytest.raises(TooLarge, match="took longer than"):
        pool.call(sandbox_tasks.sleep, 60)
    assert pool.call(sandbox_tasks.sleep, 0) == 0


def test_a_task_over_its_memory_budget_is_413_and_the_pool_carries_on(make_pool):
    pool = make_pool(decode_workers=1, decode_memory_bytes=64 * MiB)
    with pytest.raises(TooLarge, match="memory"):
        pool.call(sandbox_tasks.allocate, 512 * MiB)
    assert pool.call(sandbox_tasks.allocate, 1 * MiB) == 1 * MiB


def test_a_worker_that_ran_out_of_memory_is_replaced_not_trusted_again(make_pool):
    pool = make_pool(decode_workers=1, decode_memory_bytes=64 * MiB)
    first = pool.call(sandbox_tasks.worker_pid)
    with pytest.raises(TooLarge, match="memory budget"):
        pool.call(sandbox_tasks.allocate, 512 * MiB)
    assert pool.call(sandbox_tasks.worker_pid) != first  # a failed allocation may have left it half-initialised


def test_a_worker_killed_like_by_the_oom_killer_is_replaced(make_pool):
    pool = make_pool(decode_workers=1)
    first = pool.call(sandbox_tasks.worker_pid)
    with pytest.raises(TooLarge, match="more memory than the server allows"):
        pool.call(sandbox_tasks.die, signal.SIGKILL)
    assert pool.call(sandbox_tasks.worker_pid) != first


def test_a_crashing_decoder_is_422_without_internals(make_pool):
    pool = make_pool(decode_workers=1)
    with pytest.raises(CorruptImage) as crashed:
        pool.call(sandbox_tasks.die, signal.SIGSEGV)
    assert "0x" not in crashed.value.message and "Process" not in crashed.value.message
    assert pool.call(sandbox_tasks.sleep, 0) == 0


@pytest.mark.slow
def test_a_full_queue_is_refused_with_retry_after(make_pool):
    pool = make_pool(decode_workers=1, decode_queue=1, decode_seconds=30)
    first = pool.submit(sandbox_tasks.sleep, 1)
    second = pool.submit(sandbox_tasks.sleep, 1)
    with pytest.raises(ServiceBusy) as busy:
        pool.submit(sandbox_tasks.sleep, 1)
    assert busy.value.status_code == 503 and busy.value.headers == {"Retry-After": "2"}
    assert pool.result(first) == 1 and pool.result(second) == 1
    assert pool.in_flight() == 0
    assert pool.call(sandbox_tasks.sleep, 0) == 0  # room again once the queue drained


async def test_cancelling_an_awaited_task_frees_its_slot(make_pool):
    import asyncio

    pool = make_pool(decode_workers=1, decode_queue=0, decode_seconds=60)
    task = asyncio.ensure_future(pool.run(sandbox_tasks.sleep, 60))
    await asyncio.sleep(0.5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await pool.run(sandbox_tasks.sleep, 0) == 0  # the worker was stopped, not left sleeping


def test_workers_run_in_parallel_on_every_core(make_pool):
    pool = make_pool(decode_workers=2, decode_session_tasks=20, decode_client_tasks=20)
    futures = [pool.submit(sandbox_tasks.worker_pid) for _ in range(20)]
    ran_in = {pool.result(f) for f in futures}
    assert len(pool.worker_pids()) == 2
    assert ran_in <= set(pool.worker_pids())  # in the pool's workers, not in this process


def test_closing_the_pool_ends_every_worker(make_pool):
    pool = make_pool(decode_workers=2)
    pool.call(sandbox_tasks.sleep, 0)
    pids = pool.worker_pids()
    assert pids
    pool.close(grace_seconds=1)
    for pid in pids:
        assert not _alive(pid), pid


def test_images_decode_in_workers_through_pipes_not_files(make_pool, watch_writes):
    from core.ingest import inspect_image

    pool = make_pool(decode_workers=1)
    facts = pool.call(inspect_image, make_jpeg(640, 480), Settings())
    assert (facts.format, facts.width, facts.height) == ("JPEG", 640, 480)
    assert watch_writes == []  # this process wrote nothing either


def test_a_worker_cannot_write_files(make_pool, tmp_path):
    pool = make_pool(decode_workers=1)
    with pytest.raises(CorruptImage):
        pool.call(sandbox_tasks.write_file, str(tmp_path / "spool.bin"))
    assert not (tmp_path / "spool.bin").exists()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_closing_answers_every_running_and_waiting_task(make_pool):
    pool = make_pool(decode_workers=1, decode_seconds=60)
    running = pool.submit(sandbox_tasks.sleep, 60)
    waiting = pool.submit(sandbox_tasks.sleep, 60)
    pool.close(grace_seconds=0.2)
    for future in (running, waiting):
        with pytest.raises(Exception):  # noqa: B017  ServiceBusy or cancelled: answered, never left hanging
            future.result(timeout=10)
