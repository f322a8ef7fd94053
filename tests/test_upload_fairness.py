"""Uploads take a fair share: one budget for bytes in flight (multipart bodies and WebSocket files),
a minimum rate, an idle timeout for upload sockets, a cap on open uploads per client address, work
that stops when its client leaves, and ``Retry-After`` on every 503 (``core.inflight``)."""

from __future__ import annotations

import asyncio
import io
import json
import socket
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator

import pytest
from starlette.requests import Request
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from core import data_service, uploads
from core.api.data_input import upload_response
from core.config import MiB
from core.errors import ClientGone, DarkroomError, ServiceBusy
from core.inflight import LEGACY_KEY, WATCH_AFTER_SECONDS, IncomingBody, MinimumRate, Reservation, budget, slots
from tests.helpers import listed, make_jpeg, new_session, upload

BOUNDARY = "fairshareboundary"
POLL_ROUNDS = 400  # polls of a condition the server reaches on its own (each sleeps POLL_SECONDS)
POLL_SECONDS = 0.025


def eventually(condition: Callable[[], bool]) -> bool:
    """Whether ``condition`` holds within a bounded number of polls (the server settles in its own
    time; nothing here measures how long)."""
    for _ in range(POLL_ROUNDS):
        if condition():
            return True
        time.sleep(POLL_SECONDS)
    return condition()


@pytest.fixture(autouse=True)
def nothing_left_in_flight() -> Iterator[None]:
    """Every test starts with an empty budget and ends with one: what a test reserved came back."""
    assert eventually(lambda: budget.total == 0 and slots.open("127.0.0.1") == 0)
    yield
    assert eventually(lambda: budget.total == 0), f"{budget.total} bytes still reserved"
    assert eventually(lambda: slots.open("127.0.0.1") == 0)


def ws_connect(live_server, session_id: str):
    return connect(f"{live_server.ws_url}/api/ws/upload?session_id={session_id}", compression=None)


def receive_until(ws, *kinds: str) -> dict:
    while True:
        message = json.loads(ws.recv(timeout=20))
        if message["type"] in kinds:
            return message


def closed_code(ws) -> int:
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            ws.recv(timeout=20)
    return closed.value.rcvd.code


def multipart_head(port: int, session_id: str, content_length: int, path: str = "/api/images") -> bytes:
    return (
        f"POST {path}?session_id={session_id} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {content_length}\r\n\r\n"
    ).encode()


