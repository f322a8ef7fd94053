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
* the pool has one worker per core by default, and free workers are shared fairly (below);
* bytes travel to the workers through pipes, never files, and a worker cannot open a file for
  writing at all (an audit hook refuses it), whatever a decoder or plugin tries.

Scheduling. Every task has an owner, read from the context when it is submitted: its session
(``core.sessions``; calls without one share the owner ``LEGACY_OWNER``) and its client address
(``core.clients``), so callers pass nothing. Tasks wait in a queue per session (per session and
address, when one workspace is used from two addresses). A free worker goes first to the client
address with the fewest decodes running, then to that address's session with the fewest running;
equals take turns in the order they reached their count (round-robin). So a session with nothing
in flight goes next whenever its address has nothing running either, and always among its
address's sessions: one client's queued 50 MP PNGs never make another client's JPEG wait behind
them. Picking costs O(workers), never a scan of the sessions; cancelling a waiting task is O(1);
an owner with nothing in flight is forgotten, so memory follows live work only.

Big decodes. A task may be ``heavy``: an image over ``DARKROOM_DECODE_HEAVY_PIXELS`` by its header
(``core.prechecks.pixels_at_a_glance``), or of a format whose size is not read at a glance; never a
JPEG, which is decoded reduced. At most ``workers - 1`` heavy tasks run at once (one, on a single
worker): while they do, a free worker goes to the first queue in the order above whose next task is
light. So 50 MP PNGs from any number of clients never take every worker from a 200 KB JPEG, and the
workers together hold at most that many full-size frames.

Admission. A task is refused with 503 and ``Retry-After``, with a message about the caller's own
share, when its session already has ``DARKROOM_DECODE_SESSION_TASKS`` decodes running or queued,
or its client address ``DARKROOM_DECODE_CLIENT_TASKS`` over all its sessions. Beyond that the
pool holds ``workers + DARKROOM_DECODE_QUEUE`` tasks; past it, a session with nothing in flight is
still admitted (one client filling the queue cannot refuse another), up to ``NEWCOMER_ROOM_FACTOR``
times that bound in all, so memory stays bounded however many sessions there are.

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
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from pebble import ProcessExpired, ProcessPool

from core import formats
from core.clients import current_client
from core.config import Settings
from core.errors import CorruptImage, DarkroomError, ServiceBusy, TooLarge
from core.sessions import current_session_id
from core.units import format_bytes

log = logging.getLogger(__name__)
T = TypeVar("T")
Member = TypeVar("Member")

RETRY_AFTER_SECONDS = 2
LEGACY_OWNER = "legacy"  # the owner of calls without a session (the shared folder); never a session id
# Past a full queue, sessions with nothing in flight are still admitted, up to this many times the
# pool's bound in all: a bound on memory whatever the number of sessions.
NEWCOMER_ROOM_FACTOR = 2
WALL_CLOCK_FACTOR = 6
# A worker is replaced after this many tasks, so that a fragmented heap does not grow forever. A
# new worker costs about 0.7 s of CPU (NumPy, SciPy, Pillow): at 1000 tasks that was 0.7 ms per small
# decode, a quarter of a small upload's CPU. Measured: a worker's RSS stays flat (114 MB) over 6000
# mixed decodes, and RLIMIT_AS still bounds any growth (the worker is replaced when it is reached).
TASKS_PER_WORKER = 10_000
# Single-threaded maths in the workers: the pool already uses every core, and a thread pool per
# worker would make the address-space limit depend on the core count.
_WORKER_ENVIRONMENT = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
# A worker whose task ran out of memory exits with this code instead of answering: an allocation
# can fail anywhere (a plugin's import, a codec's state), so the worker is not trusted again.
OUT_OF_MEMORY_EXIT_CODE = 86


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
    except MemoryError:
        os._exit(OUT_OF_MEMORY_EXIT_CODE)  # pebble starts a fresh worker; the task reads as 413
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


