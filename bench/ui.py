"""A user's upload in real Chromium: Darkroom's page next to a Streamlit and a Gradio app.

    python bench/ui.py [--runs 5] [--link 100mbit] [--workloads big,photos,small,filled]

The browser (ChromeDriver, Chromium and all their processes, and this script's own client) runs on
core 0, the servers with all their children (Darkroom's decode workers) on core 1 (``taskset``).
With ``--link RATE`` everything runs in a network namespace of its own whose loopback is shaped to
``RATE`` (``tc`` token bucket, burst 256 KiB, MTU 1500): the browser is a client over a real link.
Needs root for that, Debian's chromium and chromium-driver, and the test extra (selenium). The
peers (``bench/peers/``) are installed in ``bench/peers/.venv`` on first use.

Every page is timed inside the page (``performance.now()``), from the file input's ``change`` to
* first:  the first picture of a chosen file on screen (Darkroom: its local preview or thumbnail),
* all:    a picture of every file,
* stored: every file stored and processed (Darkroom: every server thumbnail loaded; the peers: their
          server-made picture of every file shown, which is when they have processed it).
In the same run, the baselines: ``bare``, the same files chosen in Chromium and sent with
``fetch(FormData)`` to an endpoint that only reads the body (``bench/_upload_server.py``), and
``floor``, the server's own: the same files sent by a script with ``POST /api/images`` to the same
pinned Darkroom server. A fresh browser (a fresh workspace) per measurement, all apps in every run,
medians over ``--runs``; one table per invocation, with the targets of issue 17 and PASS/FAIL.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import _netns, _peers  # noqa: E402
from bench._pinning import BROWSER_CORE, SERVER_CORE, PinnedServer, check_pinned, pin_self  # noqa: E402
from bench.common import ROOT, free_port, photo_like_jpeg  # noqa: E402
from tests.browser import MISSING, chromium, wait_for  # noqa: E402

TIMEOUT = 300  # seconds one measurement may take
READY_SECONDS = 60  # for a page to show its file input
MiB = 2**20
DARKROOM_MEMORY_CAP = 8 * 2**30  # every measurement's workspace stays until it is idle: room for all
CLOCK_JS = (Path(__file__).with_name("ui_clock.js")).read_text()
DARKROOM = "Darkroom"
PHOTO_CACHE = ROOT / "bench" / "results" / "ui-photos"  # generated once, kept between runs (gitignored)

Clocks = dict[str, float | None]  # clock ("first", "all", "stored", "longest") -> seconds
Samples = dict[str, dict[str, list[float]]]  # workload key -> "app clock" ("bare stored", ...) -> seconds
CLOCKS = ("first", "all", "stored")

# A page is settled once it has been idle (or 2 s have passed), a moment after it showed its input.
SETTLE_JS = """
const done = arguments[arguments.length - 1];
setTimeout(() => requestIdleCallback(() => done(true), { timeout: 2000 }), 300);
"""
WAIT_CLOCK_JS = "const done = arguments[arguments.length - 1]; window.__clock.done.then(() => done(true));"

# Bare: a file input whose files are posted with fetch(FormData) as soon as they are chosen.
BARE_JS = """
const input = document.createElement('input');
input.type = 'file'; input.multiple = true; input.id = 'bare-files';
document.body.appendChild(input);
let finish;
window.__bare = { done: new Promise((resolve) => { finish = resolve; }) };
input.addEventListener('change', async () => {
  const t0 = performance.now();
  const form = new FormData();
  for (const file of input.files) form.append('files', file, file.name);
  const response = await fetch('/bare', { method: 'POST', body: form });
  const bytes = (await response.json()).bytes;
  finish({ seconds: (performance.now() - t0) / 1000, bytes });
});
"""
WAIT_BARE_JS = "const done = arguments[arguments.length - 1]; window.__bare.done.then(done);"

# Targets of issue 17 (seconds and ratios).
FIRST_PICTURE_TARGET = 0.150
ALL_PICTURES_TARGET = {"loopback": 0.5, "link": 0.6}  # for 10 x 5 MiB
PEER_SPEEDUP_TARGET = 1.5  # loopback: the faster peer's stored / Darkroom's stored, at least
FLOOR_RATIO_TARGET = 1.25  # loopback: Darkroom's stored / the server's floor, at most
BARE_RATIO_TARGET = 1.1  # link: Darkroom's stored / the bare fetch, at most
LONGEST_TASK_TARGET = 0.100  # the longest main-thread task during the 300-photo drop
FILLED_RATIO_TARGET = 1.1  # 20 photos into 200 shown / into an empty workspace, at most


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Workload:
    """Files chosen at once; ``filled`` are shown (Darkroom only) before the clock starts."""

    key: str
    label: str
    files: list[Path]
    filled: list[Path] = field(default_factory=list)

    @property
    def with_peers(self) -> bool:
        return not self.filled  # the peers are measured on empty pages only


@dataclass(frozen=True)
class PageApp:
    """An app measured in the page: where it is, when it is ready, where its files go, and how
    its pictures name their files (``ui_clock.js``'s arguments)."""

    name: str
    url: str
    ready: str  # CSS selector present once the page can take files
    file_input: str
    picture: str
    stored: str
    key: str = "alt"
    eager: bool = False


def photos(key: str, count: int, width: int, height: int, target_bytes: int, seed: int) -> list[Path]:
    """``count`` photo-like JPEGs, made once into ``PHOTO_CACHE`` (the same bytes every run)."""
    folder = PHOTO_CACHE / f"{key}-{width}x{height}-{target_bytes}"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        path = folder / f"{key}-{index:03d}.jpg"
        if not path.is_file():
            path.write_bytes(photo_like_jpeg(seed + index, width, height, target_bytes=target_bytes))
        paths.append(path)
    return paths


def workloads(args: argparse.Namespace) -> list[Workload]:
    """The chosen workloads, their photos made (or found) first."""
    chosen = args.workloads
    progress("making the photos (once; kept in bench/results/ui-photos) ...")
    small_count = max(args.small if "small" in chosen else 0, args.filled if "filled" in chosen else 0)
    small = photos("small", small_count, 640, 480, 50_000, 5000)
    found: list[Workload] = []
    if "big" in chosen:
        found.append(Workload("big", f"{args.big} x 5 MiB", photos("big", args.big, 3000, 2000, 5 * MiB, 1000)))
    if "photos" in chosen or "filled" in chosen:
        three_mp = photos("photo", args.photos, 2048, 1536, 1_500_000, 0)
        if "photos" in chosen:
            found.append(Workload("photos", f"{args.photos} x 3 MP", three_mp))
        if "filled" in chosen:
            label = f"{args.photos} x 3 MP into {args.filled}"
            found.append(Workload("filled", label, three_mp, filled=small[: args.filled]))
    if "small" in chosen:
        found.append(Workload("small", f"{args.small} small", small[: args.small]))
    for workload in found:
        megabytes = sum(p.stat().st_size for p in workload.files) / MiB
        progress(f"  {workload.label}: {len(workload.files)} files, {megabytes:.1f} MiB")
    return found


def settle(driver: Any) -> None:
    driver.execute_async_script(SETTLE_JS)


def choose(driver: Any, selector: str, paths: list[Path]) -> None:
    driver.find_element("css selector", selector).send_keys("\n".join(str(p) for p in paths))


def check_browser(driver: Any) -> int:
    """Raise unless ChromeDriver and every browser process run on ``BROWSER_CORE`` only."""
    return check_pinned("the browser", driver.service.process.pid, BROWSER_CORE)


def fill(driver: Any, app: PageApp, filled: list[Path]) -> None:
    """Show ``filled`` in the app, 100 files at a time, each batch's pictures stored first."""
    count_stored = f"return [...document.querySelectorAll({json.dumps(app.stored)})].filter(i => i.naturalWidth).length"
    for start in range(0, len(filled), 100):
        choose(driver, app.file_input, filled[start : start + 100])
        shown = min(len(filled), start + 100)
        wait_for(driver, lambda d, n=shown: d.execute_script(count_stored) >= n, TIMEOUT, "not filled")


def page_clocks(app: PageApp, workload: Workload, pinned: list[int] | None = None) -> Clocks:
    """Choose the workload's files in ``app`` in a fresh browser; its clocks in seconds. With
    ``pinned``, the browser's processes are checked to be on their core and counted into it."""
    from selenium.common.exceptions import TimeoutException

    driver = chromium()
    try:
        driver.set_script_timeout(TIMEOUT)
        driver.get(app.url)
        wait_for(driver, lambda d: d.find_elements("css selector", app.ready), READY_SECONDS, f"{app.name}: no input")
        fill(driver, app, workload.filled)
        settle(driver)
        names = [p.name for p in workload.files]
        clock = {"names": names, "picture": app.picture, "stored": app.stored, "key": app.key, "eager": app.eager}
        driver.execute_script(CLOCK_JS, clock)
        choose(driver, app.file_input, workload.files)
        try:
            driver.execute_async_script(WAIT_CLOCK_JS)
        except TimeoutException as exc:
            counts = driver.execute_script("return window.__clock.counts()")
            raise RuntimeError(f"{app.name}, {workload.label}: unfinished after {TIMEOUT} s: {counts}") from exc
        if pinned is not None:
            pinned.append(check_browser(driver))
        return driver.execute_script("return window.__clock.result()")
    finally:
        driver.quit()


def bare_fetch(bare: PinnedServer, workload: Workload) -> float:
    """Seconds from choosing the files to the bare endpoint's answer to ``fetch(FormData)``."""
    driver = chromium()
    try:
        driver.set_script_timeout(TIMEOUT)
        driver.get(bare.url + "/api/health")  # same origin as /bare: no CORS in the way
        driver.execute_script(BARE_JS)
        choose(driver, "#bare-files", workload.files)
        answer = driver.execute_async_script(WAIT_BARE_JS)
        assert answer["bytes"] >= sum(p.stat().st_size for p in workload.files), answer
        return answer["seconds"]
    finally:
        driver.quit()


def server_floor(darkroom: PinnedServer, workload: Workload) -> float:
    """Seconds for ``POST /api/images`` of the workload's files into a fresh session, from here."""
    with httpx.Client(base_url=darkroom.url, timeout=TIMEOUT) as client:
        session_id = client.post("/api/sessions").json()["session_id"]
        files = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in workload.files]  # read before the clock
        started = time.perf_counter()
        response = client.post("/api/images", headers={"X-Session-Id": session_id}, files=files)
        elapsed = time.perf_counter() - started
    accepted = response.json().get("accepted", []) if response.status_code == 200 else []
    if len(accepted) != len(workload.files):
        raise RuntimeError(f"the server floor: {response.status_code} {response.text[:300]}")
    return elapsed


