"""Servers on one core, the browser on the other: the split ``bench/ui.py`` measures a user in.

A server is started under ``taskset -c SERVER_CORE``; every process it starts (Darkroom's decode
workers are ``multiprocessing`` children of it) inherits the mask. The benchmark pins itself to
``BROWSER_CORE`` before it starts ChromeDriver, so the browser and all its processes inherit that.
``check_pinned`` reads the masks back from /proc, so a run that is not split says so.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

from tests.server_process import descendants

BROWSER_CORE = 0  # ChromeDriver, Chromium and all its processes; the benchmark's own client too
SERVER_CORE = 1  # every server under test and all its children
START_SECONDS = 90  # a peer's first start compiles and caches its package
STOP_SECONDS = 15  # SIGTERM, then SIGKILL for what is still running

ROOT = Path(__file__).resolve().parent.parent


def pin_self(core: int) -> None:
    """Pin this process (and whatever it starts from now on) to ``core``, as ``taskset`` does."""
    os.sched_setaffinity(0, {core})


def allowed_cores(pid: int) -> set[int]:
    """The cores process ``pid`` may run on (its ``Cpus_allowed_list``)."""
    return os.sched_getaffinity(pid)


def check_pinned(name: str, pid: int, core: int) -> int:
    """Raise unless ``pid`` and every live descendant may run on ``core`` only; the process count."""
    processes = {pid} | descendants(pid)
    for process in processes:
        try:
            cores = allowed_cores(process)
        except ProcessLookupError:  # gone since the listing: nothing left to check
            continue
        if cores != {core}:
            raise RuntimeError(f"{name}: process {process} may run on cores {sorted(cores)}, not only {core}")
    return len(processes)


class PinnedServer:
    """``command`` under ``taskset -c SERVER_CORE`` in a process group of its own, until
    ``base_url + health`` answers 200. Its output goes to a log file, shown if it fails."""

    def __init__(self, name: str, command: list[str], port: int, health: str, env: dict[str, str]) -> None:
        self.name = name
        self.url = f"http://127.0.0.1:{port}"
        self.workdir = Path(tempfile.mkdtemp(prefix=f"darkroom-bench-{name.lower()}-"))
        self.log_path = self.workdir / "server.log"
        self.log = open(self.log_path, "wb")  # noqa: SIM115  closed in stop()
        self.process = subprocess.Popen(
            ["taskset", "-c", str(SERVER_CORE), *command],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # one group: stop() ends its children too, and nothing else
        )
        deadline = time.monotonic() + START_SECONDS
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"{name} exited: {self.output()}")
            try:
                if httpx.get(self.url + health, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{name} did not start in {START_SECONDS} s: {self.output()}")
            time.sleep(0.2)

    def output(self) -> str:
        """The end of the server's log."""
        self.log.flush()
        return self.log_path.read_text(errors="replace")[-3000:]

    def check_pinned(self) -> int:
        """Raise unless the server and all its children run on ``SERVER_CORE`` only; the count."""
        return check_pinned(self.name, self.process.pid, SERVER_CORE)

    def stop(self) -> None:
        """End the server's process group (SIGTERM, then SIGKILL for what is left) and its folder."""
        if self.process.returncode is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            deadline = time.monotonic() + STOP_SECONDS
            # Not reaped yet (WNOWAIT): the group's id cannot be reused until the SIGKILL below.
            while time.monotonic() < deadline and not os.waitid(
                os.P_PID, self.process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT
            ):
                time.sleep(0.1)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=STOP_SECONDS)
        self.log.close()
        shutil.rmtree(self.workdir, ignore_errors=True)
