"""The decode sandbox: every decode of untrusted bytes runs in a worker process with hard limits.

A decoder's cost is not bounded by the file's size (a 50-byte GIF can ask Pillow for a 4 GiB
canvas), so validation, thumbnails, previews and feature decodes never run in the server process:

* each worker has an address-space limit (``DARKROOM_DECODE_MEMORY_BYTES`` above what the worker
  holds once its libraries are loaded) and each task a CPU budget (``DARKROOM_DECODE_SECONDS``,
  enforced by the kernel through ``RLIMIT_CPU``, so a busy machine does not turn slow decodes into
  refusals), plus a wall-clock backstop of ``WALL_CLOCK_FACTOR`` times that for a decoder that
  blocks without using CPU;
* a worker that hits a limit or dies is replaced (``pebble.ProcessPool``), and only that file gets
  413 (memory, time) or 422 (the decoder crashed); every other upload carries on;
* the pool has one worker per core by default and a bounded queue: when ``workers + queue`` tasks
  are already in flight, the next one is refused with 503 and ``Retry-After``;
* bytes travel to the workers through pipes, never files, and a worker cannot open a file for
  writing at all (an audit hook refuses it), whatever a decoder or plugin tries.

``call`` blocks (for worker threads), ``run`` awaits (for the event loop; cancelling it stops the
task's worker). Both raise only ``DarkroomError`` subclasses for anything the bytes can cause.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import math
import multiprocessing
import os
import resource
import signal
import sys
import threading
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

from pebble import ProcessExpired, ProcessPool

from core.config import Settings
from core.errors import CorruptImage, DarkroomError, ServiceBusy, TooLarge
from core.units import format_bytes

log = logging.getLogger(__name__)
T = TypeVar("T")

RETRY_AFTER_SECONDS = 2
WALL_CLOCK_FACTOR = 6
# A worker is replaced after this many tasks, so that a fragmented heap does not grow forever
# (a new worker costs about a second of CPU, so not too often).
TASKS_PER_WORKER = 1000
# Single-threaded maths in the workers: the pool already uses every core, and a thread pool per
# worker would make the address-space limit depend on the core count.
_WORKER_ENVIRONMENT = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _vm_size() -> int:
    """This process's virtual memory size in bytes (what RLIMIT_AS counts)."""
    with open("/proc/self/statm", "rb") as statm:
        return int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC | getattr(os, "O_TMPFILE", 0)


def _refuse_file_writes(event: str, args: tuple[Any, ...]) -> None:
    """Audit hook of the workers: no file is opened for writing (uploads stay in RAM)."""
    if event != "open":
        return
    path, mode, flags = (list(args) + [None, None, None])[:3]
    if (isinstance(mode, str) and any(c in mode for c in "wax+")) or (isinstance(flags, int) and flags & _WRITE_FLAGS):
        raise PermissionError(f"decode workers do not write files ({path!r})")


def _with_cpu_budget(seconds: float, function: Callable[..., T], *args: Any) -> T:
    """Run one task with at most ``seconds`` more CPU time: past it the kernel ends the worker
    (SIGXCPU), however long a decoder stays in C code."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    soft = math.ceil(usage.ru_utime + usage.ru_stime + seconds)
    hard = resource.getrlimit(resource.RLIMIT_CPU)[1]
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))
    try:
        return function(*args)
    finally:  # an idle worker must not reach the limit while it sends the result or waits
        resource.setrlimit(resource.RLIMIT_CPU, (hard, hard))


def _start_worker(memory_bytes: int) -> None:
    """Worker initializer: load what the tasks need, then cap the address space above that and
    forbid file writes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the server's to handle, not the workers'
    import core.features.compute  # noqa: F401  numpy, scipy, Pillow: counted in the baseline
    import core.ingest  # noqa: F401

    limit = _vm_size() + memory_bytes
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    sys.addaudithook(_refuse_file_writes)


