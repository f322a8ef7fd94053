"""Issue 16's benchmark: can one client take a real Darkroom server away from the others?

    python -m bench.abuse                          # every case, about 40 s of attack each
    python -m bench.abuse --case decode --quick    # one case, a 10 s attack (a smoke run)
    python -m bench.abuse --json /tmp/abuse.json   # also write the results as JSON

Each case starts a fresh ``python -m ui.main`` with default settings, except that 127.0.0.1 is a
trusted proxy: the attacker's requests name 203.0.113.7 in ``X-Forwarded-For``, the innocent's
198.51.100.1, the health probe's 192.0.2.10, so they are different clients to the server. During
the attack (after a short ramp-up) it measures:

  * the innocent: another session's 200 KB JPEG uploads, one after another (p50, p95, statuses);
  * ``/api/health`` polled from a third address: its worst latency;
  * the server tree (the server and its decode workers, from /proc): RSS growth, peak minus the
    idle level before the attack, and CPU seconds from the attack's start until the server is
    idle again afterwards (work left behind counts), per hostile request made;
  * every status either side saw; a 5xx other than 503/507, or a 503 without ``Retry-After``
    (``retry_after`` on a WebSocket), breaks the rules.

Targets, every case: innocent p95 <= 2 s and every innocent upload accepted, health <= 1 s, RSS
growth <= 768 MiB, <= 5 s CPU per hostile request, no 5xx but 503/507 with Retry-After.

The attacker, the innocent and the probes all run in this process, on the same 2 cores as the
server: the bench's own CPU is printed per case, and latencies include its share.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._abuse_tools import (  # noqa: E402
    Body,
    Png,
    Tally,
    big_png,
    close_quietly,
    jpeg_variant,
    multipart,
    noise_png,
    open_raw,
    read_response_head,
    request_head,
    send_pieces,
    small_pngs,
    stored_zip,
)
from bench.common import percentile, photo_like_jpeg  # noqa: E402
from bench.hostile import cpu_seconds, rss_bytes  # noqa: E402
from core.config import Settings  # noqa: E402
from tests.helpers import free_port  # noqa: E402
from tests.server_process import ServerProcess  # noqa: E402

MiB = 1024 * 1024
ATTACKER, INNOCENT, HEALTH_PROBE = "203.0.113.7", "198.51.100.1", "192.0.2.10"
SERVER_ENV = {"DARKROOM_TRUSTED_PROXIES": "127.0.0.1"}

TARGET_INNOCENT_P95 = 2.0
TARGET_HEALTH = 1.0
TARGET_RSS = 768 * MiB
TARGET_CPU_PER_REQUEST = 5.0
INNOCENT_OK = {"200", "ws result 200", "workspace ws result 200"}
MIN_INNOCENT_SAMPLES = 20

WINDOW_SECONDS, QUICK_WINDOW_SECONDS = 40.0, 10.0  # each case's attack
RAMP_SECONDS, QUICK_RAMP_SECONDS = 2.0, 1.0  # the attack runs this long before the measures start
SETUP_SECONDS = 240.0  # filling workspaces before an attack
SETTLE_SECONDS = 15.0  # at most, waiting for the server to be idle after the attack
IDLE_CPU_PER_SAMPLE = 0.05  # server-tree CPU seconds per sample below which it counts as idle
SETTLE_SAMPLE_SECONDS = 0.5
RSS_SAMPLE_SECONDS = 0.1
REQUEST_TIMEOUT = 30.0  # the innocent's and the probe's; longer work of the attacker gets more
ATTACKER_TIMEOUT = 300.0
HEALTH_INTERVAL = 0.1
INNOCENT_JPEG_BYTES = 200 * 1024
INNOCENT_VARIANTS = 4
INNOCENT_PAUSE = 0.25
NEWCOMER_PAUSE = 0.55  # a newcomer per upload stays under the default 120 new sessions a minute
REFUSED_PAUSE = 0.1  # an attacker refused comes straight back, but does not spin


# -- the files, made on first use --
class Files:
    """What the cases send; the big PNGs are made once and cached under /tmp."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @cached_property
    def big(self) -> Png:
        return big_png(self.settings)

    @cached_property
    def noise(self) -> Png:
        return noise_png(self.settings)

    @cached_property
    def innocent_jpegs(self) -> list[bytes]:
        return [photo_like_jpeg(seed, 1024, 768, INNOCENT_JPEG_BYTES) for seed in range(INNOCENT_VARIANTS)]

    @cached_property
    def small(self) -> list[bytes]:
        return small_pngs(1)


