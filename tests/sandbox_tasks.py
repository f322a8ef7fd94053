"""Tasks that misbehave on purpose, run in the decode sandbox's workers by tests/test_sandbox.py
(workers import them by name, so they live in a module of their own)."""

from __future__ import annotations

import os
import signal
import time


def sleep(seconds: float) -> float:
    """Stand-in for a decoder that loops for ``seconds``."""
    time.sleep(seconds)
    return seconds


def spin(seconds: float) -> int:
    """Stand-in for a decoder that burns CPU for ``seconds`` of wall time."""
    deadline, count = time.monotonic() + seconds, 0
    while time.monotonic() < deadline:
        count += 1
    return count


def allocate(nbytes: int) -> int:
    """Stand-in for a decoder that asks for a canvas of ``nbytes``."""
    block = bytearray(nbytes)
    return len(block)


def die(signal_number: int = signal.SIGKILL) -> None:
    """Stand-in for the kernel's OOM killer (SIGKILL) or a decoder that crashes (SIGSEGV)."""
    os.kill(os.getpid(), signal_number)


def worker_pid() -> int:
    return os.getpid()


def write_file(path: str) -> None:
    """Stand-in for a decoder or plugin that spools to a temporary file."""
    with open(path, "wb") as out:
        out.write(b"pixels")


def inspect_or_name_the_escape(data: bytes, settings: object) -> str:
    """``inspect_image`` as the sandbox runs it, for the fuzzer: ``ok``, ``refused <status>``, or
    ``escaped <type>: <message>`` when anything but a documented error came out."""
    from core.errors import DarkroomError
    from core.ingest import inspect_image

    try:
        inspect_image(data, settings)  # type: ignore[arg-type]
    except DarkroomError as exc:
        return f"refused {exc.status_code}"
    except Exception as exc:  # noqa: BLE001  what the fuzzer looks for
        return f"escaped {type(exc).__name__}: {exc}"
    return "ok"


def started_then_wait_for(gate: str, seconds: float = 60) -> int:
    """Stand-in for a decode that lasts until the test opens ``gate`` (creates that path), at most
    ``seconds``. Returns when it started (CLOCK_MONOTONIC: one clock for every process), so a test
    can tell the order tasks were dispatched in without measuring any duration."""
    started = time.monotonic_ns()
    deadline = time.monotonic() + seconds
    while not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.01)
    return started
