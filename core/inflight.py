"""Bytes of unfinished uploads: one budget, a minimum rate, and a share of open uploads per address.

Every upload is in the server's RAM until it is stored, whatever the storage mode: multipart and
ZIP request bodies as their bytes arrive, WebSocket files from the header that announces them. So
they all come out of one budget (``UploadBudget``), ``DARKROOM_UPLOAD_BUDGET_BYTES`` at most and
never more than what the memory cap has left (in memory mode the stored images are in the same
RAM). A request body reserves its declared ``Content-Length`` before its first byte is read (a
chunked one reserves in steps of ``RESERVE_STEP_BYTES`` as it arrives), so a body held just before
its end counts in full; a WebSocket file reserves its announced size. Past the budget: 503 with
``Retry-After``. A reservation is given back exactly once: when its bytes are stored, refused, or
the client leaves.

Bytes of an unfinished upload must keep arriving (``MinimumRate``): after
``DARKROOM_UPLOAD_GRACE_SECONDS``, at ``DARKROOM_UPLOAD_MIN_BYTES_PER_SECOND`` on average, counted
over the time the server waits for them (never while it holds the client back). One timer per
upload, no polling: a client that stalls entirely is refused when its allowance runs out (408).

One client address may have ``DARKROOM_CLIENT_UPLOADS`` upload sockets and upload requests open at
once (``upload_slot``); more: 503 with ``Retry-After``, before any byte is read.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Awaitable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from starlette.requests import Request

from core import data_service, workspace
from core.clients import current_client
from core.config import Settings
from core.errors import ClientGone, RequestTimeout, ServiceBusy, TooLarge
from core.sessions import LEGACY_KEY, current_session_id
from core.storage.base import storage_full, workspace_full
from core.units import format_bytes

T = TypeVar("T")

RETRY_AFTER_SECONDS = 5  # a held upload is refused or finished within the grace period or so
RESERVE_STEP_BYTES = 1024 * 1024  # a body without Content-Length reserves this much ahead at a time
# Messages a server may hand a request after its body before the disconnect; past it, stop looking.
MAX_MESSAGES_AFTER_BODY = 16


@dataclass(frozen=True)
class Room:
    """What uploads may hold right now: the budget, and what the memory cap has left."""

    budget: int
    ram_left: int


async def server_room() -> Room:
    """The current room for uploads. A store that keeps its images in this process's RAM shares it
    with the uploads, so what it holds is taken off the cap; the others keep them elsewhere."""
    settings = data_service.settings()
    stored = 0
    if data_service.current_stores().sessions.in_process_memory:
        stored = (await data_service.run_store(workspace.totals, sessions_only=True)).bytes_held
    return Room(settings.upload_budget_bytes, settings.memory_cap_bytes - stored)


def budget_busy() -> ServiceBusy:
    """The one refusal of an upload past the budget."""
    return ServiceBusy(
        "the server is receiving too many uploads right now; send it again in a moment", RETRY_AFTER_SECONDS
    )


@dataclass(frozen=True)
class SessionRoom:
    """A session's side of a reservation: what it has stored and may store."""

    stored: int
    quota: int


class UploadBudget:
    """Bytes reserved by unfinished uploads, per session and in all (thread-safe: tests run several
    servers in one process)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_session: dict[str, int] = {}
        self.total = 0

    def reserve(self, key: str, size: int, room: Room, session: SessionRoom | None = None) -> None:
        """Reserve ``size`` bytes for session ``key``. Raises TooLarge (413: more than the whole
        budget, or than the session may hold), CapacityExceeded (507: more than the memory cap has
        left) or ServiceBusy (503: the budget is taken by other uploads for now)."""
        if size > room.budget:
            raise TooLarge(
                f"an upload of {format_bytes(size)} is more than the {format_bytes(room.budget)} "
                "the server receives at once"
            )
        if size > room.ram_left:
            raise storage_full("memory")
        with self._lock:
            held = self._by_session.get(key, 0)
            if session is not None and session.stored + held + size > session.quota:
                raise workspace_full(session.stored + held, session.quota, size)
            if self.total + size > min(room.budget, room.ram_left):
                raise budget_busy()
            self._by_session[key] = held + size
            self.total += size

    def held(self, key: str) -> int:
        """Bytes session ``key`` has reserved."""
        with self._lock:
            return self._by_session.get(key, 0)

    def release(self, key: str, size: int) -> None:
        """Give back ``size`` bytes of session ``key`` (callers release each reservation once)."""
        with self._lock:
            left = self._by_session.get(key, 0) - size
            if left > 0:
                self._by_session[key] = left
            else:
                self._by_session.pop(key, None)
            self.total -= size


budget = UploadBudget()


def budget_key() -> str:
    """The current caller's key in the budget: its session, or the legacy folder's."""
    return current_session_id() or LEGACY_KEY


class Reservation:
    """One request body's bytes in the budget: grown as the body needs, given back in parts as its
    files are stored, the rest when the request ends (``close``, idempotent)."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.reserved = 0  # bytes of the body covered so far
        self.released = 0

    @property
    def held(self) -> int:
        return self.reserved - self.released

    async def cover(self, size: int) -> None:
        """Make sure the first ``size`` bytes of the body are reserved (raises as ``reserve``)."""
        if size > self.reserved:
            budget.reserve(self.key, size - self.reserved, await server_room())
            self.reserved = size

    async def grow(self, size: int) -> None:
        """Reserve ``size`` bytes more than the body: what an archive's members unpack to while
        they are held beside it (raises as ``reserve``)."""
        if size > 0:
            budget.reserve(self.key, size, await server_room())
            self.reserved += size

    def release(self, size: int) -> None:
        """Give back ``size`` bytes (at most what is held): they were stored or dropped."""
        size = min(size, self.held)
        if size > 0:
            budget.release(self.key, size)
            self.released += size

    def close(self) -> None:
        self.release(self.held)