class _WorkerContext(multiprocessing.context.SpawnContext):
    """The spawn start method (forking a process that runs threads and an event loop is unsafe),
    remembering the processes it starts: pebble keeps no public list of its workers."""

    def __init__(self) -> None:
        super().__init__()
        self.started: weakref.WeakSet[multiprocessing.process.BaseProcess] = weakref.WeakSet()

    def Process(self, *args: Any, **kwargs: Any) -> multiprocessing.process.BaseProcess:  # noqa: N802  pebble's name
        process = multiprocessing.context.SpawnProcess(*args, **kwargs)
        self.started.add(process)
        return process


class _Turns(Generic[Member]):
    """Whose turn it is for the next free worker: members wait at a level, the number of their
    decodes running (fewest first), in the order they reached it, so equals take turns. Picking
    costs O(levels), moving O(1); a member with nothing waiting is not here at all."""

    def __init__(self, levels: int) -> None:
        self._levels: list[OrderedDict[str, Member]] = [OrderedDict() for _ in range(levels)]
        self._level_of: dict[str, int] = {}

    def place(self, key: str, member: Member, level: int | None) -> None:
        """Put ``member`` at ``level`` (None: it waits for nothing); it keeps its turn if already there."""
        if level is not None:
            level = min(level, len(self._levels) - 1)
        current = self._level_of.get(key)
        if current == level:
            return
        if current is not None:
            del self._levels[current][key]
            del self._level_of[key]
        if level is not None:
            self._levels[level][key] = member
            self._level_of[key] = level

    def first(self) -> Member | None:
        for level in self._levels:
            if level:
                return next(iter(level.values()))
        return None

    def __iter__(self) -> Iterator[Member]:
        """Every member, in turn order (the order ``first`` would give them)."""
        for level in self._levels:
            yield from level.values()

    def __len__(self) -> int:
        return len(self._level_of)


class _Queue:
    """One session's tasks from one client address: those waiting, in order, and how many run."""

    __slots__ = ("session", "client", "waiting", "running")

    def __init__(self, session: _Share, client: _Client) -> None:
        self.session, self.client = session, client
        self.waiting: OrderedDict[_Task, None] = OrderedDict()  # an ordered set: O(1) to cancel any
        self.running = 0


class _Share:
    """A session's count of tasks running or queued (its cap), over every address using it."""

    __slots__ = ("key", "tasks", "queued")

    def __init__(self, key: str) -> None:
        self.key, self.tasks, self.queued = key, 0, 0


class _Client:
    """A client address: its sessions' queues, whose turn among them, and its counts."""

    __slots__ = ("address", "queues", "turns", "running", "tasks")

    def __init__(self, address: str, levels: int) -> None:
        self.address = address
        self.queues: dict[str, _Queue] = {}
        self.turns: _Turns[_Queue] = _Turns(levels)
        self.running = 0
        self.tasks = 0  # running or queued: its cap


class _Task:
    """One submitted call: its caller's future, and pebble's once a worker runs it."""

    def __init__(self, function: Callable[..., Any], args: tuple[Any, ...], heavy: bool = False) -> None:
        self.function, self.args, self.heavy = function, args, heavy
        self.future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self.inner: concurrent.futures.Future[Any] | None = None
        self.pool: ProcessPool | None = None
        self.queue: _Queue | None = None  # set once admitted
        self.retried = False
        self.cancel_requested = False
        self.future.darkroom_task = self  # type: ignore[attr-defined]  found again by DecodePool.cancel