class Servers:
    """Darkroom, the bare endpoint and the peers, each pinned to ``SERVER_CORE``."""

    def __init__(self) -> None:
        self.started: list[PinnedServer] = []

    def start(self, name: str, command: list[str], port: int, health: str, env: dict[str, str]) -> PinnedServer:
        progress(f"starting {name} on core {SERVER_CORE} ...")
        server = PinnedServer(name, command, port, health, env)
        self.started.append(server)
        progress(f"  {name}: pid {server.process.pid}, {server.url}")
        return server

    def stop(self) -> None:
        for server in reversed(self.started):
            server.stop()


def darkroom_env(workdir: str) -> dict[str, str]:
    """This environment without pytest's, NiceGUI's or Darkroom's own settings, plus the run's."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "NICEGUI", "DARKROOM_"))}
    return {
        **clean,
        "DARKROOM_LEGACY_DIR": str(Path(workdir) / "legacy"),
        "DARKROOM_MEMORY_CAP_BYTES": str(DARKROOM_MEMORY_CAP),
    }


def start_apps(servers: Servers, workdir: str) -> tuple[PinnedServer, PinnedServer, list[PageApp]]:
    """Start every server; Darkroom's server, the bare endpoint, and the page apps (Darkroom first)."""
    peers_bin = _peers.ensure_environment()
    env = darkroom_env(workdir)
    port = free_port()
    darkroom = servers.start(DARKROOM, [sys.executable, "-m", "ui.main", "--port", str(port)], port, "/api/health", env)
    port = free_port()
    bare = servers.start("bare", [sys.executable, "-m", "bench._upload_server", str(port)], port, "/api/health", env)
    peer_env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "GRADIO_TEMP_DIR": str(Path(workdir) / "gradio")}
    port = free_port()
    streamlit = servers.start("Streamlit", _peers.streamlit_command(peers_bin, port), port, "/_stcore/health", peer_env)
    port = free_port()
    gradio = servers.start("Gradio", _peers.gradio_command(peers_bin, port), port, "/", peer_env)
    apps = [
        PageApp(
            DARKROOM,
            darkroom.url,
            ready="[data-testid=usage]",
            file_input="input[type=file]:not([webkitdirectory])",
            picture="img.dr-thumb, img.dr-local-preview",
            stored="img.dr-thumb",
        ),
        PageApp(
            "Streamlit",
            streamlit.url,
            ready="input[type=file]",
            file_input="input[type=file]",
            picture="[data-testid=stImageContainer] img",
            stored="[data-testid=stImageContainer] img",
            key="caption",
        ),
        PageApp(
            "Gradio",
            gradio.url,
            ready="input[type=file]",
            file_input="input[type=file]",
            picture="img[src*='/gradio_api/file=']",
            stored="img[src*='/gradio_api/file=']",
            eager=True,  # its gallery loads lazily: every thumbnail is wanted, as in Darkroom's
        ),
    ]
    return darkroom, bare, apps


