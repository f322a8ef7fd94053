"""API requests/s and p99 under load, as ratios to a bare FastAPI app measured in the same run.

    python bench/api.py [--seconds 8] [--connections 50] [--threads 1] [--scale]
    python bench/api.py --against REF [--rounds 5] [--seconds 8]

Load comes from Debian's ``wrk`` (a Python client would measure itself). The server is the real
``python -m ui.main`` (NiceGUI mounted, memory mode); the baseline is ``bench/_bare_api_server.py``,
a bare FastAPI app seeded with the same records and thumbnail. Printed per measure: requests/s and
p99 of both, and the ratio darkroom / bare:

  * ``GET /api/images`` (13 records) / bare                            target >= 0.8x
  * ``GET /api/images/{id}/thumbnail`` / bare                          target >= 0.8x
  * small PNG upload / a bare app that decodes and thumbnails          target >= 0.8x
  * p99 with 100 sessions uploading and listing (half each)            target < 250 ms
  * ``--scale``: 2 processes + Redis / 1 process in memory mode, the same mix, aggregate
    requests/s                                                         target >= 1.5x

Uploads rotate 64 distinct small PNGs under a fresh name each time, so every upload is decoded,
thumbnailed and stored as a record of its own. Each session is a user of its own: the server trusts
127.0.0.1 as a proxy and every request of a session names the session's own client address in
``X-Forwarded-For``, so the per-address and per-session shares (``Fair share`` in the README) apply
as they would to that many people; the upload measure spreads its connections over as many
sessions.

``--against REF`` answers "did this change cost speed?": the same list, thumbnail, upload and mix
measures, on this checkout and on a git worktree of REF, both running side by side and measured in
alternating rounds (two runs of the plain mode minutes apart differ by more than the 5% asked for
on this machine). Printed: each side's median, the median of the per-round ratios after / before,
and whether the worst of them loses at most 5%.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import free_port, wait_until_healthy  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MiB = 2**20
LISTED_IMAGES = 13
UPLOAD_VARIANTS = 64
MIX_SESSIONS = 100
TARGET_RATIO = 0.8
TARGET_MIX_P99_MS = 250.0
TARGET_SCALE_RATIO = 1.5
TARGET_LOSS = 0.05  # --against: after may lose at most this much on any measure
DEFAULT_ROUNDS = 5
BOUNDARY = "darkroombench7d1f0c"
_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


# -- servers --
class Server:
    """A server process on a free port, ready once ``/api/health`` answers."""

    def __init__(self, args: list[str], port: int, env: dict[str, str] | None = None, root: Path = ROOT) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen([sys.executable, *args], cwd=root, env=env or dict(os.environ))
        try:
            wait_until_healthy(self.url, self.process, " ".join(args))
        except RuntimeError:
            self.stop()
            raise

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def darkroom(workdir: Path, extra_env: dict[str, str] | None = None, root: Path = ROOT) -> Server:
    """``python -m ui.main`` of the checkout at ``root``, as a user runs it, with room for a long
    upload run in one session."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "NICEGUI", "DARKROOM_"))}
    env.update(
        {
            "DARKROOM_LEGACY_DIR": str(workdir / "legacy"),
            "DARKROOM_SESSION_QUOTA_BYTES": str(1024 * MiB),
            "DARKROOM_MEMORY_CAP_BYTES": str(4096 * MiB),
            "DARKROOM_TRUSTED_PROXIES": "127.0.0.1",  # X-Forwarded-For names each session's user
            **(extra_env or {}),
        }
    )
    port = free_port()
    return Server(["-m", "ui.main", "--port", str(port)], port, env, root)


def bare() -> Server:
    port = free_port()
    return Server(["-m", "bench._bare_api_server", str(port)], port)


# -- data --
def small_png(seed: int, width: int = 160, height: int = 120) -> bytes:
    """A small photo-like PNG (smooth shapes plus grain; distinct per seed)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([127 + 100 * np.sin(x / (20 + 5 * c) + seed) * np.cos(y / (15 + 4 * c) - c) for c in range(3)], -1)
    pixels = np.clip(base + rng.normal(0, 6, size=base.shape), 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(out, "PNG")
    return out.getvalue()


_users = iter(range(1, 2**24))  # the client addresses handed out, one per session


def user_address(user: int) -> str:
    """The private address (10.x.y.z) of user number ``user``."""
    return f"10.{user >> 16 & 255}.{user >> 8 & 255}.{user & 255}"


@dataclass(frozen=True)
class Session:
    """A workspace and the client address its user's requests come from."""

    id: str
    address: str


