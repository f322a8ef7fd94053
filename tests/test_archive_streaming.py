"""Archive downloads stream in small pieces (issue 16, must-have 7): every piece is at most 256 KiB,
the bytes are what ``ZipFile.writestr`` writes, CRC and joins run off the event loop, a slow reader
holds about 1 MiB of server memory whatever the workspace's size, and downloads are capped per
session and in all, each slot coming back when its stream ends or its client leaves."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import gc
import io
import os
import socket
import sys
import threading
import time
import tracemalloc
import zipfile
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest

from core.api import export
from core.api.export import ARCHIVE_BATCH_BYTES, ARCHIVE_PIECE_BYTES, download_slots, zip_pieces
from core.config import MiB
from tests.helpers import LiveServer, make_jpeg, new_session, upload

# What one reader may hold: a batch written ahead plus what the socket's user-space buffer takes
# beyond its high-water mark (one piece); kernel socket buffers are the kernel's, not counted.
READER_BOUND = 1 * MiB
ALLOCATION_BOUND = 2 * MiB  # tracemalloc peak while stalled: the bound plus transient copies
# Originals of about 5.7 MiB: four of them are far more than the loopback socket buffers take
# (4 MiB send buffer at most, 16 KiB receive buffer asked for below), so a reader that stops stalls.
BIG_ORIGINAL = {"width": 2000, "height": 1500, "quality": 100}
BIG_ORIGINALS = 4
CLIENT_RECEIVE_BUFFER = 16 * 1024
FIRST_READ_BYTES = 64 * 1024  # what the stalled reader takes before it stops reading
GIVE_UP_SECONDS = 60  # a guard against hanging, never a measure


def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Poll ``condition`` until it holds; fail (rather than hang) if it never does."""
    deadline = time.monotonic() + GIVE_UP_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"never happened: {what}")
        time.sleep(0.01)


