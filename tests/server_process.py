"""The real server as a separate process (``python -m ui.main``), as a user runs it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


class ServerProcess:
    """``python -m ui.main`` on a free port, as a user would run it."""

    def __init__(self, port: int, env: dict[str, str] | None = None) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "NICEGUI", "DARKROOM_"))}
        self.workdir = tempfile.mkdtemp(prefix="darkroom-server-")
        clean.update({"DARKROOM_LEGACY_DIR": str(Path(self.workdir) / "legacy"), **(env or {})})
        self.log = open(Path(self.workdir) / "server.log", "wb")  # noqa: SIM115  closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ui.main", "--port", str(port)],
            cwd=ROOT,
            env=clean,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited: {self.output()}")
            try:
                if httpx.get(f"{self.url}/api/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start: {self.output()}")
            time.sleep(0.2)

    def output(self) -> str:
        self.log.flush()
        return (Path(self.workdir) / "server.log").read_text(errors="replace")[-4000:]

    def kill(self) -> None:
        """SIGKILL: no shutdown handler runs, like a crash or ``kill -9``."""
        self.process.kill()
        self.process.wait(timeout=10)
        self.log.close()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()
        shutil.rmtree(self.workdir, ignore_errors=True)


def descendants(pid: int) -> set[int]:
    """Every live (not zombie) descendant of process ``pid``, read from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError, IndexError):
                continue
            if fields[0] != "Z":
                parents[int(entry.name)] = int(fields[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found