def file_part(name: str, field: str = "files") -> bytes:
    return (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{field}"; filename="{name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """The status, headers and body of the answer on a raw connection (read until it closes or the
    declared length is in)."""
    sock.settimeout(20)
    data = b""
    while b"\r\n\r\n" not in data:
        piece = sock.recv(65536)
        if not piece:
            break
        data += piece
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    while len(body) < int(headers.get("content-length", 0)):
        piece = sock.recv(65536)
        if not piece:
            break
        body += piece
    return int(lines[0].split(" ")[1]), headers, body


# -- the budget for bytes in flight --
def test_a_held_multipart_body_counts_against_the_budget_until_it_is_dropped(api, live_server, configure):
    configure(upload_budget_bytes=2 * MiB, upload_min_bytes_per_second=0)  # no minimum: only the budget acts
    session = new_session(api)
    held = socket.create_connection(("127.0.0.1", live_server.port))
    held.sendall(multipart_head(live_server.port, session, 2 * MiB - 1024) + file_part("held.jpg") + b"\xff" * 4096)
    assert eventually(lambda: budget.held(session) == 2 * MiB - 1024)  # declared, before its end arrived
    refused = upload(api, session, ("b.jpg", make_jpeg(seed=2)))
    assert refused.status_code == 503
    assert int(refused.headers["Retry-After"]) >= 1
    assert "too many uploads" in refused.json()["detail"]
    held.close()  # the client leaves: its reservation comes back
    assert eventually(lambda: budget.total == 0)
    assert upload(api, session, ("b.jpg", make_jpeg(seed=2))).status_code == 200
    assert [image["filename"] for image in listed(api, session)] == ["b.jpg"]


def test_a_body_larger_than_the_memory_cap_has_left_is_507_before_it_is_read(api, configure):
    configure(memory_cap_bytes=64 * 1024)
    response = upload(api, new_session(api), ("big.jpg", make_jpeg(400, 300, seed=3, quality=100)))
    assert response.status_code == 507
    assert "memory" in response.json()["detail"]


def test_websocket_files_and_multipart_bodies_share_the_budget(api, live_server, configure):
    configure(upload_budget_bytes=MiB, upload_min_bytes_per_second=0)
    session = new_session(api)
    with ws_connect(live_server, session) as ws:
        receive_until(ws, "ready")
        ws.send(json.dumps({"filename": "announced.jpg", "size": MiB - 1024}))
        ws.send(b"\xff" * 1024)  # and then holds the rest
        receive_until(ws, "progress")
        refused = upload(api, session, ("b.jpg", make_jpeg(seed=4)))
        assert refused.status_code == 503 and int(refused.headers["Retry-After"]) >= 1
        with ws_connect(live_server, session) as second:
            receive_until(second, "ready")
            second.send(json.dumps({"filename": "c.jpg", "size": 4096}))
            result = receive_until(second, "result")
            assert result["status"] == 503 and result["retry_after"] >= 1
            assert "do not send it" in result["detail"]
    assert eventually(lambda: budget.total == 0)
    assert upload(api, session, ("b.jpg", make_jpeg(seed=4))).status_code == 200


def test_reservations_come_back_once_whether_files_are_stored_refused_or_abandoned(api, live_server, configure):
    configure(max_file_bytes=512 * 1024)
    session = new_session(api)
    assert upload(api, session, ("a.jpg", make_jpeg(seed=5))).status_code == 200
    assert upload(api, session, ("bad.jpg", b"not an image")).status_code == 415
    assert upload(api, session, ("huge.jpg", b"\xff" * (600 * 1024))).status_code == 413
    with ws_connect(live_server, session) as ws:
        receive_until(ws, "ready")
        photo = make_jpeg(seed=6)
        ws.send(json.dumps({"filename": "w.jpg", "size": len(photo)}))
        ws.send(photo)
        assert receive_until(ws, "result")["status"] == 200
        ws.send(json.dumps({"filename": "half.jpg", "size": 10_000}))
        ws.send(b"\xff" * 5000)
        receive_until(ws, "progress")
    assert eventually(lambda: budget.total == 0)  # and never below: each was given back exactly once
    assert budget.held(session) == 0 and budget.held(LEGACY_KEY) == 0


def test_a_reservation_is_given_back_at_most_once():
    reservation = Reservation(f"test-{uuid.uuid4()}")
    budget.reserve(reservation.key, 1000, room=_room())
    reservation.reserved = 1000
    reservation.release(600)
    reservation.release(600)  # only the 400 still held go
    reservation.close()
    reservation.close()
    assert budget.held(reservation.key) == 0 and budget.total == 0


def _room():
    from core.inflight import Room

    return Room(budget=10 * MiB, ram_left=10 * MiB)


# -- the minimum rate and the idle timeout --
def test_a_stalled_upload_socket_is_closed_and_its_reservation_returned(api, live_server, configure):
    configure(upload_grace_seconds=0.3, upload_min_bytes_per_second=MiB)
    session = new_session(api)
    with ws_connect(live_server, session) as ws:
        receive_until(ws, "ready")
        ws.send(json.dumps({"filename": "stalled.jpg", "size": 6 * MiB}))
        ws.send(b"\xff" * 1024)  # and then nothing
        error = receive_until(ws, "error")
        assert error["status"] == 408 and "slower than 1 MiB per second" in error["detail"]
        assert closed_code(ws) == 1008
    assert eventually(lambda: budget.total == 0)
    assert listed(api, session) == []


def test_an_upload_socket_that_receives_nothing_is_closed_as_idle(api, live_server, configure):
    configure(upload_idle_seconds=0.3)
    with ws_connect(live_server, new_session(api)) as ws:
        receive_until(ws, "ready")
        error = receive_until(ws, "error")  # the client sends nothing at all
        assert error["status"] == 408 and "received nothing for 0.3 s" in error["detail"]
        assert closed_code(ws) == 1008


def test_a_socket_waiting_for_its_results_is_not_idle(api, live_server, configure):
    configure(upload_idle_seconds=0.3)
    session = new_session(api)
    with ws_connect(live_server, session) as ws:
        receive_until(ws, "ready")
        for seed in range(3):
            photo = make_jpeg(640, 480, seed=seed)
            ws.send(json.dumps({"filename": f"{seed}.jpg", "size": len(photo)}))
            ws.send(photo)
        ws.send(json.dumps({"type": "done"}))
        assert receive_until(ws, "summary")["accepted"] == 3
    assert len(listed(api, session)) == 3


def test_a_slow_multipart_body_is_refused_with_408_and_its_reservation_returned(api, live_server, configure):
    configure(upload_grace_seconds=0.3, upload_min_bytes_per_second=MiB)
    session = new_session(api)
    with socket.create_connection(("127.0.0.1", live_server.port)) as slow:
        slow.sendall(multipart_head(live_server.port, session, 4 * MiB) + file_part("slow.jpg") + b"\xff" * 1024)
        status, headers, body = read_response(slow)  # it sends nothing more
    assert status == 408
    assert "slower than 1 MiB per second" in json.loads(body)["detail"]
    assert eventually(lambda: budget.total == 0)
    assert listed(api, session) == []


def test_the_minimum_rate_applies_after_the_grace_period_to_the_time_spent_waiting():
    rate = MinimumRate(bytes_per_second=1000, grace_seconds=2.0)
    assert rate.seconds_left() == 2.0
    rate.arrived(3000, waited=1.5)  # within the grace period
    assert rate.seconds_left() == pytest.approx(3.5)  # 2 s of grace + 3 s bought by the bytes - 1.5 s
    with pytest.raises(DarkroomError) as late:
        rate.arrived(10, waited=4.0)
    assert late.value.status_code == 408
    assert MinimumRate(bytes_per_second=0, grace_seconds=1.0).seconds_left() is None  # 0: no minimum


async def test_one_rate_timer_refuses_a_stalled_read_after_rearming_for_time_the_bytes_bought():
    rate = MinimumRate(bytes_per_second=10_000, grace_seconds=0.2)
    assert await rate.wait(_after(0.05, b"x" * 5000)) == b"x" * 5000  # buys 0.5 s more
    rate.arrived(5000)
    # longer than the first deadline (0.2 s after the first wait began): the timer fires early,
    # finds time left and is armed again, so this read is not refused
    assert await rate.wait(_after(0.3, b"y")) == b"y"
    rate.arrived(1)
    with pytest.raises(DarkroomError) as stalled:  # nothing more ever comes
        await rate.wait(asyncio.Event().wait())
    assert stalled.value.status_code == 408 and "slower than" in stalled.value.message
    rate.close()


async def test_the_rate_timer_never_fires_on_the_server_s_own_time():
    rate = MinimumRate(bytes_per_second=10_000, grace_seconds=0.1)
    await rate.wait(_after(0, b"x"))
    rate.arrived(1)
    await asyncio.sleep(0.3)  # past the deadline, but the server holds the client back: no refusal
    assert await rate.wait(_after(0, b"y")) == b"y"
    rate.close()


async def test_a_caller_s_own_cancel_of_a_read_stays_a_cancel():
    rate = MinimumRate(bytes_per_second=10_000, grace_seconds=5.0)
    reader = asyncio.ensure_future(rate.wait(asyncio.Event().wait()))
    await asyncio.sleep(0.05)
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader
    rate.close()


async def _after(seconds: float, value: bytes) -> bytes:
    await asyncio.sleep(seconds)
    return value


def _request_whose_client(leaves_after: float | None) -> tuple[Request, list[str]]:
    """A Starlette request whose body is read: its client leaves after ``leaves_after`` seconds
    (None: it stays). The list records each ``receive`` call."""
    calls: list[str] = []

    async def receive() -> dict:
        calls.append("receive")
        if leaves_after is None:
            await asyncio.Event().wait()
        await asyncio.sleep(leaves_after)
        return {"type": "http.disconnect"}

    return Request({"type": "http", "method": "POST", "path": "/", "headers": []}, receive), calls


async def test_work_after_the_body_is_cancelled_when_the_client_leaves():
    request, _ = _request_whose_client(leaves_after=0.05)
    body = IncomingBody(request, data_service.settings())
    work = asyncio.Event()
    with pytest.raises(ClientGone):
        await body.unless_client_leaves(work.wait())  # never set: only the client's leaving ends it


async def test_quick_work_after_the_body_never_watches_the_connection():
    request, calls = _request_whose_client(leaves_after=None)
    body = IncomingBody(request, data_service.settings())
    assert await body.unless_client_leaves(_after(0, b"done")) == b"done"
    await asyncio.sleep(WATCH_AFTER_SECONDS * 2)
    assert calls == []  # answered before the watch would start: no watcher task was made


async def test_a_caller_s_own_cancel_of_work_after_the_body_stays_a_cancel():
    request, calls = _request_whose_client(leaves_after=None)
    body = IncomingBody(request, data_service.settings())
    waiting = asyncio.ensure_future(body.unless_client_leaves(asyncio.Event().wait()))
    await asyncio.sleep(WATCH_AFTER_SECONDS * 2)
    assert calls == ["receive"]  # the watcher is on
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting


# -- the share of open uploads per client address --
def test_one_address_past_its_share_of_open_uploads_gets_503_and_1013(api, live_server, configure):
    configure(client_uploads=1)
    session = new_session(api)
    with ws_connect(live_server, session) as first:
        receive_until(first, "ready")
        with ws_connect(live_server, session) as second:
            error = receive_until(second, "error")
            assert error["status"] == 503 and error["retry_after"] >= 1
            assert "uploads open at once" in error["detail"]
            with pytest.raises(ConnectionClosed) as closed:
                second.recv(timeout=20)
            assert closed.value.rcvd.code == 1013 and "uploads open at once" in closed.value.rcvd.reason
        refused = upload(api, session, ("a.jpg", make_jpeg(seed=7)))
        assert refused.status_code == 503 and int(refused.headers["Retry-After"]) >= 1
        zipped = api.post("/api/images/zip", params={"session_id": session}, files={"file": ("a.zip", b"PK")})
        assert zipped.status_code == 503 and "Retry-After" in zipped.headers
    assert eventually(lambda: slots.open("127.0.0.1") == 0)
    assert upload(api, session, ("a.jpg", make_jpeg(seed=7))).status_code == 200


# -- work stops when the client leaves --
def _archive_of(members: int) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        for seed in range(members):
            archive.writestr(f"{seed:04}.jpg", make_jpeg(320, 240, seed=seed))
    return out.getvalue()


def test_a_disconnected_zip_upload_stops_decoding(api, live_server, configure):
    members = 600
    configure(decode_workers=1, decode_session_tasks=4, zip_max_entries=members)
    pool = data_service.sandbox()
    session = new_session(api)
    archive = _archive_of(members)
    before = pool.submitted
    leaving = socket.create_connection(("127.0.0.1", live_server.port))
    body = file_part("many.zip", field="file") + archive + f"\r\n--{BOUNDARY}--\r\n".encode()
    leaving.sendall(multipart_head(live_server.port, session, len(body), "/api/images/zip") + body)
    assert eventually(lambda: pool.submitted - before >= 4)  # it is decoding
    leaving.close()
    assert eventually(lambda: pool.in_flight() == 0 and pool.owners() == (0, 0))
    decoded = pool.submitted - before
    assert decoded < members  # the rest of the archive was never decoded
    assert pool.queued(session) == 0
    assert listed(api, session) == []  # nothing of it was stored
    assert eventually(lambda: budget.total == 0)
    assert pool.submitted - before == decoded  # and nothing more started after it settled


def test_a_zip_upload_reserves_what_its_members_unpack_to_while_it_is_stored(api, live_server, configure):
    members = 600
    configure(decode_workers=1, decode_session_tasks=2, zip_max_entries=members)
    session = new_session(api)
    archive = _archive_of(members)
    with zipfile.ZipFile(io.BytesIO(archive)) as opened:
        unpacked = sum(info.file_size for info in opened.infolist())
    leaving = socket.create_connection(("127.0.0.1", live_server.port))
    body = file_part("many.zip", field="file") + archive + f"\r\n--{BOUNDARY}--\r\n".encode()
    leaving.sendall(multipart_head(live_server.port, session, len(body), "/api/images/zip") + body)
    # the members are held beside the archive until stored: both count against the budget
    assert eventually(lambda: budget.held(session) >= len(archive) + unpacked)
    leaving.close()
    assert eventually(lambda: budget.total == 0)
    assert listed(api, session) == []


def test_a_zip_over_the_upload_socket_reserves_what_its_members_unpack_to(api, archive_socket, configure):
    members = 600
    configure(decode_workers=1, decode_session_tasks=2, zip_max_entries=members)
    session = new_session(api)
    archive = _archive_of(members)
    with zipfile.ZipFile(io.BytesIO(archive)) as opened:
        unpacked = sum(info.file_size for info in opened.infolist())
    ws = connect(f"{archive_socket.ws_url}/ws/{session}", compression=None, max_size=None)
    ws.recv(timeout=5)
    ws.send(json.dumps({"filename": "many.zip", "size": len(archive)}))
    for start in range(0, len(archive), 256 * 1024):
        ws.send(archive[start : start + 256 * 1024])
    # as over multipart: the members are held beside the archive until stored, both in the budget
    assert eventually(lambda: budget.held(session) >= len(archive) + unpacked)
    ws.close()
    assert eventually(lambda: budget.total == 0)


# -- Retry-After on every 503 --
def test_every_503_of_the_upload_paths_carries_retry_after(configure):
    report = uploads.UploadReport(rejected=[uploads.Rejection("a.jpg", 503, "the decoders are busy")])
    response = upload_response({}, report)
    assert response.status_code == 503 and int(response.headers["Retry-After"]) >= 1
    fine = upload_response({}, uploads.UploadReport())
    assert "retry-after" not in fine.headers


def test_an_error_with_a_new_message_keeps_its_retry_after_and_every_attribute():
    busy = ServiceBusy("the server holds its maximum of workspaces", retry_after=30)
    busy.extra = "kept"
    again = busy.with_message(f"{busy.message}; nothing was stored")
    assert type(again) is ServiceBusy and again.retry_after == 30 and again.extra == "kept"
    assert again.message == str(again) == "the server holds its maximum of workspaces; nothing was stored"
    assert again.headers == {"Retry-After": "30"}