# -- archives built in-process, compared with the standard library's --
class _Unseekable:
    """What ``ZipFile.writestr`` writes into when it cannot seek (as into a socket)."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass


def writestr_archive(members: list[tuple[zipfile.ZipInfo, bytes]]) -> bytes:
    sink = _Unseekable()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:  # type: ignore[arg-type]
        for info, data in copy.deepcopy(members):
            archive.writestr(info, data)
    return b"".join(sink.parts)


def members_of(sizes: list[int]) -> list[tuple[zipfile.ZipInfo, bytes]]:
    members = []
    for index, size in enumerate(sizes):
        info = zipfile.ZipInfo(f"folder/member {index}.bin", date_time=(2024, 5, 6, 7, 8, 10))
        info.external_attr = 0o644 << 16
        members.append((info, os.urandom(size)))
    return members


async def _feed(members: list[tuple[zipfile.ZipInfo, bytes]]) -> AsyncIterator[tuple[zipfile.ZipInfo, bytes]]:
    for member in copy.deepcopy(members):
        yield member


def pieces_of(members: list[tuple[zipfile.ZipInfo, bytes]]) -> list[bytes | memoryview]:
    async def collect() -> list[bytes | memoryview]:
        return [piece async for piece in zip_pieces(_feed(members))]

    return asyncio.run(collect())


# Zero-byte members, members around the batch and piece sizes, one spanning many batches, and a
# run of tiny ones that share pieces with the headers around them.
AWKWARD_SIZES = [
    0,
    1,
    ARCHIVE_PIECE_BYTES,
    ARCHIVE_BATCH_BYTES - 1,
    ARCHIVE_BATCH_BYTES,
    ARCHIVE_BATCH_BYTES + 1,
    0,
    3 * ARCHIVE_BATCH_BYTES + 7,
    *[5] * 40,
    0,
]


def test_every_piece_is_at_most_256_kib() -> None:
    pieces = pieces_of(members_of(AWKWARD_SIZES))
    assert max(len(piece) for piece in pieces) <= ARCHIVE_PIECE_BYTES == 256 * 1024
    assert len(pieces) > sum(AWKWARD_SIZES) // ARCHIVE_PIECE_BYTES  # members really are cut up


def test_the_archive_is_byte_for_byte_what_writestr_writes_and_unzips_to_the_originals() -> None:
    members = members_of(AWKWARD_SIZES)
    streamed = b"".join(pieces_of(members))
    assert streamed == writestr_archive(members)
    archive = zipfile.ZipFile(io.BytesIO(streamed))
    assert archive.testzip() is None
    assert [(info.filename, archive.read(info)) for info in archive.infolist()] == [
        (info.filename, data) for info, data in members
    ]


def test_an_empty_archive_is_what_writestr_writes() -> None:
    assert b"".join(pieces_of([])) == writestr_archive([])


def test_zip64_records_are_written_as_writestr_writes_them(monkeypatch) -> None:
    # The ZIP64 thresholds made small, for both writers alike: a member past 4 GiB and an archive of
    # more than 65535 members take the same code paths as these do.
    monkeypatch.setattr(zipfile, "ZIP64_LIMIT", 64 * 1024)
    monkeypatch.setattr(zipfile, "ZIP_FILECOUNT_LIMIT", 3)
    members = members_of([0, 100, 70 * 1024, ARCHIVE_BATCH_BYTES + 3, 5])
    streamed = b"".join(pieces_of(members))
    assert streamed == writestr_archive(members)
    assert b"PK\x06\x06" in streamed  # the ZIP64 end of central directory record
    archive = zipfile.ZipFile(io.BytesIO(streamed))
    assert [archive.read(info) for info in archive.infolist()] == [data for _, data in members]


# -- the writer's threads, and what happens when its reader leaves --
class _WriterLedger:
    """Installed in place of ``export._ZipWriter`` and its sink: counts the archive bytes produced,
    the threads the writing and the sink's joins ran in, and every write a sink accepted."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.produced = 0
        self.threads: set[int] = set()
        self.accepted_writes = 0
        self.hops_done = threading.Event()
        ledger = self

        class CountingSink(export._Sink):
            def write(self, data: bytes | memoryview) -> int:
                written = super().write(data)
                ledger.accepted_writes += 1
                return written

            def drain(self) -> Any:
                ledger.threads.add(threading.get_ident())
                return super().drain()

        class CountingWriter(export._ZipWriter):
            def write(self, spans: list[Any]) -> Any:
                try:
                    return ledger._count(super().write(spans))
                finally:
                    ledger.hops_done.set()

            def close(self) -> Any:
                return ledger._count(super().close())

        monkeypatch.setattr(export, "_Sink", CountingSink)
        monkeypatch.setattr(export, "_ZipWriter", CountingWriter)

    def _count(self, pieces: Any) -> Any:
        self.threads.add(threading.get_ident())
        self.produced += sum(len(piece) for piece in pieces)
        return pieces


@contextlib.contextmanager
def caught_unraisable() -> Iterator[list[object]]:
    """Exceptions raised where nobody can catch them (``__del__``, finalizers), while inside."""
    caught: list[object] = []
    previous, sys.unraisablehook = sys.unraisablehook, caught.append
    try:
        yield caught
    finally:
        sys.unraisablehook = previous


def test_a_stream_closed_early_writes_nothing_more_not_even_when_collected(monkeypatch) -> None:
    ledger = _WriterLedger(monkeypatch)
    members = members_of([3 * ARCHIVE_BATCH_BYTES, 10, 0, ARCHIVE_BATCH_BYTES])

    async def read_two_pieces_and_leave() -> None:
        stream = zip_pieces(_feed(members))
        await stream.__anext__()
        await stream.__anext__()
        await stream.aclose()

    with caught_unraisable() as unraisable:
        asyncio.run(read_two_pieces_and_leave())
        accepted = ledger.accepted_writes
        gc.collect()
    assert ledger.accepted_writes == accepted  # no member closed, no central directory written
    assert ledger.produced <= ARCHIVE_BATCH_BYTES + ARCHIVE_PIECE_BYTES  # one batch, not the members
    assert unraisable == []


