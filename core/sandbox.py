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
import logging
import math
import multiprocessing
import os
import resource
import signal
import sys
import threading
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
    resource.setrlimit(resource.RLIMIT_CPU, (soft, resource.getrlimit(resource.RLIMIT_CPU)[1]))
    return function(*args)


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


class DecodePool:
    """A bounded pool of sandboxed worker processes."""

    def __init__(self, settings: Settings) -> None:
        self.workers = settings.decode_workers or os.cpu_count() or 1
        self.capacity = self.workers + settings.decode_queue
        self.seconds = settings.decode_seconds
        self.memory_bytes = settings.decode_memory_bytes
        self.limits = _limits(settings)
        self._in_flight = 0
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

    def _schedule(self, function: Callable[..., T], args: tuple[Any, ...]) -> concurrent.futures.Future[T]:
        pool = self._pool
        task = (self.seconds, function, *args)
        wall_clock = self.seconds * WALL_CLOCK_FACTOR
        try:
            future = pool.schedule(_with_cpu_budget, args=task, timeout=wall_clock)
        except RuntimeError:
            self._replace(pool)
            pool = self._pool
            future = pool.schedule(_with_cpu_budget, args=task, timeout=wall_clock)
        future.darkroom_task = (function, args, pool)  # type: ignore[attr-defined]  to retry on a broken pool
        return future

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

    def _retry_if_broken(self, future: concurrent.futures.Future[T], exc: BaseException) -> bool:
        """Whether ``exc`` means the pool broke under an innocent task (then it is run again once)."""
        return isinstance(exc, concurrent.futures.BrokenExecutor) and hasattr(future, "darkroom_task")

    # -- admission --
    def _admit(self) -> None:
        with self._lock:
            if self._closed:
                raise ServiceBusy("the server is shutting down; try again in a moment", RETRY_AFTER_SECONDS)
            if self._in_flight >= self.capacity:
                raise ServiceBusy(
                    f"the server is busy decoding {self._in_flight} images; try again in a moment",
                    RETRY_AFTER_SECONDS,
                )
            self._in_flight += 1

    def _release(self, _future: object = None) -> None:
        with self._lock:
            self._in_flight -= 1

    def in_flight(self) -> int:
        with self._lock:
            return self._in_flight

    def submit(self, function: Callable[..., T], *args: Any) -> concurrent.futures.Future[T]:
        """Schedule ``function(*args)`` in a worker (ServiceBusy when the queue is full)."""
        self._admit()
        try:
            future = self._schedule(function, args)
        except BaseException:
            self._release()
            raise
        future.add_done_callback(self._release)
        return future

    # -- results --
    def call(self, function: Callable[..., T], *args: Any) -> T:
        """Run ``function(*args)`` in a worker and wait (from a thread, never the event loop)."""
        return self.result(self.submit(function, *args))

    def result(self, future: concurrent.futures.Future[T]) -> T:
        """Wait for a submitted task (from a thread); every failure becomes a DarkroomError."""
        try:
            try:
                return future.result()
            except concurrent.futures.BrokenExecutor as exc:
                if not self._retry_if_broken(future, exc):
                    raise
                function, args, pool = future.darkroom_task  # type: ignore[attr-defined]
                self._replace(pool)
                return self.call(function, *args)
        except BaseException as exc:  # noqa: BLE001
            raise self._translate(exc) from None

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        """Run ``function(*args)`` in a worker and await it; cancelling stops that worker's task."""
        for attempt in range(2):
            future = self.submit(function, *args)
            try:
                return await asyncio.wrap_future(future)
            except asyncio.CancelledError:
                future.cancel()  # pebble stops the worker running it and starts a fresh one
                raise
            except BaseException as exc:  # noqa: BLE001
                if attempt == 0 and self._retry_if_broken(future, exc):
                    self._replace(future.darkroom_task[2])  # type: ignore[attr-defined]
                    continue
                raise self._translate(exc) from None
        raise AssertionError("unreachable")

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
        self._pool.close()
        try:
            self._pool.join(timeout=grace_seconds)
        except TimeoutError:
            self._pool.stop()
            self._pool.join(timeout=grace_seconds)

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