class MinimumRate:
    """The minimum rate of one unfinished upload: by the time the server has waited ``t`` seconds
    for it, ``(t - grace) * bytes_per_second`` bytes must have arrived (a rate of 0: no minimum)."""

    def __init__(self, bytes_per_second: int, grace_seconds: float) -> None:
        self.bytes_per_second = bytes_per_second
        self.grace_seconds = grace_seconds
        self.received = 0
        self.waited = 0.0  # seconds spent waiting for the client's bytes
        self._deadline: asyncio.TimerHandle | None = None
        self._waiting: tuple[asyncio.Task[Any], float] | None = None  # the task waiting, since when
        self._expired = False

    @classmethod
    def of(cls, settings: Settings) -> MinimumRate:
        return cls(settings.upload_min_bytes_per_second, settings.upload_grace_seconds)

    def allowed(self) -> float | None:
        """Seconds of waiting the bytes received so far buy (None: no minimum)."""
        if self.bytes_per_second <= 0:
            return None
        return self.grace_seconds + self.received / self.bytes_per_second

    def seconds_left(self) -> float | None:
        """How long the server may still wait for the next bytes (None: for ever)."""
        allowed = self.allowed()
        return None if allowed is None else allowed - self.waited

    def arrived(self, size: int, waited: float = 0.0) -> None:
        """``size`` more bytes arrived after ``waited`` more seconds; RequestTimeout when they
        came later than the bytes before them allowed."""
        self.waited += waited
        allowed = self.allowed()
        self.received += size
        if allowed is not None and self.waited > allowed:
            raise self.too_slow()

    async def wait(self, next_bytes: Awaitable[T]) -> T:
        """Await the client's next bytes for at most the time it has left (RequestTimeout after);
        the wait counts as the client's. One timer per upload, not one per read: it is armed for
        the latest moment the current wait may end, and a deadline only moves later as bytes
        arrive, so when it fires early it is armed again for what is left (``_check``)."""
        left = self.seconds_left()
        if left is None:
            return await next_bytes
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        started = loop.time()
        cancelling = task.cancelling()
        self._waiting = (task, started)
        if self._deadline is None:
            self._deadline = loop.call_at(started + left, self._check)
        try:
            return await next_bytes
        except asyncio.CancelledError:
            if self._expired and task.uncancel() <= cancelling:  # our cancel, not the caller's
                raise self.too_slow() from None
            raise
        finally:
            self._waiting = None
            self.waited += loop.time() - started

    def _check(self) -> None:
        """The timer fired: refuse the upload if it is waiting past its allowance, else arm the
        timer for the rest of the allowance (not waiting now: the next wait arms it)."""
        self._deadline = None
        if self._waiting is None or self._expired:
            return
        task, since = self._waiting
        loop = asyncio.get_running_loop()
        left = self.seconds_left()
        left = 0.0 if left is None else left - (loop.time() - since)
        if left > 0:
            self._deadline = loop.call_later(left, self._check)
        else:
            self._expired = True
            task.cancel()

    def close(self) -> None:
        """The upload ended: its timer goes."""
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def too_slow(self) -> RequestTimeout:
        return RequestTimeout(
            f"the upload arrived slower than {format_bytes(self.bytes_per_second)} per second "
            f"(after its first {self.grace_seconds:g} s); send it again over a faster connection"
        )