# -- one attack's context --
class Attack:
    """What a case's setup and attack use: the server, the files, the attacker's tally and count
    of hostile requests, and the innocent's tally (for probes of the attacked workspace)."""

    def __init__(self, server: ServerProcess, files: Files, quick: bool) -> None:
        self.server = server
        self.files = files
        self.settings = files.settings
        self.quick = quick
        self.host = f"127.0.0.1:{server.port}"
        self.tally = Tally()
        self.innocent = Tally()
        self.requests = 0
        self.notes: list[str] = []
        self.sessions: list[str] = []  # what setup made for the attack

    def headers(self, address: str = ATTACKER) -> dict[str, str]:
        return {"X-Forwarded-For": address}

    def client(self, address: str = ATTACKER) -> httpx.AsyncClient:
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        return httpx.AsyncClient(
            base_url=self.server.url, headers=self.headers(address), timeout=ATTACKER_TIMEOUT, limits=limits
        )

    def ws_url(self, path: str, session: str) -> str:
        return f"ws://{self.host}{path}?session_id={session}"

    async def request(
        self, client: httpx.AsyncClient, method: str, path: str, session: str, **kwargs: Any
    ) -> httpx.Response | None:
        """One hostile HTTP request, counted and tallied; None when the connection failed."""
        self.requests += 1
        try:
            response = await client.request(
                method, path, params={"session_id": session, **kwargs.pop("params", {})}, **kwargs
            )
        except httpx.TransportError as exc:
            self.tally.add(type(exc).__name__)
            return None
        self.tally.http(response.status_code, response.headers)
        return response

    async def raw_client(self, receive_buffer: int | None = None) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await open_raw("127.0.0.1", self.server.port, receive_buffer)

    def raw_head(self, method: str, target: str, extra: dict[str, str] | None = None) -> bytes:
        return request_head(method, target, self.host, {**self.headers(), **(extra or {})})


def new_session_id() -> str:
    """An id a script invents (any well-formed UUID4 is a workspace)."""
    return str(uuid.uuid4())


async def ws_upload(url: str, address: str, name: str, data: bytes, tally: Tally, prefix: str = "ws ") -> None:
    """One file over ``/api/ws/upload`` (``url``), as a script does; its result goes to ``tally``."""
    try:
        async with ws_connect(
            url,
            additional_headers={"X-Forwarded-For": address},
            compression=None,
            max_size=None,
            open_timeout=REQUEST_TIMEOUT,
            close_timeout=2,
            ping_interval=None,
        ) as ws:
            ready = json.loads(await ws.recv())
            if ready.get("type") == "error":
                tally.ws_message(ready, prefix)
                return
            await ws.send(json.dumps({"filename": name, "size": len(data)}))
            await ws.send(data)
            while (message := json.loads(await ws.recv()))["type"] not in ("result", "error"):
                pass
            tally.ws_message(message, prefix)
            if message["type"] == "result":
                await ws.send(json.dumps({"type": "done"}))
                while json.loads(await ws.recv())["type"] != "summary":
                    pass
    except InvalidStatus as refused:
        tally.http(refused.response.status_code, refused.response.headers, f"{prefix}handshake ")
    except ConnectionClosed as closed:
        tally.ws_close(closed.rcvd.code if closed.rcvd else None, prefix)
    except (OSError, TimeoutError, InvalidHandshake) as exc:
        tally.add(f"{prefix}{type(exc).__name__}")


# -- the innocent, the health probe and the RSS sampler (threads: the attacker's loop may be busy) --
class Innocent(threading.Thread):
    """Another user's 200 KB JPEG uploads, one after another, into a session of its own (mode
    ``multipart``), into a new session each time (``newcomer``), or alternating multipart and
    WebSocket (``alternate``)."""

    def __init__(self, server: ServerProcess, session: str, jpegs: list[bytes], tally: Tally, mode: str) -> None:
        super().__init__(daemon=True)
        self.server, self.session, self.jpegs, self.tally, self.mode = server, session, jpegs, tally, mode
        self.latencies: list[float] = []
        self.halt = threading.Event()

    def run(self) -> None:
        asyncio.run(self._uploads())

    async def _uploads(self) -> None:
        pause = NEWCOMER_PAUSE if self.mode == "newcomer" else INNOCENT_PAUSE
        async with httpx.AsyncClient(
            base_url=self.server.url, headers={"X-Forwarded-For": INNOCENT}, timeout=REQUEST_TIMEOUT
        ) as client:
            for number in itertools.count():
                if self.halt.is_set():
                    return
                data = jpeg_variant(self.jpegs[number % len(self.jpegs)], f"innocent-{number}")
                session = new_session_id() if self.mode == "newcomer" else self.session
                name = f"innocent-{number}.jpg"
                started = time.perf_counter()
                if self.mode == "alternate" and number % 2:
                    url = f"ws://127.0.0.1:{self.server.port}/api/ws/upload?session_id={session}"
                    await ws_upload(url, INNOCENT, name, data, self.tally)
                else:
                    try:
                        response = await client.post(
                            "/api/images", params={"session_id": session}, files={"files": (name, data, "image/jpeg")}
                        )
                        self.tally.http(response.status_code, response.headers)
                    except httpx.TransportError as exc:
                        self.tally.add(type(exc).__name__)
                self.latencies.append(time.perf_counter() - started)
                await asyncio.sleep(pause)