def steps(
    workload: Workload, darkroom: PinnedServer, bare: PinnedServer, apps: list[PageApp], run: int
) -> list[tuple[str, Callable[[], Clocks]]]:
    """One run's measurements of ``workload``: the baselines, then the apps, their order turned by
    ``run`` so that none always follows the same one."""
    found: list[tuple[str, Callable[[], Clocks]]] = []
    if workload.with_peers:
        found.append(("floor", lambda: {"stored": server_floor(darkroom, workload)}))
        found.append(("bare", lambda: {"stored": bare_fetch(bare, workload)}))
    measured = [app for app in apps if workload.with_peers or app.name == DARKROOM]
    turn = run % len(measured)
    found += [(app.name, lambda app=app: page_clocks(app, workload)) for app in measured[turn:] + measured[:turn]]
    return found


def measure(args: argparse.Namespace, chosen: list[Workload], workdir: str) -> Samples:
    """Every app on every workload, ``args.runs`` times, after one warm-up of each; the samples."""
    servers = Servers()
    try:
        darkroom, bare, apps = start_apps(servers, workdir)
        warm = Workload("warm-up", "warm-up", chosen[0].files[:2])
        progress("warm-up (imports, worker pools, the browser binary) ...")
        server_floor(darkroom, warm)
        bare_fetch(bare, warm)
        browser_processes: list[int] = []
        for app in apps:
            page_clocks(app, warm, browser_processes)
        for server in servers.started:
            progress(f"  {server.name}: {server.check_pinned()} processes, all on core {SERVER_CORE}")
        progress(f"  the browser: {max(browser_processes)} processes, all on core {BROWSER_CORE}")
        samples: Samples = defaultdict(lambda: defaultdict(list))
        started = time.monotonic()
        for run in range(args.runs):
            for workload in chosen:
                for name, step in steps(workload, darkroom, bare, apps, run):
                    clocks = step()
                    for clock, value in clocks.items():
                        if value is not None:
                            samples[workload.key][f"{name} {clock}"].append(value)
                    shown = " / ".join(seconds(clocks[c]) for c in CLOCKS if c in clocks)
                    elapsed = time.monotonic() - started
                    progress(f"run {run + 1}/{args.runs} [{elapsed:4.0f} s] {workload.label}: {name} {shown} s")
            left = (time.monotonic() - started) / (run + 1) * (args.runs - run - 1)
            progress(f"run {run + 1}/{args.runs} done; about {left / 60:.0f} min left")
        return samples
    finally:
        servers.stop()


