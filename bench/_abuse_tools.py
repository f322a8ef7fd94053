"""Tools of bench/abuse.py: the files an attacker sends, bodies streamed without building them in
memory, a raw HTTP/1.1 client that can stop anywhere, and the tally of statuses each side saw."""

from __future__ import annotations

import asyncio
import contextlib
import io
import socket
import struct
import threading
import uuid
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from core.config import Settings

MiB = 1024 * 1024
CACHE = Path("/tmp/darkroom-abuse")
HEAD_LIMIT = 64 * 1024  # the most of a response head this client reads
PNG_IEND = 12  # bytes of the IEND chunk that ends every PNG
BAND_ROWS = 250  # rows of the big PNG made at once (the float pass would need 600 MB at once)
BIG_PNG_WIDTH = 8000
NOISE_PNG_SIDE = 2880  # 2880 x 2880 RGB of noise, stored: 23.7 MiB, cheap to decode


# -- files --
def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


@dataclass(frozen=True)
class Png:
    """A PNG cut before its IEND, so variants (a different tEXt chunk at the end, hence different
    bytes, hashes and records, the same pixels) cost one small chunk, not a copy of the file."""

    body: bytes  # everything before IEND
    iend: bytes
    body_crc: int  # CRC-32 of ``body``, the ZIP member's CRC is continued from it

    @classmethod
    def of(cls, data: bytes) -> Png:
        return cls(data[:-PNG_IEND], data[-PNG_IEND:], zlib.crc32(data[:-PNG_IEND]))

    def tail(self, tag: str) -> bytes:
        """What follows ``body`` in the variant named ``tag``."""
        return _png_chunk(b"tEXt", b"abuse\0" + tag.encode()) + self.iend

    def variant(self, tag: str) -> list[bytes | memoryview]:
        """The variant's bytes as pieces (the big one shared, not copied)."""
        return [memoryview(self.body), self.tail(tag)]

    def variant_bytes(self, tag: str) -> bytes:
        return self.body + self.tail(tag)

    def variant_size(self, tag: str) -> int:
        return len(self.body) + len(self.tail(tag))

    def variant_crc(self, tag: str) -> int:
        return zlib.crc32(self.tail(tag), self.body_crc)


def _cached(name: str, make: Callable[[], bytes]) -> bytes:
    path = CACHE / name
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        data = make()
        partial = path.with_suffix(".part")
        partial.write_bytes(data)
        partial.replace(path)
    return path.read_bytes()


def big_png(settings: Settings) -> Png:
    """A legal photo-sized PNG: just under ``max_pixels``, smooth shapes plus 2x2-block grain so it
    neither compresses to nothing nor passes ``max_file_bytes``; about 2 s of CPU to decode.
    Made once (about 20 s) and cached under /tmp."""
    height = settings.max_pixels // BIG_PNG_WIDTH - 1

    def make() -> bytes:
        rng = np.random.default_rng(50)
        pixels = np.empty((height, BIG_PNG_WIDTH, 3), np.uint8)
        x = np.arange(BIG_PNG_WIDTH, dtype=np.float32)[None, :]
        for top in range(0, height, BAND_ROWS):
            rows = min(BAND_ROWS, height - top)
            y = np.arange(top, top + rows, dtype=np.float32)[:, None]
            grain = rng.integers(0, 2, size=((rows + 1) // 2, BIG_PNG_WIDTH // 2, 1), dtype=np.uint8)
            grain = np.repeat(np.repeat(grain, 2, axis=0), 2, axis=1)[:rows]
            for c in range(3):
                smooth = 127 + 100 * np.sin(x / (300 + 50 * c) + c) * np.cos(y / (250 + 40 * c) - c)
                pixels[top : top + rows, :, c] = np.clip(smooth + grain[:, :, 0], 0, 255).astype(np.uint8)
        out = io.BytesIO()
        Image.fromarray(pixels, "RGB").save(out, "PNG", compress_level=6)
        return out.getvalue()

    data = _cached(f"big-{BIG_PNG_WIDTH}x{height}.png", make)
    if len(data) > settings.max_file_bytes:
        raise RuntimeError(f"the big PNG is {len(data)} bytes, over max_file_bytes; delete {CACHE} and retry")
    return Png.of(data)


def noise_png(settings: Settings) -> Png:
    """A PNG of pure noise stored uncompressed, just under ``max_file_bytes``: big in bytes, cheap
    to decode (held bodies and full workspaces are about bytes, not CPU)."""
    side = NOISE_PNG_SIDE
    while side * side * 3 > settings.max_file_bytes - MiB:
        side -= 64

    def make() -> bytes:
        pixels = np.random.default_rng(7).integers(0, 256, size=(side, side, 3), dtype=np.uint8)
        out = io.BytesIO()
        Image.fromarray(pixels, "RGB").save(out, "PNG", compress_level=0)
        return out.getvalue()

    return Png.of(_cached(f"noise-{side}.png", make))


def small_pngs(count: int, side: int = 32) -> list[bytes]:
    """``count`` distinct small noise PNGs (their perceptual hashes are far apart)."""
    rng = np.random.default_rng(2000)
    found = []
    for _ in range(count):
        out = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, size=(side, side, 3), dtype=np.uint8), "RGB").save(out, "PNG")
        found.append(out.getvalue())
    return found


def jpeg_variant(data: bytes, tag: str) -> bytes:
    """The JPEG with a comment after its SOI: other bytes (another record, another decode), same pixels."""
    comment = tag.encode()
    return data[:2] + b"\xff\xfe" + struct.pack(">H", len(comment) + 2) + comment + data[2:]


