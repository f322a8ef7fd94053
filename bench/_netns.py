"""A network namespace whose loopback is a shaped link, for ``bench/ui.py --link RATE``.

Everything inside it (the servers, ChromeDriver, Chromium, the benchmark's own client) talks over
that namespace's ``lo``, shaped by a token bucket: ``RATE`` both ways together, an MTU of 1500 as
on Ethernet. Needs root (``ip netns``, ``tc``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator

MTU = 1500  # Ethernet's; loopback's own 64 KiB frames would each overflow a small bucket
# A bucket smaller than one loopback frame drops packets and stalls TCP; 256 KiB holds several.
BURST = "256kb"
LATENCY = "50ms"  # the longest a packet may wait in the bucket's queue before it is dropped
INNER_STOP_SECONDS = 60  # after Ctrl-C, how long the benchmark inside may take to stop its servers


def _run(*command: str) -> None:
    subprocess.run(command, check=True, capture_output=True, text=True)


@contextlib.contextmanager
def shaped_namespace(rate: str) -> Iterator[str]:
    """A new namespace named for this process whose ``lo`` is up and shaped to ``rate`` (tc's
    syntax: ``100mbit``); deleted on the way out, also after an error or Ctrl-C."""
    name = f"darkroom-bench-{os.getpid()}"
    _run("ip", "netns", "add", name)
    try:
        inside = ("ip", "netns", "exec", name)
        _run(*inside, "ip", "link", "set", "lo", "mtu", str(MTU))
        _run(*inside, "ip", "link", "set", "lo", "up")
        _run(
            *inside, "tc", "qdisc", "add", "dev", "lo", "root", "tbf", "rate", rate, "burst", BURST, "latency", LATENCY
        )
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


def run_inside(name: str, argv: list[str]) -> int:
    """Run ``argv`` in namespace ``name`` and return its exit code. On Ctrl-C or SIGTERM it is
    stopped too (SIGTERM) and given time to stop its servers before it is killed."""
    process = subprocess.Popen(["ip", "netns", "exec", name, *argv])
    try:
        return process.wait()
    except KeyboardInterrupt:
        process.send_signal(signal.SIGTERM)  # it may not have had the terminal's Ctrl-C
        try:
            process.wait(timeout=INNER_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.wait()
        raise


def describe(name: str) -> str:
    """The namespace's qdisc as tc reports it, to print with the results."""
    shown = subprocess.run(
        ["ip", "netns", "exec", name, "tc", "qdisc", "show", "dev", "lo"], capture_output=True, text=True, check=False
    )
    return shown.stdout.strip() or shown.stderr.strip()