class HealthProbe(threading.Thread):
    """``GET /api/health`` every 0.1 s from a third address; the worst latency seen."""

    def __init__(self, server: ServerProcess) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.worst = 0.0
        self.polls = 0
        self.tally = Tally()
        self.halt = threading.Event()

    def run(self) -> None:
        with httpx.Client(headers={"X-Forwarded-For": HEALTH_PROBE}, timeout=REQUEST_TIMEOUT) as client:
            while not self.halt.is_set():
                started = time.perf_counter()
                try:
                    response = client.get(f"{self.server.url}/api/health")
                    self.tally.http(response.status_code, response.headers)
                except httpx.TransportError as exc:
                    self.tally.add(type(exc).__name__)
                self.worst = max(self.worst, time.perf_counter() - started)
                self.polls += 1
                self.halt.wait(HEALTH_INTERVAL)


class PeakRss(threading.Thread):
    """The server tree's RSS, sampled every 0.1 s; the peak."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = rss_bytes(pid)
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            self.peak = max(self.peak, rss_bytes(self.pid))
            self.halt.wait(RSS_SAMPLE_SECONDS)


# -- the cases --
DECODE_CONNECTIONS = 6


async def decode(attack: Attack) -> None:
    """6 connections, each uploading a legal 50 MP PNG (other bytes each time) into its session and
    deleting it once accepted, without end."""

    async def connection(client: httpx.AsyncClient, index: int) -> None:
        session = new_session_id()
        for round_ in itertools.count():
            tag = f"decode-{index}-{round_}"
            body, content_type, _ = multipart("files", [(f"{tag}.png", attack.files.big.variant(tag))])
            content = b"".join(body.pieces)
            response = await attack.request(
                client, "POST", "/api/images", session, content=content, headers={"Content-Type": content_type}
            )
            if response is not None and response.status_code == 200:
                for record in response.json()["accepted"]:
                    await client.delete(f"/api/images/{record['id']}", params={"session_id": session})
            else:
                await asyncio.sleep(REFUSED_PAUSE)

    async with attack.client() as client, asyncio.TaskGroup() as group:
        for index in range(DECODE_CONNECTIONS):
            group.create_task(connection(client, index))


ZIP_CONNECTIONS = 6
ZIP_MEMBERS = 6
ZIP_LINGER_SECONDS = 1.0  # after the last byte: long enough for decoding to start, then the client leaves


async def zip_disconnect(attack: Attack) -> None:
    """6 connections, each sending a ZIP of six 50 MP PNGs and leaving 1 s after its last byte,
    again and again: what the server decodes after they left is counted too."""

    async def connection(index: int) -> None:
        session = new_session_id()
        for round_ in itertools.count():
            members = []
            for member in range(ZIP_MEMBERS):
                tag = f"zip-{index}-{round_}-{member}"
                members.append((f"{tag}.png", attack.files.big.variant(tag), attack.files.big.variant_crc(tag)))
            body, content_type, _ = multipart("file", [("photos.zip", stored_zip(members).pieces)])
            await post_and_leave(attack, f"/api/images/zip?session_id={session}", body, content_type)

    async with asyncio.TaskGroup() as group:
        for index in range(ZIP_CONNECTIONS):
            group.create_task(connection(index))


async def post_and_leave(attack: Attack, target: str, body: Body, content_type: str) -> None:
    """Send the whole body, wait ``ZIP_LINGER_SECONDS`` for an answer, then close the connection."""
    attack.requests += 1
    reader, writer = await attack.raw_client()
    try:
        head = attack.raw_head("POST", target, {"Content-Type": content_type, "Content-Length": str(len(body))})
        with contextlib.suppress(ConnectionError):
            await send_pieces(writer, [head, *body.pieces])
        try:
            async with asyncio.timeout(ZIP_LINGER_SECONDS):  # not wait_for: in 3.11 it can swallow the cancel
                response = await read_response_head(reader)
            attack.tally.http(response.status, response.headers)
        except TimeoutError:
            attack.tally.add("left")
        except ConnectionError:
            attack.tally.add("closed")
    finally:
        close_quietly(writer)


FEATURE_WORKSPACES, QUICK_FEATURE_WORKSPACES = 16, 4  # of one accepted 50 MP PNG each
FEATURE_CONNECTIONS = 3
SETUP_UPLOADS_AT_ONCE = 2


async def features_big_setup(attack: Attack) -> None:
    count = QUICK_FEATURE_WORKSPACES if attack.quick else FEATURE_WORKSPACES
    at_once = asyncio.Semaphore(SETUP_UPLOADS_AT_ONCE)
    async with attack.client() as client:

        async def fill(index: int) -> str:
            session = new_session_id()
            tag = f"features-{index}"
            files = {"files": (f"{tag}.png", attack.files.big.variant_bytes(tag), "image/png")}
            async with at_once:
                response = await client.post("/api/images", params={"session_id": session}, files=files)
            if response.status_code != 200:
                attack.notes.append(f"setup upload: {response.status_code} {response.text[:120]}")
            return session

        attack.sessions = list(await asyncio.gather(*(fill(index) for index in range(count))))


async def features_big(attack: Attack) -> None:
    """``GET /api/features`` (every group) once on each of 16 workspaces holding one accepted
    50 MP PNG, 3 at a time, so every request computes a 50 MP image's features (none is cached);
    then the attacker stops. A 413 for an image accepted at upload fails the case."""
    workspaces = iter(attack.sessions)
    durations: list[float] = []

    async def connection(client: httpx.AsyncClient) -> None:
        for session in workspaces:
            started = time.perf_counter()
            await attack.request(client, "GET", "/api/features", session)
            durations.append(time.perf_counter() - started)

    try:
        async with attack.client() as client, asyncio.TaskGroup() as group:
            for _ in range(FEATURE_CONNECTIONS):
                group.create_task(connection(client))
    finally:
        if durations:
            attack.notes.append(
                f"{len(durations)} feature tables of a 50 MP image, {FEATURE_CONNECTIONS} at a time: "
                f"{statistics.median(durations):.1f} s median, {max(durations):.1f} s at most"
            )


RESERVING_SOCKETS = 50
RESERVING_SESSIONS = 5
RESERVE_RETRY_SECONDS = 1.0
WS_TRY_AGAIN_LATER = 1013  # RFC 6455's close code for "try again later", the socket's 503


async def ws_reserve(attack: Attack) -> None:
    """~50 upload sockets (over 5 workspaces) announcing a file of the largest size allowed and
    sending nothing; each one closed is opened again."""
    sessions = [new_session_id() for _ in range(RESERVING_SESSIONS)]
    announced = attack.settings.max_file_bytes
    holding = {"now": 0, "most": 0}  # sockets past ``ready``, announced and waiting

    async def hold(index: int) -> None:
        url = attack.ws_url("/api/ws/upload", sessions[index % len(sessions)])
        while True:
            attack.requests += 1
            if await hold_one(url, index, announced):
                await asyncio.sleep(RESERVE_RETRY_SECONDS)

    async def hold_one(url: str, index: int, size: int) -> bool:
        """One socket announcing ``size`` bytes, until the server closes it; True if refused."""
        try:
            async with ws_connect(
                url,
                additional_headers=attack.headers(),
                compression=None,
                max_size=None,
                open_timeout=REQUEST_TIMEOUT,
                close_timeout=2,
                ping_interval=None,
            ) as ws:
                ready = json.loads(await ws.recv())
                if ready.get("type") == "error":
                    attack.tally.ws_message(ready)
                else:
                    await ws.send(json.dumps({"filename": f"held-{index}.jpg", "size": size}))
                    holding["now"] += 1
                    holding["most"] = max(holding["most"], holding["now"])
                try:
                    with contextlib.suppress(ConnectionClosed):
                        async for raw in ws:
                            message = json.loads(raw)
                            if message.get("type") in ("result", "error"):
                                attack.tally.ws_message(message)
                finally:
                    holding["now"] -= ready.get("type") != "error"
                attack.tally.ws_close(ws.close_code)
                return ws.close_code == WS_TRY_AGAIN_LATER
        except InvalidStatus as refused:
            attack.tally.http(refused.response.status_code, refused.response.headers, "ws handshake ")
        except (OSError, TimeoutError, InvalidHandshake, ConnectionClosed) as exc:
            attack.tally.add(f"ws {type(exc).__name__}")
        return True

    try:
        async with asyncio.TaskGroup() as group:
            for index in range(RESERVING_SOCKETS):
                group.create_task(hold(index))
    finally:
        attack.notes.append(
            f"at most {holding['most']} sockets held a reservation at once; {holding['now']} still did at the end"
        )


HELD_BODIES = 4
HELD_FILES = 10  # of noise PNGs just under max_file_bytes: ~237 MiB a body
HELD_RETRY_SECONDS = 1.0  # a body answered is sent again after this


async def held_multipart(attack: Attack) -> None:
    """4 multipart bodies of ten 24 MiB PNGs each (~237 MiB), sent up to their closing boundary
    and held there until the server answers or closes; then again."""

    async def connection(index: int) -> None:
        session = new_session_id()
        for round_ in itertools.count():
            files = [
                (f"held-{index}-{round_}-{n}.png", attack.files.noise.variant(f"{index}-{round_}-{n}"))
                for n in range(HELD_FILES)
            ]
            body, content_type, closing = multipart("files", files)
            attack.requests += 1
            reader, writer = await attack.raw_client()
            try:
                head = attack.raw_head(
                    "POST",
                    f"/api/images?session_id={session}",
                    {"Content-Type": content_type, "Content-Length": str(len(body))},
                )
                with contextlib.suppress(ConnectionError):
                    await send_pieces(writer, [head, *body.pieces[:-1]])  # all but the closing boundary
                try:
                    response = await read_response_head(reader)
                    attack.tally.http(response.status, response.headers)
                except ConnectionError:
                    attack.tally.add("closed")
            finally:
                close_quietly(writer)
            await asyncio.sleep(HELD_RETRY_SECONDS)

    async with asyncio.TaskGroup() as group:
        for index in range(HELD_BODIES):
            group.create_task(connection(index))


SESSION_CONNECTIONS = 4


async def sessions(attack: Attack) -> None:
    """One-image uploads, each into a new session id the script invents, as fast as 4 connections go."""
    image = attack.files.small[0]

    async def connection(client: httpx.AsyncClient) -> None:
        while True:
            files = {"files": ("one.png", image, "image/png")}
            await attack.request(client, "POST", "/api/images", new_session_id(), files=files)

    async with attack.client() as client, asyncio.TaskGroup() as group:
        for _ in range(SESSION_CONNECTIONS):
            group.create_task(connection(client))


HEAD_CONNECTIONS = 2
HUGE_HEADER_BYTES = 96 * MiB


async def heads(attack: Attack) -> None:
    """Requests whose one header is 96 MiB long, sent 1 MiB at a time, one after another on 2
    connections; each ends when the server answers or closes."""
    filler = b"a" * MiB

    async def connection() -> None:
        while True:
            attack.requests += 1
            reader, writer = await attack.raw_client()
            start = attack.raw_head("GET", "/api/health")[:-2] + b"X-Padding: "  # the head left open
            pieces = itertools.chain([start], itertools.repeat(filler, HUGE_HEADER_BYTES // MiB), [b"\r\n\r\n"])
            sender = asyncio.create_task(send_pieces(writer, pieces))
            try:
                response = await read_response_head(reader)
                attack.tally.http(response.status, response.headers)
            except ConnectionError:
                attack.tally.add("closed")
            finally:
                sender.cancel()
                await asyncio.wait([sender])
                if not sender.cancelled():
                    sender.exception()  # a reset while sending is expected; retrieved, not raised
                close_quietly(writer)

    async with asyncio.TaskGroup() as group:
        for _ in range(HEAD_CONNECTIONS):
            group.create_task(connection())


ARCHIVE_READERS = 20
ARCHIVE_SMALL_WORKSPACES = 3  # besides the full one, so the server-wide cap is reached too
ARCHIVE_SMALL_IMAGES = 3
SLOW_READ_BYTES = 16 * 1024
SLOW_READ_PAUSE = 0.5  # 32 KiB/s a reader
ARCHIVE_RETRY_SECONDS = 1.0


async def archive_setup(attack: Attack) -> None:
    quota_files = attack.settings.session_quota_bytes // attack.files.noise.variant_size("x") + 1
    async with attack.client() as client:

        async def fill(index: int, most: int) -> str:
            session = new_session_id()
            held = 0
            for number in range(most):
                tag = f"archive-{index}-{number}"
                files = {"files": (f"{tag}.png", attack.files.noise.variant_bytes(tag), "image/png")}
                response = await client.post("/api/images", params={"session_id": session}, files=files)
                if response.status_code != 200:
                    break
                held += 1
            attack.notes.append(f"workspace {index}: {held} images of 24 MiB")
            return session

        full = await fill(0, quota_files)
        small = [await fill(index + 1, ARCHIVE_SMALL_IMAGES) for index in range(ARCHIVE_SMALL_WORKSPACES)]
    attack.sessions = [full, *small]


async def archive(attack: Attack) -> None:
    """20 readers of ``GET /api/images/archive`` (over the full workspace and three more), each
    reading 32 KiB/s through a 16 KiB receive buffer; a refused reader asks again after 1 s."""

    async def reader(session: str) -> None:
        while True:
            attack.requests += 1
            stream, writer = await attack.raw_client(receive_buffer=SLOW_READ_BYTES)
            try:
                writer.write(attack.raw_head("GET", f"/api/images/archive?session_id={session}"))
                await writer.drain()
                response = await read_response_head(stream)
                attack.tally.http(response.status, response.headers)
                if response.status == 200:
                    while await stream.read(SLOW_READ_BYTES):
                        await asyncio.sleep(SLOW_READ_PAUSE)
                    continue
            except ConnectionError:
                attack.tally.add("closed")
            finally:
                close_quietly(writer)
            await asyncio.sleep(ARCHIVE_RETRY_SECONDS)

    async with asyncio.TaskGroup() as group:
        for index in range(ARCHIVE_READERS):
            group.create_task(reader(attack.sessions[index % len(attack.sessions)]))


DUPLICATE_IMAGES, QUICK_DUPLICATE_IMAGES = 2000, 500
DUPLICATE_BATCH = 250
DUPLICATE_CONNECTIONS = 2
DUPLICATE_THRESHOLDS = (None, 12, 32)  # the default, then wider searches (legal: at most 64)


async def duplicates_setup(attack: Attack) -> None:
    count = QUICK_DUPLICATE_IMAGES if attack.quick else DUPLICATE_IMAGES
    session = new_session_id()
    images = small_pngs(count)
    async with attack.client() as client:
        for start in range(0, count, DUPLICATE_BATCH):
            files = [
                ("files", (f"small-{n}.png", images[n], "image/png"))
                for n in range(start, min(count, start + DUPLICATE_BATCH))
            ]
            response = await client.post("/api/images", params={"session_id": session}, files=files)
            if response.status_code != 200:
                attack.notes.append(f"setup upload: {response.status_code} {response.text[:120]}")
        started = time.perf_counter()
        first = await client.get("/api/features/duplicates", params={"session_id": session})
        attack.notes.append(
            f"{count} small images; the first search (computing every hash) took "
            f"{time.perf_counter() - started:.1f} s: {first.status_code}"
        )
    attack.sessions = [session]


async def duplicates(attack: Attack) -> None:
    """``GET /api/features/duplicates`` on the workspace of small images (every hash cached), on 2
    connections without end, cycling the threshold through the default, 12 and 32."""

    async def connection(client: httpx.AsyncClient, offset: int) -> None:
        for number in itertools.count(offset):
            threshold = DUPLICATE_THRESHOLDS[number % len(DUPLICATE_THRESHOLDS)]
            params = {} if threshold is None else {"threshold": threshold}
            response = await attack.request(
                client, "GET", "/api/features/duplicates", attack.sessions[0], params=params
            )
            if response is None or response.status_code != 200:
                await asyncio.sleep(REFUSED_PAUSE)

    async with attack.client() as client, asyncio.TaskGroup() as group:
        for offset in range(DUPLICATE_CONNECTIONS):
            group.create_task(connection(client, offset))


PRESENCE_SOCKETS, QUICK_PRESENCE_SOCKETS = 150, 110
PRESENCE_CONCURRENCY = 8
PRESENCE_HOLD_SECONDS = 0.2
PRESENCE_PROBE_SECONDS = 2.0


async def presence_setup(attack: Attack) -> None:
    async with attack.client() as client:
        attack.sessions = [(await client.post("/api/sessions")).json()["session_id"]]


async def presence(attack: Attack) -> None:
    """One script opening 150 upload sockets on its workspace within seconds (at most 8 at once,
    each open 0.2 s), while another address's script uploads a 200 KB JPEG into the same workspace
    every 2 s (its results count as the innocent's: ``workspace ws ...``)."""
    workspace = attack.sessions[0]
    url = attack.ws_url("/api/ws/upload", workspace)
    total = QUICK_PRESENCE_SOCKETS if attack.quick else PRESENCE_SOCKETS
    numbers = iter(range(total))

    async def opener() -> None:
        for _ in numbers:
            attack.requests += 1
            try:
                async with ws_connect(
                    url,
                    additional_headers=attack.headers(),
                    compression=None,
                    open_timeout=REQUEST_TIMEOUT,
                    close_timeout=2,
                    ping_interval=None,
                ) as ws:
                    ready = json.loads(await ws.recv())
                    attack.tally.add("ws ready" if ready.get("type") == "ready" else f"ws {ready.get('status')}")
                    await asyncio.sleep(PRESENCE_HOLD_SECONDS)
            except InvalidStatus as refused:
                attack.tally.http(refused.response.status_code, refused.response.headers, "ws handshake ")
            except (OSError, TimeoutError, InvalidHandshake, ConnectionClosed) as exc:
                attack.tally.add(f"ws {type(exc).__name__}")

    async def probe() -> None:
        jpeg = attack.files.innocent_jpegs[0]
        for number in itertools.count():
            data = jpeg_variant(jpeg, f"probe-{number}")
            await ws_upload(url, INNOCENT, f"probe-{number}.jpg", data, attack.innocent, "workspace ws ")
            await asyncio.sleep(PRESENCE_PROBE_SECONDS)

    async with attack.client() as client, asyncio.TaskGroup() as group:
        group.create_task(probe())  # runs until the attack ends
        await asyncio.gather(*(group.create_task(opener()) for _ in range(PRESENCE_CONCURRENCY)))
        members = (await client.get("/api/presence", params={"session_id": workspace})).json()["members"]
        attack.notes.append(f"after {total} sockets the workspace lists {len(members)} presence member(s)")


@dataclass(frozen=True)
class Case:
    name: str
    attack: Callable[[Attack], Awaitable[None]]
    setup: Callable[[Attack], Awaitable[None]] | None = None
    innocent: str = "multipart"  # or "newcomer", "alternate" (see Innocent)
    forbidden: frozenset[str] = field(default_factory=frozenset)  # attacker statuses that fail the case


CASES = [
    Case("decode", decode),
    Case("zip_disconnect", zip_disconnect),
    Case("features_big", features_big, features_big_setup, forbidden=frozenset({"413"})),
    Case("ws_reserve", ws_reserve, innocent="alternate"),
    Case("held_multipart", held_multipart),
    Case("sessions", sessions, innocent="newcomer"),
    Case("heads", heads),
    Case("archive", archive, archive_setup),
    Case("duplicates", duplicates, duplicates_setup),
    Case("presence", presence, presence_setup, innocent="alternate"),
]


# -- running a case --


async def settle(pid: int) -> float:
    """Wait until the server tree is idle (or SETTLE_SECONDS pass); the seconds waited."""
    started = time.perf_counter()
    previous = cpu_seconds(pid)
    while time.perf_counter() - started < SETTLE_SECONDS:
        await asyncio.sleep(SETTLE_SAMPLE_SECONDS)
        now = cpu_seconds(pid)
        if now - previous < IDLE_CPU_PER_SAMPLE:
            break
        previous = now
    return time.perf_counter() - started


async def measure(case: Case, server: ServerProcess, files: Files, quick: bool) -> dict[str, Any]:
    attack = Attack(server, files, quick)
    window = QUICK_WINDOW_SECONDS if quick else WINDOW_SECONDS
    ramp = QUICK_RAMP_SECONDS if quick else RAMP_SECONDS
    async with httpx.AsyncClient(base_url=server.url, headers={"X-Forwarded-For": INNOCENT}, timeout=60) as client:
        innocent_session = (await client.post("/api/sessions")).json()["session_id"]
        warm = jpeg_variant(files.innocent_jpegs[0], "warm-up")  # the decode workers are up before the baseline
        await client.post("/api/images", params={"session_id": innocent_session}, files={"files": ("warm.jpg", warm)})
    if case.setup is not None:
        await asyncio.wait_for(case.setup(attack), SETUP_SECONDS)
    await settle(server.process.pid)

    pid = server.process.pid
    rss_start, cpu_start, bench_start = rss_bytes(pid), cpu_seconds(pid), time.process_time()
    peak = PeakRss(pid)
    peak.start()
    started = time.perf_counter()
    hostile = asyncio.create_task(case.attack(attack))
    await asyncio.sleep(ramp)
    innocent = Innocent(server, innocent_session, files.innocent_jpegs, attack.innocent, case.innocent)
    health = HealthProbe(server)
    innocent.start()
    health.start()
    await asyncio.sleep(max(0.0, window - (time.perf_counter() - started)))  # an attack that ends early leaves the rest
    innocent.halt.set()
    health.halt.set()
    hostile.cancel()
    await asyncio.wait([hostile])
    if not hostile.cancelled() and hostile.exception() is not None:
        attack.notes.append(f"the attack stopped early: {hostile.exception()!r}")
    await asyncio.to_thread(innocent.join)
    await asyncio.to_thread(health.join)
    attack_seconds = time.perf_counter() - started
    settled = await settle(pid)
    peak.halt.set()
    await asyncio.to_thread(peak.join)
    cpu = cpu_seconds(pid) - cpu_start
    bench_cpu = time.process_time() - bench_start
    if server.process.poll() is not None:
        attack.notes.append(f"the server exited: {server.output()[-400:]}")
    return verdict(case, attack, innocent, health, peak.peak - rss_start, cpu, bench_cpu, attack_seconds, settled)


def verdict(
    case: Case,
    attack: Attack,
    innocent: Innocent,
    health: HealthProbe,
    rss_growth: int,
    cpu: float,
    bench_cpu: float,
    attack_seconds: float,
    settled: float,
) -> dict[str, Any]:
    p50 = statistics.median(innocent.latencies) if innocent.latencies else 0.0
    p95 = percentile(innocent.latencies, 0.95)
    per_request = cpu / max(1, attack.requests)
    failures = []
    if not innocent.latencies:
        failures.append("no innocent upload finished")
    if p95 > TARGET_INNOCENT_P95:
        failures.append(f"innocent p95 {p95:.2f} s > {TARGET_INNOCENT_P95:g} s")
    refused = {label: n for label, n in attack.innocent.statuses.items() if label not in INNOCENT_OK}
    if refused:
        failures.append("innocent refused: " + ", ".join(f"{label} x{n}" for label, n in refused.items()))
    if health.worst > TARGET_HEALTH:
        failures.append(f"health {health.worst:.2f} s > {TARGET_HEALTH:g} s")
    if set(health.tally.statuses) - {"200"}:
        failures.append(f"health answered {health.tally.summary()}")
    if rss_growth > TARGET_RSS:
        failures.append(f"RSS +{rss_growth / MiB:.0f} MiB > {TARGET_RSS // MiB} MiB")
    if per_request > TARGET_CPU_PER_REQUEST:
        failures.append(f"{per_request:.1f} s CPU per hostile request > {TARGET_CPU_PER_REQUEST:g} s")
    for side, tally in (("attacker", attack.tally), ("innocent", attack.innocent), ("health", health.tally)):
        if tally.broken:
            failures.append(f"{side} saw " + ", ".join(f"{label} x{n}" for label, n in tally.broken.items()))
    forbidden = {label: n for label, n in attack.tally.statuses.items() if label in case.forbidden}
    if forbidden:
        failures.append("attacker got " + ", ".join(f"{label} x{n}" for label, n in forbidden.items()))
    if any(note.startswith(("the attack stopped early", "the server exited")) for note in attack.notes):
        failures.append("the case did not run as planned (see notes)")
    return {
        "case": case.name,
        "hostile_requests": attack.requests,
        "innocent_uploads": len(innocent.latencies),
        "innocent_p50_s": round(p50, 3),
        "innocent_p95_s": round(p95, 3),
        "health_worst_s": round(health.worst, 3),
        "health_polls": health.polls,
        "rss_growth_mib": round(rss_growth / MiB, 1),
        "server_cpu_s": round(cpu, 2),
        "cpu_per_request_s": round(per_request, 3),
        "bench_cpu_s": round(bench_cpu, 2),
        "attack_s": round(attack_seconds, 1),
        "settle_s": round(settled, 1),
        "attacker_statuses": dict(attack.tally.statuses),
        "innocent_statuses": dict(attack.innocent.statuses),
        "notes": attack.notes,
        "failures": failures,
        "verdict": "FAIL" if failures else "PASS",
    }


def run_case(case: Case, files: Files, quick: bool) -> dict[str, Any]:
    """``case`` against a server of its own."""
    server = ServerProcess(free_port(), SERVER_ENV)
    try:
        return asyncio.run(measure(case, server, files, quick))
    finally:
        server.stop()


ROW = "{case:15} {hostile:>7} {p50:>7} {p95:>7} {n:>5} {health:>8} {rss:>8} {cpu:>8} {per:>9} {bench:>7}  {verdict}"


def row(result: dict[str, Any]) -> str:
    return ROW.format(
        case=result["case"],
        hostile=result["hostile_requests"],
        p50=f"{result['innocent_p50_s']:.2f}",
        p95=f"{result['innocent_p95_s']:.2f}",
        n=result["innocent_uploads"],
        health=f"{result['health_worst_s']:.2f}",
        rss=f"{result['rss_growth_mib']:.0f}",
        cpu=f"{result['server_cpu_s']:.1f}",
        per=f"{result['cpu_per_request_s']:.2f}",
        bench=f"{result['bench_cpu_s']:.1f}",
        verdict=result["verdict"],
    )


HEADER = ROW.format(
    case="case",
    hostile="hostile",
    p50="p50 s",
    p95="p95 s",
    n="n",
    health="health s",
    rss="RSS +MiB",
    cpu="server s",
    per="CPU s/req",
    bench="bench s",
    verdict="verdict",
)


def print_details(result: dict[str, Any]) -> None:
    def statuses(counts: dict[str, int]) -> str:
        return ", ".join(f"{label} x{n}" for label, n in sorted(counts.items(), key=lambda kv: -kv[1])) or "none"

    print(f"    attacker: {statuses(result['attacker_statuses'])}")
    print(f"    innocent: {statuses(result['innocent_statuses'])}")
    for note in result["notes"]:
        print(f"    note: {note}")
    for failure in result["failures"]:
        print(f"    FAIL: {failure}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    names = [case.name for case in CASES]
    parser.add_argument("--case", action="append", choices=names, help="run only this case (repeatable)")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_WINDOW_SECONDS:g} s attacks (a smoke run)")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args()
    chosen = [case for case in CASES if not args.case or case.name in args.case]
    files = Files(Settings())
    window = QUICK_WINDOW_SECONDS if args.quick else WINDOW_SECONDS
    print(
        f"{len(chosen)} case(s), {window:g} s of attack each, a fresh server per case; attacker {ATTACKER}, "
        f"innocent {INNOCENT}, health probe {HEALTH_PROBE} (X-Forwarded-For via trusted 127.0.0.1).\n"
        "The attacker, the innocent and the probes run in this process and share the cores with the server "
        "('bench s': this process's CPU during the case).",
        flush=True,
    )
    results = []
    print(HEADER, flush=True)
    for case in chosen:
        try:
            result = run_case(case, files, args.quick)
        except Exception as exc:  # noqa: BLE001  one broken case must not hide the others' numbers
            result = {"case": case.name, "verdict": "ERROR", "failures": [repr(exc)]}
            print(f"{case.name:15} ERROR {exc!r}", flush=True)
            results.append(result)
            continue
        results.append(result)
        print(row(result), flush=True)
        print_details(result)
    print(
        f"\ntargets: innocent p95 <= {TARGET_INNOCENT_P95:g} s and every innocent upload accepted, health <= "
        f"{TARGET_HEALTH:g} s, RSS growth <= {TARGET_RSS // MiB} MiB, <= {TARGET_CPU_PER_REQUEST:g} s CPU per "
        "hostile request, no 5xx but 503/507 with Retry-After"
    )
    print(HEADER)
    for result in results:
        print(row(result) if result["verdict"] != "ERROR" else f"{result['case']:15} ERROR")
    failed = [r["case"] for r in results if r["verdict"] != "PASS"]
    print("every case passed" if not failed else f"{len(failed)} case(s) did not pass: {', '.join(failed)}")
    if args.json:
        args.json.write_text(json.dumps({"quick": args.quick, "window_s": window, "results": results}, indent=2))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