# -- bodies as pieces --
Piece = bytes | memoryview


@dataclass
class Body:
    """A request body as pieces (large ones shared), its length known before the first byte."""

    pieces: list[Piece] = field(default_factory=list)

    def add(self, *pieces: Piece) -> None:
        self.pieces.extend(pieces)

    def __len__(self) -> int:
        return sum(len(p) for p in self.pieces)


def multipart(field_name: str, files: Sequence[tuple[str, list[Piece]]]) -> tuple[Body, str, bytes]:
    """A multipart/form-data body of ``files`` (name, pieces) under ``field_name``: the body, its
    Content-Type, and its closing boundary (the last piece, so a sender can hold it back)."""
    boundary = f"abuse{uuid.uuid4().hex}"
    body = Body()
    for name, pieces in files:
        body.add(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field_name}"; filename="{name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n".encode(),
            *pieces,
            b"\r\n",
        )
    closing = f"--{boundary}--\r\n".encode()
    body.add(closing)
    return body, f"multipart/form-data; boundary={boundary}", closing


def stored_zip(members: Sequence[tuple[str, list[Piece], int]]) -> Body:
    """A ZIP of ``members`` (name, pieces, CRC-32) stored uncompressed, as pieces."""
    body = Body()
    central = []
    offset = 0
    for name, pieces, crc in members:
        size = sum(len(p) for p in pieces)
        encoded = name.encode()
        local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 0, 0, 0x21, crc, size, size, len(encoded), 0)
        body.add(local + encoded, *pieces)
        central.append(
            struct.pack(
                "<IHHHHHHIIIHHHHHII",
                0x02014B50,
                20,
                20,
                0,
                0,
                0,
                0x21,
                crc,
                size,
                size,
                len(encoded),
                0,
                0,
                0,
                0,
                0,
                offset,
            )
            + encoded
        )
        offset += len(local) + len(encoded) + size
    directory = b"".join(central)
    body.add(
        directory, struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(directory), offset, 0)
    )
    return body


# -- raw HTTP/1.1 --
@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: dict[str, str]  # lower-case names


async def open_raw(
    host: str, port: int, receive_buffer: int | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A TCP connection; with ``receive_buffer``, a small kernel buffer, so a slow reader is slow."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if receive_buffer:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
    except BaseException:
        sock.close()
        raise
    return await asyncio.open_connection(sock=sock, limit=receive_buffer or HEAD_LIMIT)


def request_head(method: str, target: str, host: str, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def read_response_head(reader: asyncio.StreamReader) -> RawResponse:
    """The status and headers; ConnectionError when the server closed without an answer."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        raise ConnectionResetError("closed without an answer") from None
    except asyncio.LimitOverrunError:
        raise ConnectionResetError("response head too long") from None
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    return RawResponse(int(status_line.split()[1]), headers)


async def send_pieces(writer: asyncio.StreamWriter, pieces: Iterable[Piece]) -> None:
    """Write each piece and wait for the socket to take it (bounded memory in the bench)."""
    for piece in pieces:
        writer.write(piece)
        await writer.drain()


def close_quietly(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(Exception):
        writer.close()


# -- what each side saw --
RETRY_STATUSES = {503}  # must carry Retry-After
DOCUMENTED_5XX = {503, 507}
WS_INTERNAL_ERROR = 1011


class Tally:
    """Statuses seen by one side (attacker or innocent), and the answers that break the rules:
    a 5xx other than 503/507, or a 503 without Retry-After. Thread-safe."""

    def __init__(self) -> None:
        self.statuses: Counter[str] = Counter()
        self.broken: Counter[str] = Counter()
        self._lock = threading.Lock()

    def add(self, label: str, broken: str | None = None) -> None:
        with self._lock:
            self.statuses[label] += 1
            if broken:
                self.broken[broken] += 1

    def http(self, status: int, headers: dict[str, str] | object, prefix: str = "") -> None:
        """An HTTP answer (headers: a mapping with case-insensitive or lower-case names)."""
        retry_after = _header(headers, "retry-after")
        broken = None
        if status >= 500 and status not in DOCUMENTED_5XX:
            broken = f"{prefix}{status}"
        elif status in RETRY_STATUSES and not retry_after:
            broken = f"{prefix}{status} without Retry-After"
        self.add(f"{prefix}{status}", broken)

    def ws_message(self, message: dict[str, object], prefix: str = "ws ") -> None:
        """A WebSocket ``result`` or ``error`` message: its status, and 503s must say when to retry."""
        status = message.get("status")
        if not isinstance(status, int):
            return
        kind = "result" if message.get("type") == "result" else "error"
        broken = None
        if status >= 500 and status not in DOCUMENTED_5XX:
            broken = f"{prefix}{kind} {status}"
        elif status in RETRY_STATUSES and not message.get("retry_after"):
            broken = f"{prefix}{kind} {status} without retry_after"
        self.add(f"{prefix}{kind} {status}", broken)

    def ws_close(self, code: int | None, prefix: str = "ws ") -> None:
        self.add(f"{prefix}close {code}", f"{prefix}close {code}" if code == WS_INTERNAL_ERROR else None)

    def summary(self) -> str:
        with self._lock:
            return ", ".join(f"{label} x{n}" for label, n in self.statuses.most_common()) or "none"


def _header(headers: object, name: str) -> str | None:
    getter = getattr(headers, "get", None)
    return getter(name) if getter else None