def median(samples: Samples, workload: str, series: str) -> float | None:
    values = samples.get(workload, {}).get(series)
    return statistics.median(values) if values else None


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def table(samples: Samples, chosen: list[Workload], runs: int) -> list[str]:
    """One row per workload and clock: the baselines and every app's medians."""
    apps = (DARKROOM, "Streamlit", "Gradio")
    header = f"{'workload':<26} {'clock':<8} {'bare fetch':>10} {'floor':>7} " + " ".join(f"{a:>9}" for a in apps)
    lines = [header, "-" * len(header)]
    for workload in chosen:
        for index, clock in enumerate(("first", "all", "stored", "longest")):
            label = workload.label if index == 0 else ""
            bare = median(samples, workload.key, f"bare {clock}")
            floor = median(samples, workload.key, f"floor {clock}")
            cells = " ".join(f"{seconds(median(samples, workload.key, f'{a} {clock}')):>9}" for a in apps)
            name = "task" if clock == "longest" else clock
            lines.append(f"{label:<26} {name:<8} {seconds(bare):>10} {seconds(floor):>7} {cells}")
    lines.append(f"(seconds, median of {runs}; task: the longest main-thread task from the drop to the last clock)")
    return lines


def verdict(name: str, value: float | None, target: float, at_most: bool, detail: str = "") -> str:
    """One target's line: PASS, FAIL, or n/a when its measure was not taken."""
    if value is None:
        return f"  [n/a ] {name}: not measured"
    passed = value <= target if at_most else value >= target
    bound = "<=" if at_most else ">="
    return f"  [{'PASS' if passed else 'FAIL'}] {name}: {value:.3g} ({bound} {target:g}){detail}"