def seed_session(client: httpx.Client, pngs: list[bytes], count: int) -> Session:
    """A new session of a user of its own, holding ``count`` of the PNGs."""
    address = user_address(next(_users))
    headers = {"X-Forwarded-For": address}
    session = client.post("/api/sessions", headers=headers).json()["session_id"]
    for index in range(count):
        files = [("files", (f"photo-{index:02d}.png", pngs[index % len(pngs)], "image/png"))]
        response = client.post("/api/images", params={"session_id": session}, files=files, headers=headers)
        assert response.status_code == 200, response.text
    return Session(session, address)


# -- wrk --
@dataclass(frozen=True)
class Load:
    requests_per_second: float
    p99_ms: float
    failed: int  # non-2xx answers and socket errors
    why: str = ""  # upload scripts: failures by status and the first answer's text

    def __str__(self) -> str:
        failed = f", {self.failed} failed{self.why}" if self.failed else ""
        return f"{self.requests_per_second:8.0f} req/s  p99 {self.p99_ms:7.1f} ms{failed}"


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(value) * _UNIT_MS[unit]


def wrk(url: str, seconds: int, connections: int, threads: int, script: Path | None = None) -> Load:
    """One wrk run; its requests/s, p99 latency and failures."""
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "--latency"]
    if script is not None:
        command += ["-s", str(script)]
    output = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", output, re.MULTILINE).group(1))  # type: ignore[union-attr]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    failed = (int(non_2xx.group(1)) if non_2xx else 0) + (
        sum(int(n) for n in socket_errors.groups()) if socket_errors else 0
    )
    statuses = re.findall(r"^failed-status (\d+) (\d+)$", output, re.MULTILINE)
    by_status = ", ".join(f"{n}x {code}" for code, n in statuses)
    first = re.search(r"^failed-first (.*)$", output, re.MULTILINE)
    why = f" ({by_status}; first: {first.group(1)})" if by_status and first else ""
    return Load(rps, p99, failed, why)


def upload_script(folder: Path, png_paths: list[Path], sessions: list[Session], list_every: int) -> Path:
    """A wrk script posting multipart uploads of the PNGs (a fresh name each time) to a session
    picked at random among ``sessions`` (an empty id means none), from that session's address;
    with ``list_every`` > 0 every n-th request lists that session's images instead."""
    lua_list = ", ".join(f'"{s.id}"' for s in sessions)
    lua_addresses = ", ".join(f'"{s.address}"' for s in sessions)
    lua_paths = ", ".join(f'"{p}"' for p in png_paths)
    script = folder / f"upload-{len(sessions)}-{list_every}.lua"
    script.write_text(
        f"""
local sessions = {{{lua_list}}}
local addresses = {{{lua_addresses}}}
local files = {{}}
for i, path in ipairs({{{lua_paths}}}) do
  local f = assert(io.open(path, "rb")); files[i] = f:read("*a"); f:close()
end
local content_type = "multipart/form-data; boundary={BOUNDARY}"
local list_every = {list_every}
local counter = 0
local threads = {{}}
failures = {{}}
first_failure = ""

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

function response(status, headers, body)
  if status >= 300 then
    failures[status] = (failures[status] or 0) + 1
    if first_failure == "" then first_failure = string.sub(body, 1, 160) end
  end
end

function done(summary, latency, requests)
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("failures")) do
      io.write(string.format("failed-status %d %d\\n", status, count))
    end
    local first = thread:get("first_failure")
    if first ~= "" then io.write("failed-first " .. string.gsub(first, "\\n", " ") .. "\\n") end
  end
end

function init(args)
  math.randomseed(tid * 7919)
end

function request()
  counter = counter + 1
  local pick = math.random(#sessions)
  local sid = sessions[pick]
  local query = sid ~= "" and ("?session_id=" .. sid) or ""
  local headers = {{["X-Forwarded-For"] = addresses[pick]}}
  if list_every > 0 and counter % list_every == 0 then
    return wrk.format("GET", "/api/images" .. query, headers)
  end
  headers["Content-Type"] = content_type
  local name = "t" .. tid .. "-" .. counter .. ".png"
  local body = "--{BOUNDARY}\\r\\nContent-Disposition: form-data; name=\\"files\\"; filename=\\"" .. name
    .. "\\"\\r\\nContent-Type: image/png\\r\\n\\r\\n" .. files[counter % #files + 1] .. "\\r\\n--{BOUNDARY}--\\r\\n"
  return wrk.format("POST", "/api/images" .. query, headers, body)
end
"""
    )
    return script