class DecodePool:
    """A bounded pool of sandboxed worker processes, shared fairly between sessions and client
    addresses (see the module docstring)."""

    def __init__(self, settings: Settings) -> None:
        self.workers = settings.decode_workers or os.cpu_count() or 1
        self.capacity = self.workers + settings.decode_queue
        self.heavy_slots = max(1, self.workers - 1)  # one worker stays free for small decodes
        self.heavy_pixels = settings.decode_heavy_pixels
        self.session_tasks = settings.decode_session_tasks
        self.client_tasks = settings.decode_client_tasks
        self.seconds = settings.decode_seconds
        self.memory_bytes = settings.decode_memory_bytes
        self.limits = _limits(settings)
        self.submitted = 0  # tasks accepted since the pool started (tests and benchmarks count work with it)
        self._running = 0
        self._heavy_running = 0
        self._queued = 0
        self._levels = self.workers + 1  # a client or session runs 0..workers tasks
        self._turns: _Turns[_Client] = _Turns(self._levels)
        self._clients: dict[str, _Client] = {}
        self._sessions: dict[str, _Share] = {}
        self._live: set[_Task] = set()  # submitted and not yet answered
        self._lock = threading.Lock()
        for name, value in _WORKER_ENVIRONMENT.items():
            os.environ.setdefault(name, value)  # inherited by the spawned workers
        self._pool = self._new_pool()  # sets self._context
        self._closed = False

    @property
    def one_caller(self) -> int:
        """How many decodes one upload (a request or a socket) keeps in flight: enough to feed
        every worker and have one ready, never more than a session's or an address's share, so
        that an upload's own files wait for each other instead of being refused."""
        return max(1, min(self.workers + 1, self.session_tasks, self.client_tasks))

    def _new_pool(self) -> ProcessPool:
        self._context = _WorkerContext()  # this pool's workers only
        return ProcessPool(
            max_workers=self.workers,
            max_tasks=TASKS_PER_WORKER,
            initializer=_start_worker,
            initargs=(self.memory_bytes,),
            context=self._context,
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

    # -- counts (for the health route, tests and benchmarks) --
    def in_flight(self) -> int:
        """Tasks running or waiting for a worker, over every owner."""
        with self._lock:
            return self._running + self._queued

    def queued(self, session_id: str | None) -> int:
        """Tasks of this session (None: the legacy folder) waiting for a worker."""
        with self._lock:
            share = self._sessions.get(session_id or LEGACY_OWNER)
            return share.queued if share is not None else 0

    def owners(self) -> tuple[int, int]:
        """Sessions and client addresses the pool keeps counts for: those with tasks in flight."""
        with self._lock:
            return len(self._sessions), len(self._clients)

    # -- admission --
    def is_heavy(self, fmt: str, pixels: int | None) -> bool:
        """Whether decoding an image of ``fmt`` with ``pixels`` (None: not known) is a heavy task:
        over ``DARKROOM_DECODE_HEAVY_PIXELS`` or of unknown size, except a format decoded reduced
        (``ImageFormat.draft``: a JPEG)."""
        return not formats.get(fmt).draft and (pixels is None or pixels > self.heavy_pixels)

    def submit(self, function: Callable[..., T], *args: Any, heavy: bool = False) -> concurrent.futures.Future[T]:
        """Queue ``function(*args)`` for a worker, owned by the current session and client address;
        ``heavy`` (a big image, see ``is_heavy``): it runs on at most ``heavy_slots`` workers at once.
        ServiceBusy (503) past the session's or the address's share, or when the pool is full and
        the session already has tasks in flight. Tasks wait here, not in pebble's pipe: handing
        pebble more tasks than workers stalls its channel (measured: 4x slower with 16 queued)."""
        task: _Task = _Task(function, args, heavy)
        session_key, address = current_session_id() or LEGACY_OWNER, current_client()
        task.future.add_done_callback(lambda _: self._settle(task))
        with self._lock:
            self._admit(session_key, address)
            share = self._sessions.get(session_key) or self._sessions.setdefault(session_key, _Share(session_key))
            client = self._clients.get(address) or self._clients.setdefault(address, _Client(address, self._levels))
            queue = client.queues.get(session_key) or client.queues.setdefault(session_key, _Queue(share, client))
            task.queue = queue
            queue.waiting[task] = None
            share.tasks += 1
            share.queued += 1
            client.tasks += 1
            self._queued += 1
            self.submitted += 1
            self._live.add(task)
            self._place(queue)
        self._dispatch()
        return task.future

    def _admit(self, session_key: str, address: str) -> None:
        """Raise ServiceBusy unless one more task of this session and address may wait (under the lock)."""
        if self._closed:
            raise ServiceBusy("the server is shutting down; try again in a moment", RETRY_AFTER_SECONDS)
        share, client = self._sessions.get(session_key), self._clients.get(address)
        session_tasks = share.tasks if share is not None else 0
        if session_tasks >= self.session_tasks:
            raise ServiceBusy(
                f"this workspace already has {session_tasks} images being decoded or waiting to be; "
                "try again when they are done",
                RETRY_AFTER_SECONDS,
            )
        if client is not None and client.tasks >= self.client_tasks:
            raise ServiceBusy(
                f"your address already has {client.tasks} images being decoded or waiting to be, over all "
                "its workspaces; try again when they are done",
                RETRY_AFTER_SECONDS,
            )
        in_flight = self._running + self._queued
        newcomer = session_tasks == 0 and in_flight < NEWCOMER_ROOM_FACTOR * self.capacity
        if in_flight >= self.capacity and not newcomer:
            raise ServiceBusy(
                f"the server is busy decoding {in_flight} images; try again in a moment", RETRY_AFTER_SECONDS
            )

    # -- dispatch (every method here runs under the lock) --
    def _place(self, queue: _Queue) -> None:
        """Put ``queue`` and its client where their running counts say, or forget them when idle."""
        client, session_key = queue.client, queue.session.key
        if client.queues.get(session_key) is queue:  # else forgotten already, and maybe replaced by a new one
            client.turns.place(session_key, queue, queue.running if queue.waiting else None)
            if not queue.waiting and not queue.running:
                del client.queues[session_key]
        self._turns.place(client.address, client, client.running if len(client.turns) else None)
        self._forget_if_idle(client, queue.session)

    def _forget_if_idle(self, client: _Client, share: _Share) -> None:
        if not client.queues and not client.tasks:
            self._clients.pop(client.address, None)
        if not share.tasks:
            self._sessions.pop(share.key, None)

    def _next_task(self) -> _Task | None:
        """The next task to run, taken from its queue: the client address with the fewest running,
        then its session with the fewest running, each in turn among equals. While the heavy slots
        are taken, the first queue in that order whose next task is light."""
        client = self._turns.first()
        queue = client.turns.first() if client is not None else None
        if queue is None:
            return None
        if self._heavy_running >= self.heavy_slots and next(iter(queue.waiting)).heavy:
            # O(queues waiting): at most the pool's bound on tasks, never the number of sessions
            queue = next(
                (light for waiting in self._turns for light in waiting.turns if not next(iter(light.waiting)).heavy),
                None,
            )
            if queue is None:
                return None  # only heavy tasks wait: the next one goes when a heavy one ends
        task, _ = queue.waiting.popitem(last=False)
        queue.session.queued -= 1
        self._queued -= 1
        return task

    def _start_running(self, task: _Task) -> None:
        queue = task.queue
        assert queue is not None
        queue.running += 1
        queue.client.running += 1
        self._running += 1
        self._heavy_running += task.heavy
        self._place(queue)

    def _stop_running(self, task: _Task) -> None:
        """``task``'s worker is free (under the lock)."""
        queue = task.queue
        assert queue is not None
        queue.running -= 1
        queue.client.running -= 1
        self._running -= 1
        self._heavy_running -= task.heavy
        self._place(queue)

    def _settle(self, task: _Task) -> None:
        """``task``'s caller has its answer (a result, an error, or a cancel): its share is free."""
        task.args = ()  # nothing runs it any more: its bytes are not kept for the future's holders
        queue = task.queue
        if queue is None:
            return  # never admitted
        with self._lock:
            self._live.discard(task)
            if task in queue.waiting:  # cancelled while it waited: its place is free at once
                del queue.waiting[task]
                queue.session.queued -= 1
                self._queued -= 1
            queue.session.tasks -= 1
            queue.client.tasks -= 1
            self._place(queue)

    def _dispatch(self) -> None:
        """Give waiting tasks to free workers."""
        while True:
            with self._lock:
                if self._closed or self._running >= self.workers:
                    return
                task = self._next_task()
                if task is None:
                    return
                if not task.future.set_running_or_notify_cancel():
                    self._place(task.queue)  # type: ignore[arg-type]  cancelled as it was picked
                    continue
                self._start_running(task)
            try:
                self._schedule(task)
            except BaseException as exc:  # noqa: BLE001  the pool is closing: this task fails alone
                with self._lock:
                    self._stop_running(task)
                task.future.set_exception(exc)

    def _finished(self, task: _Task, inner: concurrent.futures.Future[Any]) -> None:
        try:
            if (
                not inner.cancelled()
                and isinstance(inner.exception(), concurrent.futures.BrokenExecutor)
                and not task.retried
                and not task.cancel_requested
            ):
                # the pool broke under an innocent task (another worker was killed): run it again
                task.retried = True
                try:
                    self._replace(task.pool)  # type: ignore[arg-type]
                    self._schedule(task)  # it keeps its worker slot
                    return
                except BaseException as exc:  # noqa: BLE001  no new worker: this task fails alone
                    with self._lock:
                        self._stop_running(task)
                    task.future.set_exception(exc)
                    return
            task.args = ()  # answered: its bytes go now, not when the last reference to its future does
            with self._lock:
                self._stop_running(task)
            if inner.cancelled():
                task.future.set_exception(concurrent.futures.CancelledError())
            elif inner.exception() is not None:
                task.future.set_exception(inner.exception())
            else:
                task.future.set_result(inner.result())
        except BaseException as exc:  # noqa: BLE001  a done-callback: its caller must still get an answer
            if not task.future.done():
                with contextlib.suppress(concurrent.futures.InvalidStateError):
                    task.future.set_exception(exc)
        finally:
            self._dispatch()

    def cancel(self, future: concurrent.futures.Future[Any]) -> None:
        """Cancel a submitted task: dropped from its queue if it still waits (O(1)), its worker
        stopped if it runs."""
        if future.cancel():  # it waited: ``_settle`` frees its place and its share at once
            return
        task: _Task | None = getattr(future, "darkroom_task", None)
        if task is None:
            return
        task.cancel_requested = True
        if task.inner is not None:
            task.inner.cancel()  # pebble stops the worker running it and starts a fresh one

    # -- results --
    def call(self, function: Callable[..., T], *args: Any, heavy: bool = False) -> T:
        """Run ``function(*args)`` in a worker and wait (from a thread, never the event loop)."""
        return self.result(self.submit(function, *args, heavy=heavy))

    def result(self, future: concurrent.futures.Future[T]) -> T:
        """Wait for a submitted task (from a thread); every failure becomes a DarkroomError."""
        try:
            return future.result()
        except BaseException as exc:  # noqa: BLE001
            raise self._translate(exc) from None

    async def run(self, function: Callable[..., T], *args: Any, heavy: bool = False) -> T:
        """Run ``function(*args)`` in a worker and await it; cancelling stops that worker's task."""
        future = self.submit(function, *args, heavy=heavy)
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
        out_of_memory = isinstance(exc, ProcessExpired) and exc.exitcode == OUT_OF_MEMORY_EXIT_CODE
        if isinstance(exc, MemoryError) or out_of_memory:
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
            waiting = [task for client in self._clients.values() for q in client.queues.values() for task in q.waiting]
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
        started = set(self._context.started)
        return [process.pid for process in multiprocessing.active_children() if process in started and process.pid]


_pool: DecodePool | None = None
_pool_lock = threading.Lock()


def _limits(settings: Settings) -> tuple[object, ...]:
    return (
        settings.decode_workers,
        settings.decode_queue,
        settings.decode_session_tasks,
        settings.decode_client_tasks,
        settings.decode_seconds,
        settings.decode_memory_bytes,
    )


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