def test_a_reader_leaving_while_a_batch_is_being_written_stops_the_writer_without_waiting_for_it(
    monkeypatch,
) -> None:
    ledger = _WriterLedger(monkeypatch)
    in_crc, let_crc_finish = threading.Event(), threading.Event()
    real_crc32 = zipfile.crc32

    def held_crc32(data: Any, value: int = 0) -> int:
        in_crc.set()
        let_crc_finish.wait(GIVE_UP_SECONDS)
        return real_crc32(data, value)

    monkeypatch.setattr(zipfile, "crc32", held_crc32)

    async def leave_during_a_batch() -> int:
        stream = zip_pieces(_feed(members_of([4 * ARCHIVE_BATCH_BYTES])))
        reading = asyncio.ensure_future(stream.__anext__())
        await asyncio.to_thread(in_crc.wait, GIVE_UP_SECONDS)
        reading.cancel()  # what Starlette does when the client disconnects
        with contextlib.suppress(asyncio.CancelledError):
            await reading
        await stream.aclose()  # returns at once: the worker thread is still inside crc32
        accepted = ledger.accepted_writes
        let_crc_finish.set()
        assert await asyncio.to_thread(ledger.hops_done.wait, GIVE_UP_SECONDS)
        return accepted

    with caught_unraisable() as unraisable:
        accepted = asyncio.run(leave_during_a_batch())
        gc.collect()
    assert ledger.accepted_writes == accepted  # the thread stopped at its next write and discarded
    assert unraisable == []


# -- a real server --
def big_originals() -> dict[str, bytes]:
    return {f"big-{seed}.jpg": make_jpeg(**BIG_ORIGINAL, seed=seed) for seed in range(BIG_ORIGINALS)}


@pytest.fixture
def big_workspace(api: httpx.Client) -> str:
    """A session holding several multi-MiB originals: far more than socket buffers take."""
    session = new_session(api)
    response = upload(api, session, *big_originals().items())
    assert response.status_code == 200 and len(response.json()["accepted"]) == BIG_ORIGINALS, response.text
    return session


class StalledReader:
    """A raw HTTP client of the archive that reads its head and a little of its body, then stops
    reading (its receive buffer kept small, so the kernel buffers little on its side)."""

    def __init__(self, server: LiveServer, session: str) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, CLIENT_RECEIVE_BUFFER)
        self.sock.settimeout(GIVE_UP_SECONDS)
        self.sock.connect(("127.0.0.1", server.port))
        self.port = self.sock.getsockname()[1]
        request = f"GET /api/images/archive?session_id={session} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        self.sock.sendall(request.encode())
        received = b""
        while b"\r\n\r\n" not in received:
            received += self.sock.recv(4096)
        self.head, _, body = received.partition(b"\r\n\r\n")
        self.received = len(body)
        while self.received < FIRST_READ_BYTES:
            self.received += len(self.sock.recv(FIRST_READ_BYTES - self.received))

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def stalled_readers(live_server: LiveServer) -> Iterator[Callable[[str], StalledReader]]:
    readers: list[StalledReader] = []

    def start(session: str) -> StalledReader:
        reader = StalledReader(live_server, session)
        readers.append(reader)
        assert reader.head.startswith(b"HTTP/1.1 200"), reader.head
        return reader

    yield start
    for reader in readers:
        reader.close()
    wait_until(lambda: download_slots.streaming() == 0, "every download slot back after the test")


def server_side_of(server: LiveServer, reader: StalledReader) -> Any:
    """uvicorn's protocol object serving ``reader``'s connection (its transport, its flow control)."""
    for protocol in list(server.server.server_state.connections):
        if getattr(protocol, "client", None) and protocol.client[1] == reader.port:
            return protocol
    raise AssertionError("no server connection for the reader")