def targets(samples: Samples, chosen: list[Workload], link: bool) -> list[str]:
    """Issue 17's targets for this condition, each with its measure and PASS/FAIL."""
    lines = []
    keys = [w.key for w in chosen]
    labels = {w.key: w.label for w in chosen}
    for workload in chosen:
        key, label = workload.key, workload.label
        stored = median(samples, key, "Darkroom stored")
        if workload.with_peers and not link:
            peers = {p: median(samples, key, f"{p} stored") for p in ("Streamlit", "Gradio")}
            known = {p: t for p, t in peers.items() if t is not None}
            faster = min(known, key=known.__getitem__) if known else None
            speedup = known[faster] / stored if faster and stored else None
            detail = f" (Darkroom {seconds(stored)} s, {faster} {seconds(known.get(faster))} s)" if faster else ""
            lines.append(
                verdict(f"{label}: the faster peer's stored / Darkroom's", speedup, PEER_SPEEDUP_TARGET, False, detail)
            )
            floor = median(samples, key, "floor stored")
            ratio = stored / floor if stored and floor else None
            lines.append(
                verdict(
                    f"{label}: Darkroom's stored / the server floor ({seconds(floor)} s)",
                    ratio,
                    FLOOR_RATIO_TARGET,
                    True,
                )
            )
        if workload.with_peers and link:
            bare = median(samples, key, "bare stored")
            ratio = stored / bare if stored and bare else None
            lines.append(
                verdict(
                    f"{label}: Darkroom's stored / the bare fetch ({seconds(bare)} s)", ratio, BARE_RATIO_TARGET, True
                )
            )
        lines.append(
            verdict(
                f"{label}: Darkroom's first picture, s",
                median(samples, key, "Darkroom first"),
                FIRST_PICTURE_TARGET,
                True,
            )
        )
        if key == "big":
            target = ALL_PICTURES_TARGET["link" if link else "loopback"]
            lines.append(
                verdict(f"{label}: Darkroom's every picture, s", median(samples, key, "Darkroom all"), target, True)
            )
    if "small" in keys:
        longest = median(samples, "small", "Darkroom longest")
        lines.append(
            verdict(f"{labels['small']}: Darkroom's longest main-thread task, s", longest, LONGEST_TASK_TARGET, True)
        )
    if "filled" in keys:
        filled, empty = median(samples, "filled", "Darkroom stored"), median(samples, "photos", "Darkroom stored")
        ratio = filled / empty if filled and empty else None
        lines.append(
            verdict(f"{labels['filled']} / into an empty workspace (stored)", ratio, FILLED_RATIO_TARGET, True)
        )
    return lines


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="measurements of each app and workload (median)")
    parser.add_argument("--link", metavar="RATE", help="shape the loopback of a namespace of its own (tc: 100mbit)")
    parser.add_argument(
        "--workloads",
        type=lambda text: [w.strip() for w in text.split(",") if w.strip()],
        default=["big", "photos", "small", "filled"],
        help="comma-separated, of big (5 MiB photos), photos (3 MP), small, filled (3 MP photos into a full workspace)",
    )
    parser.add_argument("--big", type=int, default=10, help="5 MiB photos (3000x2000)")
    parser.add_argument("--photos", type=int, default=20, help="3 MP photos (2048x1536)")
    parser.add_argument("--small", type=int, default=300, help="small photos (640x480, about 50 KB)")
    parser.add_argument("--filled", type=int, default=200, help="small photos shown before the 3 MP photos of filled")
    parser.add_argument("--json", type=Path, help="write every sample here too")
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)  # re-run inside the namespace
    args = parser.parse_args(argv)
    unknown = set(args.workloads) - {"big", "photos", "small", "filled"}
    if unknown or not args.workloads:
        parser.error(f"unknown workloads: {', '.join(sorted(unknown))}" if unknown else "no workload")
    return args