class UploadSlots:
    """Uploads (sockets and requests) open per client address; an address is forgotten at zero."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[str, int] = {}

    def take(self, address: str, limit: int) -> bool:
        """One more open upload for ``address``, unless it already has ``limit``."""
        with self._lock:
            count = self._open.get(address, 0)
            if count >= limit:
                return False
            self._open[address] = count + 1
            return True

    def give_back(self, address: str) -> None:
        with self._lock:
            count = self._open.get(address, 0) - 1
            if count > 0:
                self._open[address] = count
            else:
                self._open.pop(address, None)

    def open(self, address: str) -> int:
        """Uploads ``address`` has open now."""
        with self._lock:
            return self._open.get(address, 0)


slots = UploadSlots()


@contextlib.contextmanager
def upload_slot() -> Iterator[None]:
    """Hold one of the current client address's upload slots for the block. ServiceBusy (503,
    ``Retry-After``) when the address already has ``DARKROOM_CLIENT_UPLOADS`` open."""
    address = _take_slot()
    try:
        yield
    finally:
        slots.give_back(address)


def _take_slot() -> str:
    """Take one of the current client address's upload slots and return the address (give it back
    with ``slots.give_back``). ServiceBusy when the address already has its share open."""
    address = current_client()
    limit = data_service.settings().client_uploads
    if not slots.take(address, limit):
        raise ServiceBusy(
            f"your address already has {limit} uploads open at once; wait for one to finish", RETRY_AFTER_SECONDS
        )
    return address


def client_gone() -> ClientGone:
    return ClientGone("the connection closed before the upload was complete")


# Work awaited after a body is read watches the connection only once it has run this long: most
# uploads are answered sooner and cost no watcher task; a client that left is noticed this late.
WATCH_AFTER_SECONDS = 0.05


class IncomingBody:
    """One upload request's body, read through the budget and the minimum rate; work awaited on
    its behalf stops when the client leaves."""

    def __init__(self, request: Request, settings: Settings) -> None:
        self.request = request
        self.reservation = Reservation(budget_key())
        self.rate = MinimumRate.of(settings)

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body's chunks as they arrive (read from the ASGI ``receive``, like Starlette's
        ``request.stream()``). Raises ServiceBusy / CapacityExceeded / TooLarge
        (``UploadBudget.reserve``) when the budget cannot take them, RequestTimeout when they
        arrive too slowly, ClientGone when the client leaves."""
        declared = self.request.headers.get("content-length", "")
        if declared.isdigit():
            await self.reservation.cover(int(declared))
        receive = self.request.receive
        received = 0
        while True:
            message = await self.rate.wait(receive())
            if message["type"] == "http.disconnect":
                raise client_gone()
            chunk = message.get("body", b"")
            if chunk:
                self.rate.arrived(len(chunk))
                received += len(chunk)
                if received > self.reservation.reserved:  # no Content-Length, or a server that allows more
                    await self.reservation.cover(received + RESERVE_STEP_BYTES)
                yield chunk
            if not message.get("more_body", False):
                return

    async def unless_client_leaves(self, work: Awaitable[T]) -> T:
        """Await ``work`` (once the body is read); when the client leaves first, ``work`` is
        cancelled and ClientGone raised. After ``WATCH_AFTER_SECONDS`` a watcher task waits for the
        disconnect and cancels this task (``work`` unwinds in it, as a cancelled task would)."""
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        cancelling = task.cancelling()
        watcher: asyncio.Task[None] | None = None
        left = False

        def on_left(done: asyncio.Task[None]) -> None:
            nonlocal left
            if not done.cancelled() and done.exception() is None:
                left = True
                task.cancel()

        def watch() -> None:
            nonlocal watcher
            watcher = loop.create_task(_client_left(self.request))
            watcher.add_done_callback(on_left)

        start = loop.call_later(WATCH_AFTER_SECONDS, watch)
        try:
            return await work
        except asyncio.CancelledError:
            if left and task.uncancel() <= cancelling:  # the watcher's cancel, not the caller's
                raise client_gone() from None
            raise
        finally:
            start.cancel()
            if watcher is not None:
                watcher.remove_done_callback(on_left)
                watcher.cancel()


async def _client_left(request: Request) -> None:
    """Return when the client of a request whose body was read closes its connection."""
    for _ in range(MAX_MESSAGES_AFTER_BODY):
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return
    await asyncio.Event().wait()  # a server that keeps handing out messages: never seen leaving


class _Receiving:
    """``receiving``'s context manager (a class: no generator frame per request)."""

    def __init__(self, request: Request) -> None:
        self.body = IncomingBody(request, data_service.settings())
        self.address = _take_slot()

    def __enter__(self) -> IncomingBody:
        return self.body

    def __exit__(self, *exc_info: object) -> None:
        self.body.rate.close()
        self.body.reservation.close()
        slots.give_back(self.address)


def receiving(request: Request) -> _Receiving:
    """The upload request's slot of its address and its body's reservation, for a ``with`` block:
    taken before any byte is read, given back when it ends, however it ends. ServiceBusy (503,
    ``Retry-After``) when the address has no upload slot left (as ``upload_slot``)."""
    return _Receiving(request)