def buffered_for(server: LiveServer, client: tuple[str, int]) -> int:
    """Bytes waiting in the user-space buffer of the server's socket to ``client``."""
    return sum(
        protocol.transport.get_write_buffer_size()
        for protocol in list(server.server.server_state.connections)
        if getattr(protocol, "client", None) and tuple(protocol.client) == tuple(client)
    )


class SendLedger:
    """Wraps the archive response's ``send``: what was handed to the socket, the largest body, and
    at every send the bytes this stream holds (produced by the writer and not yet handed over, plus
    the socket's user-space buffer)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, writer: _WriterLedger, server: LiveServer) -> None:
        self.handed_over = 0
        self.largest_body = 0
        self.most_held = 0
        self.sending = False
        ledger, original_call = self, export.ArchiveResponse.__call__

        async def counting_call(response: Any, scope: Any, receive: Any, send: Any) -> None:
            async def counted_send(message: dict[str, Any]) -> None:
                body = message.get("body", b"")
                held = writer.produced - ledger.handed_over + buffered_for(server, scope["client"])
                ledger.largest_body = max(ledger.largest_body, len(body))
                ledger.most_held = max(ledger.most_held, held)
                ledger.sending = True
                await send(message)
                ledger.sending = False
                ledger.handed_over += len(body)

            await original_call(response, scope, receive, counted_send)

        monkeypatch.setattr(export.ArchiveResponse, "__call__", counting_call)


def test_a_slow_archive_reader_holds_at_most_about_1_mib(
    api, live_server, big_workspace, stalled_readers, monkeypatch
) -> None:
    archive_bytes = BIG_ORIGINALS * len(make_jpeg(**BIG_ORIGINAL, seed=0))
    writer = _WriterLedger(monkeypatch)
    sends = SendLedger(monkeypatch, writer, live_server)
    gc.collect()
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        reader = stalled_readers(big_workspace)
        protocol = server_side_of(live_server, reader)
        # Stalled for good: the socket's buffer is over its high-water mark and the stream waits in
        # send; with the client reading nothing more, neither changes again.
        wait_until(lambda: protocol.flow.write_paused and sends.sending, "the stream waiting on the slow reader")
        held_now = writer.produced - sends.handed_over + protocol.transport.get_write_buffer_size()
        allocated_peak = tracemalloc.get_traced_memory()[1] - baseline
    finally:
        tracemalloc.stop()
    assert sends.handed_over < archive_bytes / 2, "the stream did not wait for its reader"
    assert download_slots.streaming(big_workspace) == 1
    assert held_now <= READER_BOUND, f"{held_now / MiB:.2f} MiB held once stalled"
    assert sends.most_held <= READER_BOUND, f"{sends.most_held / MiB:.2f} MiB held at worst"  # at every piece
    assert sends.largest_body <= ARCHIVE_PIECE_BYTES
    assert allocated_peak <= ALLOCATION_BOUND, f"{allocated_peak / MiB:.1f} MiB allocated while streaming"


def test_crc_and_joins_run_in_worker_threads_never_on_the_event_loop(api, live_server, monkeypatch) -> None:
    session = new_session(api)
    files = {"a.jpg": make_jpeg(900, 700, seed=1, quality=100), "b.jpg": make_jpeg(seed=2)}
    assert upload(api, session, *files.items()).status_code == 200
    crc_threads: set[int] = set()
    real_crc32 = zipfile.crc32

    def recorded_crc32(data: Any, value: int = 0) -> int:
        crc_threads.add(threading.get_ident())
        return real_crc32(data, value)

    monkeypatch.setattr(zipfile, "crc32", recorded_crc32)
    writer = _WriterLedger(monkeypatch)
    response = api.get("/api/images/archive", params={"session_id": session})
    assert response.status_code == 200
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    assert {name: archive.read(name) for name in archive.namelist()} == files
    loop_thread = live_server.thread.ident
    assert crc_threads and loop_thread not in crc_threads
    assert writer.threads and loop_thread not in writer.threads


def busy(response: httpx.Response) -> bool:
    return response.status_code == 503 and int(response.headers["retry-after"]) > 0 and bool(response.json()["detail"])


def archive(api: httpx.Client, session: str) -> httpx.Response:
    return api.get("/api/images/archive", params={"session_id": session})


def test_a_session_past_its_downloads_gets_503_while_another_session_downloads(api, configure, stalled_readers) -> None:
    configure(archive_downloads_per_session=1, archive_downloads=8)
    session = new_session(api)
    assert upload(api, session, *big_originals().items()).status_code == 200
    other = new_session(api)
    assert upload(api, other, ("small.jpg", make_jpeg(seed=9))).status_code == 200
    stalled_readers(session)
    refused = archive(api, session)
    assert busy(refused) and "workspace" in refused.json()["detail"]
    assert archive(api, other).status_code == 200


def test_the_server_past_its_downloads_gives_503_to_every_session(api, configure, stalled_readers) -> None:
    configure(archive_downloads_per_session=2, archive_downloads=1)
    session = new_session(api)
    assert upload(api, session, *big_originals().items()).status_code == 200
    other = new_session(api)
    assert upload(api, other, ("small.jpg", make_jpeg(seed=9))).status_code == 200
    stalled_readers(session)
    refused = archive(api, other)
    assert busy(refused) and "server" in refused.json()["detail"]
    assert busy(archive(api, session))


def test_a_slot_comes_back_when_the_stream_ends(api, configure) -> None:
    configure(archive_downloads_per_session=1)
    session = new_session(api)
    assert upload(api, session, ("small.jpg", make_jpeg(seed=10))).status_code == 200
    assert archive(api, session).status_code == 200
    wait_until(lambda: download_slots.streaming(session) == 0, "the slot back after the last piece")
    assert archive(api, session).status_code == 200


def test_a_slot_comes_back_when_the_client_leaves_mid_stream(api, configure, stalled_readers) -> None:
    configure(archive_downloads_per_session=1)
    session = new_session(api)
    assert upload(api, session, *big_originals().items()).status_code == 200
    reader = stalled_readers(session)
    assert busy(archive(api, session))
    reader.close()
    wait_until(lambda: download_slots.streaming(session) == 0, "the slot back after the client left")
    assert archive(api, session).status_code == 200


def test_a_slot_comes_back_when_the_archive_fails_before_its_first_piece(api, configure, monkeypatch) -> None:
    configure(archive_downloads_per_session=1)
    session = new_session(api)
    assert upload(api, session, ("small.jpg", make_jpeg(seed=11))).status_code == 200

    def broken_store() -> dict[str, object]:
        raise OSError("the store went away")

    monkeypatch.setattr(export.workspace, "list_annotations", broken_store)
    with contextlib.suppress(httpx.HTTPError):
        archive(api, session)
    wait_until(lambda: download_slots.streaming(session) == 0, "the slot back after the failure")
    monkeypatch.undo()
    assert archive(api, session).status_code == 200


def test_a_response_dropped_without_being_sent_gives_its_slot_back() -> None:
    release = download_slots.take("a-test-key", per_session=1, in_all=10**6)

    async def never_iterated() -> Any:
        yield b""

    response = export.ArchiveResponse(never_iterated(), release)
    assert download_slots.streaming("a-test-key") == 1
    del response
    gc.collect()
    assert download_slots.streaming("a-test-key") == 0


def test_one_name_uploaded_many_times_is_numbered_in_order_skipping_taken_numbers() -> None:
    taken: set[str] = set()
    numbers: dict[str, int] = {}
    names = [export.member_name("a.jpg", taken, last_number=numbers) for _ in range(500)]
    assert names[:3] == ["a.jpg", "a (2).jpg", "a (3).jpg"] and names[-1] == "a (500).jpg"
    taken_plain: set[str] = {"b (2).jpg"}
    assert export.member_name("b.jpg", taken_plain) == "b.jpg"
    assert export.member_name("b.jpg", taken_plain, last_number={}) == "b (3).jpg"