def compare(label: str, ours: Load, baseline: Load) -> None:
    ratio = ours.requests_per_second / baseline.requests_per_second
    verdict = "ok" if ratio >= TARGET_RATIO else "BELOW TARGET"
    print(
        f"{label}\n  darkroom {ours}\n  bare     {baseline}\n  ratio {ratio:.2f}x (target >= {TARGET_RATIO}x) {verdict}"
    )


# -- 2 processes + Redis vs 1 process in memory mode (--scale) --
def redis_mode_available(redis_url: str) -> bool:
    """Whether DARKROOM_STORAGE=redis works against ``redis_url`` (redis-py installed, the server usable)."""
    from core.config import Settings
    from core.storage.factory import build_backends

    try:
        build_backends(Settings(storage="redis", redis_url=redis_url))
    except Exception:  # noqa: BLE001  any failure means: not usable here
        return False
    return True


def warm_up(server: Server, pngs: list[bytes]) -> None:
    """One upload and one list in a session of its own: the decode workers (seconds to spawn on a
    busy machine) are up before wrk measures."""
    with httpx.Client(base_url=server.url, timeout=120) as client:
        session = seed_session(client, pngs, 1).id
        client.get("/api/images", params={"session_id": session}).raise_for_status()


def measure_scale(
    args: argparse.Namespace, workdir: Path, script_for: dict[str, Callable[[list[Session]], Path]], pngs: list[bytes]
) -> None:
    """The mix (100 sessions uploading and listing) at ``args.connections``: one process in memory
    mode, then two processes sharing one Redis, each loaded with half the connections at once (the
    sessions are made on the first and served by both). Prints the aggregate ratio."""
    print(f"scale: 2 processes + Redis vs 1 process in memory mode, {MIX_SESSIONS} sessions uploading and listing")
    if shutil.which("redis-server") is None:
        print("  skipped: redis-server is not installed")
        return
    redis_server = RedisServer()  # tests/redis_server.py's: RAM only, on a free port
    try:
        if not redis_mode_available(redis_server.url()):
            print("  skipped: redis mode not available")
            return
        single = darkroom(workdir)
        try:
            with httpx.Client(base_url=single.url, timeout=60) as client:
                sessions = [seed_session(client, pngs, 0) for _ in range(MIX_SESSIONS)]
            warm_up(single, pngs)
            one = wrk(single.url, args.seconds, args.connections, args.threads, script_for["mix"](sessions))
        finally:
            single.stop()
        env = {"DARKROOM_STORAGE": "redis", "DARKROOM_REDIS_URL": redis_server.url()}
        pair = [darkroom(workdir, env), darkroom(workdir, env)]
        try:
            with httpx.Client(base_url=pair[0].url, timeout=60) as client:
                sessions = [seed_session(client, pngs, 0) for _ in range(MIX_SESSIONS)]
            script = script_for["mix"](sessions)
            half = max(1, args.connections // 2)
            with ThreadPoolExecutor(max_workers=2) as pool:
                list(pool.map(lambda server: warm_up(server, pngs), pair))
                loads = list(pool.map(lambda s: wrk(s.url, args.seconds, half, args.threads, script), pair))
        finally:
            for server in pair:
                server.stop()
        total = sum(load.requests_per_second for load in loads)
        ratio = total / one.requests_per_second
        verdict = "ok" if ratio >= TARGET_SCALE_RATIO else "BELOW TARGET"
        print(f"  1 process, memory  {one}")
        for index, load in enumerate(loads):
            print(f"  process {index + 1}, redis   {load}")
        print(f"  aggregate {total:.0f} req/s: {ratio:.2f}x (target >= {TARGET_SCALE_RATIO}x) {verdict}")
    finally:
        redis_server.close()


# -- before / after (--against REF) --
@dataclass
class Target:
    """One server's URLs and scripts for the compared measures."""

    server: Server
    urls: dict[str, str]
    scripts: dict[str, Path | None]


def prepare_target(server: Server, pngs: list[bytes], script_for: dict[str, Callable[[list[Session]], Path]]) -> Target:
    """Seed ``server`` as ``main`` does: a listed session, 50 uploaders and the mix's sessions."""
    with httpx.Client(base_url=server.url, timeout=60) as client:
        listed = seed_session(client, pngs, LISTED_IMAGES)
        records = client.get("/api/images", params={"session_id": listed.id}).json()
        uploaders = [seed_session(client, pngs, 0) for _ in range(50)]
        mixers = [seed_session(client, pngs, 0) for _ in range(MIX_SESSIONS)]
    query = f"?session_id={listed.id}"
    urls = {
        "list": f"{server.url}/api/images{query}",
        "thumbnail": f"{server.url}/api/images/{records[0]['id']}/thumbnail{query}",
        "upload": server.url,
        "mix": server.url,
    }
    scripts = {
        "list": None,
        "thumbnail": None,
        "upload": script_for["upload"](uploaders),
        "mix": script_for["mix"](mixers),
    }
    return Target(server, urls, scripts)


def measure_against(
    args: argparse.Namespace,
    workdir: Path,
    script_for: dict[str, Callable[[list[Session]], Path]],
    pngs: list[bytes],
) -> None:
    """This checkout ("after") against ``args.against`` ("before", a git worktree of that ref):
    both servers run side by side, idle in turn, and each measure alternates between them for
    ``args.rounds`` rounds (the order flips every round), so a slow spell of the machine falls on
    both. Prints each side's median and the median of the per-round ratios after / before."""
    before_root = workdir / "before"
    git = ["git", "-C", str(ROOT), "worktree"]
    subprocess.run([*git, "add", "--detach", str(before_root), args.against], check=True, capture_output=True)
    servers: list[Server] = []
    try:
        for root in (before_root, ROOT):
            servers.append(darkroom(workdir, root=root))
            warm_up(servers[-1], pngs)
        targets = [
            prepare_target(server, pngs, {kind: _tagged(script_for[kind], f"side{side}") for kind in script_for})
            for side, server in enumerate(servers)
        ]
        print(f"before: {args.against}; after: this checkout; {args.rounds} rounds of {args.seconds} s per side")
        worst = float("inf")
        for measure in ("list", "thumbnail", "upload", "mix"):
            for target in targets:  # warm both
                wrk(target.urls[measure], 1, args.connections, args.threads, target.scripts[measure])
            loads: tuple[list[Load], list[Load]] = ([], [])
            for round_ in range(args.rounds):
                for side in (0, 1) if round_ % 2 == 0 else (1, 0):
                    target = targets[side]
                    url, script = target.urls[measure], target.scripts[measure]
                    loads[side].append(wrk(url, args.seconds, args.connections, args.threads, script))
            before, after = ([load.requests_per_second for load in side] for side in loads)
            ratios = [b / a for a, b in zip(before, after, strict=True)]
            worst = min(worst, statistics.median(ratios))
            print(
                f"{measure:9s} before {statistics.median(before):7.0f} req/s  after {statistics.median(after):7.0f}"
                f" req/s  after/before {statistics.median(ratios):.3f}"
                f" (rounds: {' '.join(f'{r:.2f}' for r in ratios)}; failed {sum(x.failed for x in loads[0])}"
                f" / {sum(x.failed for x in loads[1])})"
            )
        verdict = "ok" if worst >= 1 - TARGET_LOSS else "LOSES MORE THAN TARGET"
        print(f"worst after/before {worst:.3f} (target >= {1 - TARGET_LOSS:.2f}) {verdict}")
    finally:
        for server in servers:
            server.stop()
        subprocess.run([*git, "remove", "--force", str(before_root)], capture_output=True)


def _tagged(make: Callable[[list[Session]], Path], tag: str) -> Callable[[list[Session]], Path]:
    """``make``, its script saved under a name of its own (``upload_script`` names it by shape)."""

    def tagged(sessions: list[Session]) -> Path:
        script = make(sessions)
        return script.rename(script.with_name(f"{script.stem}-{tag}{script.suffix}"))

    return tagged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=8, help="length of each measure (default 8)")
    parser.add_argument("--connections", type=int, default=50, help="open connections (default 50)")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (default 1: leave a core to the server)")
    parser.add_argument("--scale", action="store_true", help="also compare 2 processes + Redis with 1 in memory mode")
    parser.add_argument(
        "--against",
        metavar="REF",
        help="instead: compare this checkout with git REF (before and after a change), side by side in rounds",
    )
    parser.add_argument(
        "--rounds", type=int, default=DEFAULT_ROUNDS, help=f"--against: rounds per measure (default {DEFAULT_ROUNDS})"
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (apt-get install wrk)")

    workdir = Path(tempfile.mkdtemp(prefix="darkroom-bench-api-"))
    pngs = [small_png(seed) for seed in range(UPLOAD_VARIANTS)]
    png_paths = []
    for index, data in enumerate(pngs):
        png_paths.append(workdir / f"{index}.png")
        png_paths[-1].write_bytes(data)
    scripts = {
        "upload": lambda sessions: upload_script(workdir, png_paths, sessions, list_every=0),
        "mix": lambda sessions: upload_script(workdir, png_paths, sessions, list_every=2),
    }
    print(
        f"wrk: {args.connections} connections, {args.threads} thread(s), {args.seconds:g} s per measure; "
        f"uploads: {len(pngs[0]) / 1024:.0f} KiB PNGs ({UPLOAD_VARIANTS} variants)"
    )
    if args.against:
        try:
            measure_against(args, workdir, scripts, pngs)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        return
    ours, baseline = darkroom(workdir), bare()
    try:
        with httpx.Client(base_url=ours.url, timeout=60) as client:
            session = seed_session(client, pngs, LISTED_IMAGES).id
            records = client.get("/api/images", params={"session_id": session}).json()
            thumbnail = client.get(f"/api/images/{records[0]['id']}/thumbnail", params={"session_id": session})
        httpx.post(baseline.url + "/seed/records", json=records).raise_for_status()
        httpx.post(
            baseline.url + "/seed/thumbnail",
            content=thumbnail.content,
            headers={"Content-Type": thumbnail.headers["content-type"]},
        ).raise_for_status()

        def measure(path: str, script: Path | None = None, warm: bool = True) -> tuple[Load, Load]:
            loads = []
            for server in (ours, baseline):
                if warm:
                    wrk(server.url + path, 1, args.connections, args.threads, script)
                loads.append(wrk(server.url + path, args.seconds, args.connections, args.threads, script))
            return loads[0], loads[1]

        query = f"?session_id={session}"
        compare(f"GET /api/images ({len(records)} records)", *measure("/api/images" + query))
        compare("GET /api/images/{id}/thumbnail", *measure(f"/api/images/{records[0]['id']}/thumbnail" + query))
        with httpx.Client(base_url=ours.url, timeout=60) as client:
            upload_sessions = [seed_session(client, pngs, 0) for _ in range(args.connections)]
        ours_upload = wrk(ours.url, args.seconds, args.connections, args.threads, scripts["upload"](upload_sessions))
        anonymous = [Session("", user_address(0))]
        bare_upload = wrk(baseline.url, args.seconds, args.connections, args.threads, scripts["upload"](anonymous))
        compare("small PNG upload (POST /api/images, one file)", ours_upload, bare_upload)

        with httpx.Client(base_url=ours.url, timeout=60) as client:
            sessions = [seed_session(client, pngs, 0) for _ in range(MIX_SESSIONS)]
        mix = wrk(ours.url, args.seconds, args.connections, args.threads, scripts["mix"](sessions))
        verdict = "ok" if mix.p99_ms < TARGET_MIX_P99_MS else "ABOVE TARGET"
        print(f"{MIX_SESSIONS} sessions uploading and listing\n  darkroom {mix}")
        print(f"  p99 {mix.p99_ms:.1f} ms (target < {TARGET_MIX_P99_MS:.0f} ms) {verdict}")
    finally:
        ours.stop()
        baseline.stop()
    if args.scale:
        measure_scale(args, workdir, scripts, pngs)
    else:
        print("scale: not measured (pass --scale)")
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