class _Task:
    """One submitted call: its caller's future, and pebble's once a worker runs it."""

    def __init__(self, function: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.function, self.args = function, args
        self.future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self.inner: concurrent.futures.Future[Any] | None = None
        self.pool: ProcessPool | None = None
        self.retried = False
        self.cancel_requested = False
        self.future.darkroom_task = self  # type: ignore[attr-defined]  found again by DecodePool.cancel


class DecodePool:
    """A bounded pool of sandboxed worker processes."""

    def __init__(self, settings: Settings) -> None:
        self.workers = settings.decode_workers or os.cpu_count() or 1
        self.capacity = self.workers + settings.decode_queue
        self.seconds = settings.decode_seconds
        self.memory_bytes = settings.decode_memory_bytes
        self.limits = _limits(settings)
        self._running = 0
        self._waiting: deque[_Task] = deque()
        self._live: set[_Task] = set()  # submitted and not yet answered
        self._lock = threading.Lock()
        for name, value in _WORKER_ENVIRONMENT.items():
            os.environ.setdefault(name, value)  # inherited by the spawned workers
        self._pool = self._new_pool()
        self._closed = False

    def _new_pool(self) -> ProcessPool:
        # spawn: forking a process that runs threads and an event loop is unsafe
        return ProcessPool(
            max_workers=self.workers,
            max_tasks=TASKS_PER_WORKER,
            initializer=_start_worker,
            initargs=(self.memory_bytes,),
            context=multiprocessing.get_context("spawn"),
        )

    def _schedule(self, task: _Task) -> None:
        """Hand ``task`` to pebble (a worker is free for it)."""
        pool = self._pool
        arguments = (self.seconds, task.function, *task.args)
        wall_clock = self.seconds * WALL_CLOCK_FACTOR
        try:
            inner = pool.schedule(_with_cpu_budget, args=arguments, timeout=wall_clock)
        except RuntimeError:
            self._replace(pool)
            pool = self._pool
            inner = pool.schedule(_with_cpu_budget, args=arguments, timeout=wall_clock)
        task.inner, task.pool = inner, pool
        inner.add_done_callback(lambda done: self._finished(task, done))
        if task.cancel_requested:  # cancelled while it was being handed over
            inner.cancel()

    def _replace(self, broken: ProcessPool) -> None:
        """pebble gives up on a pool whose idle worker was killed (it may have held the shared
        channel's lock): replace the whole pool and go on."""
        with self._lock:
            if self._closed:
                raise ServiceBusy("the server is shutting down; try again in a moment", RETRY_AFTER_SECONDS)
            if self._pool is not broken:
                return  # another caller replaced it already
            self._pool = self._new_pool()
        log.warning("the decode pool broke (a worker was killed while idle); it was replaced")
        broken.stop()
        # join() is what ends its workers; not here, where pebble's own loop thread may be running
        threading.Thread(target=broken.join, name="darkroom-pool-reaper", daemon=True).start()

    # -- admission and dispatch --
    def in_flight(self) -> int:
        """Tasks running or waiting for a worker."""
        with self._lock:
            return self._running + len(self._waiting)

    def submit(self, function: Callable[..., T], *args: Any) -> concurrent.futures.Future[T]:
        """Queue ``function(*args)`` for a worker (ServiceBusy when ``capacity`` tasks are in flight).
        Tasks wait here, not in pebble's pipe: handing pebble more tasks than workers stalls its
        channel (measured: 4x slower with 16 queued)."""
        task: _Task = _Task(function, args)
        with self._lock:
            if self._closed:
                raise ServiceBusy("the server is shutting down; try again in a moment", RETRY_AFTER_SECONDS)
            in_flight = self._running + len(self._waiting)
            if in_flight >= self.capacity:
                raise ServiceBusy(
                    f"the server is busy decoding {in_flight} images; try again in a moment", RETRY_AFTER_SECONDS
                )
            self._waiting.append(task)
            self._live.add(task)
        task.future.add_done_callback(lambda _: self._forget(task))
        self._dispatch()
        return task.future

    def _forget(self, task: _Task) -> None:
        with self._lock:
            self._live.discard(task)

    def _dispatch(self) -> None:
        """Give waiting tasks to free workers."""
        while True:
            with self._lock:
                if self._running >= self.workers or not self._waiting:
                    return
                task = self._waiting.popleft()
                if not task.future.set_running_or_notify_cancel():
                    continue  # cancelled while it waited
                self._running += 1
            try:
                self._schedule(task)
            except BaseException as exc:  # noqa: BLE001  the pool is closing: this task fails alone
                with self._lock:
                    self._running -= 1
                task.future.set_exception(exc)

    def _finished(self, task: _Task, inner: concurrent.futures.Future[Any]) -> None:
        with self._lock:
            self._running -= 1
        try:
            if inner.cancelled():
                task.future.set_exception(concurrent.futures.CancelledError())
                return
            error = inner.exception()
            if isinstance(error, concurrent.futures.BrokenExecutor) and not task.retried and not task.cancel_requested:
                # the pool broke under an innocent task (another worker was killed): run it again
                task.retried = True
                self._replace(task.pool)
                with self._lock:
                    self._running += 1
                self._schedule(task)
                return
            if error is not None:
                task.future.set_exception(error)
            else:
                task.future.set_result(inner.result())
        except BaseException as exc:  # noqa: BLE001
            if not task.future.done():
                task.future.set_exception(exc)
        finally:
            self._dispatch()

    def cancel(self, future: concurrent.futures.Future[Any]) -> None:
        """Cancel a submitted task: dropped if it still waits, its worker stopped if it runs."""
        task: _Task | None = getattr(future, "darkroom_task", None)
        if future.cancel():
            with self._lock:  # it waited: its place in the queue is free at once
                if task in self._waiting:
                    self._waiting.remove(task)
            return
        if task is None:
            return
        task.cancel_requested = True
        if task.inner is not None:
            task.inner.cancel()  # pebble stops the worker running it and starts a fresh one

    # -- results --
    def call(self, function: Callable[..., T], *args: Any) -> T:
        """Run ``function(*args)`` in a worker and wait (from a thread, never the event loop)."""
        return self.result(self.submit(function, *args))

    def result(self, future: concurrent.futures.Future[T]) -> T:
        """Wait for a submitted task (from a thread); every failure becomes a DarkroomError."""
        try:
            return future.result()
        except BaseException as exc:  # noqa: BLE001
            raise self._translate(exc) from None

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        """Run ``function(*args)`` in a worker and await it; cancelling stops that worker's task."""
        future = self.submit(function, *args)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            self.cancel(future)
            raise
        except BaseException as exc:  # noqa: BLE001
            raise self._translate(exc) from None

    def _translate(self, exc: BaseException) -> DarkroomError:
        if isinstance(exc, DarkroomError):
            return exc
        if isinstance(exc, TimeoutError | concurrent.futures.TimeoutError):
            return TooLarge(f"decoding the image took longer than {self.seconds * WALL_CLOCK_FACTOR:g} s")
        if isinstance(exc, MemoryError):
            return TooLarge(f"decoding the image needs more than its {format_bytes(self.memory_bytes)} memory budget")
        if isinstance(exc, ProcessExpired):
            if exc.exitcode in (-signal.SIGKILL, -signal.SIGSEGV, -signal.SIGBUS):
                log.warning("a decode worker died (exit code %s); it was replaced", exc.exitcode)
            if exc.exitcode == -signal.SIGXCPU:
                return TooLarge(f"decoding the image needs more than its {self.seconds:g} s CPU budget")
            if exc.exitcode == -signal.SIGKILL:  # the kernel's OOM killer, or a hard limit
                return TooLarge("decoding the image needed more memory than the server allows")
            return CorruptImage("the image could not be decoded: the decoder stopped on its data")
        if isinstance(exc, concurrent.futures.BrokenExecutor):
            return ServiceBusy("the image decoders are restarting; try again in a moment", RETRY_AFTER_SECONDS)
        if isinstance(exc, concurrent.futures.CancelledError):
            return ServiceBusy("the decode was cancelled because the server is shutting down", RETRY_AFTER_SECONDS)
        log.warning("unexpected decode failure: %s", type(exc).__name__)
        return CorruptImage("the image could not be decoded: its data is damaged")

    def close(self, grace_seconds: float = 2.0) -> None:
        """Stop taking work, give running tasks ``grace_seconds``, then stop every worker."""
        with self._lock:
            self._closed = True
            waiting, self._waiting = list(self._waiting), deque()
        for task in waiting:
            task.future.cancel()
        self._pool.close()
        try:
            self._pool.join(timeout=grace_seconds)
        except TimeoutError:
            self._pool.stop()
            self._pool.join(timeout=grace_seconds)
        with self._lock:
            unanswered = [task for task in self._live if not task.future.done()]
        stopped = ServiceBusy("the server is shutting down; try again in a moment", RETRY_AFTER_SECONDS)
        for task in unanswered:  # pebble drops the futures of the tasks it stopped: answer them here
            with contextlib.suppress(concurrent.futures.InvalidStateError):
                task.future.set_exception(stopped)

    def worker_pids(self) -> list[int]:
        """The live workers' process ids (for tests and benchmarks)."""
        workers = self._pool._pool_manager.worker_manager.workers  # pebble keeps no public list
        return [pid for pid, process in list(workers.items()) if process.is_alive()]


_pool: DecodePool | None = None
_pool_lock = threading.Lock()


def _limits(settings: Settings) -> tuple[object, ...]:
    return (settings.decode_workers, settings.decode_queue, settings.decode_seconds, settings.decode_memory_bytes)


def decode_pool(settings: Settings) -> DecodePool:
    """The process's decode pool, started on first use; started anew when the limits change."""
    global _pool
    with _pool_lock:
        if _pool is not None and not _pool._closed and _pool.limits == _limits(settings):
            return _pool
        stale, _pool = _pool, DecodePool(settings)
    if stale is not None:
        stale.close(grace_seconds=0)
    return _pool


def shutdown_decode_pool(grace_seconds: float = 2.0) -> None:
    """Stop the process's decode pool (on server shutdown, or before settings change)."""
    global _pool
    with _pool_lock:
        pool, _pool = _pool, None
    if pool is not None:
        pool.close(grace_seconds)