def interrupt(signum: int, frame: object) -> None:
    """Ctrl-C or a SIGTERM: stop, once; another one must not cut short the servers' stopping."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


def main() -> None:
    signal.signal(signal.SIGINT, interrupt)  # also where a shell started this with SIGINT ignored
    signal.signal(signal.SIGTERM, interrupt)
    args = parse_args(sys.argv[1:])
    if MISSING:
        sys.exit(MISSING)
    if args.link and not args.inside:
        with _netns.shaped_namespace(args.link) as namespace:
            progress(f"namespace {namespace}: {_netns.describe(namespace)}")
            sys.exit(_netns.run_inside(namespace, [sys.executable, __file__, "--inside", *sys.argv[1:]]))
    chosen = workloads(args)
    pin_self(BROWSER_CORE)
    link = f"a {args.link} link (tc tbf, burst {_netns.BURST}, MTU {_netns.MTU})" if args.link else "loopback"
    condition = f"browser on core {BROWSER_CORE}, servers on core {SERVER_CORE}, {link}"
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="darkroom-bench-ui-") as workdir:
        samples = measure(args, chosen, workdir)
    progress(f"measured in {time.monotonic() - started:.0f} s")
    print(f"\n== {condition} ==")
    print("\n".join(table(samples, chosen, args.runs)))
    print("targets (issue 17)")
    print("\n".join(targets(samples, chosen, bool(args.link))))
    if args.json:
        args.json.write_text(json.dumps({"condition": condition, "args": sys.argv[1:], "samples": samples}, indent=1))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        progress("interrupted: every server, browser and namespace it started is gone")
        sys.exit(130)
