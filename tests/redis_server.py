"""A throw-away ``redis-server`` (Debian's package) on a free port, RAM only unless asked otherwise."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.storage.redis import Client

REDIS_SERVER = shutil.which("redis-server")
MISSING = None if REDIS_SERVER else "redis-server is not installed (apt-get install redis-server)"
START_TIMEOUT_SECONDS = 20


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """``redis-server`` on 127.0.0.1, started with ``--save '' --appendonly no`` by default;
    ``stop`` and ``start`` again keep the port (for the tests where Redis goes away and returns)."""

    def __init__(self, port: int | None = None, extra: tuple[str, ...] = (), persistence: bool = False) -> None:
        assert REDIS_SERVER, MISSING
        self.port = port or free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="darkroom-redis-"))
        self.options = [
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.folder),
            "--save",
            "3600 1" if persistence else "",
            "--appendonly",
            "no",
            *extra,
        ]
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [REDIS_SERVER, *self.options], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self.folder
        )
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not self.ping():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.05)

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def client(self, db: int = 0) -> Client:
        """A client of database ``db``, made as the server makes its own (imported here: only the
        Redis tests need redis-py)."""
        from core.storage.redis import connect

        return connect(self.url(db))

    def flush(self, db: int = 0) -> None:
        with self.client(db) as client:
            client.flushdb()

    def stop(self) -> None:
        """Kill the server (like a crash: nothing is saved, the port is free again)."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)
