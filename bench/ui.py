"""The page's upload path in real Chromium, against baselines measured in the same run.

    python bench/ui.py [--runs 3] [--photos 20] [--big 10] [--filled 200]

Needs Debian's chromium and chromium-driver and the test extra (selenium). One server process
(``python -m ui.main``), a fresh browser (a fresh workspace) per measurement. Prints:

1. ``--photos`` photo-like JPEGs of 2048x1536 (3.1 MP, about 1.5 MB each):
   * API:  ``POST /api/images`` of all the files into a fresh session, from Python (the baseline)
   * page: files chosen in the drop zone -> every server thumbnail fetched and decoded
   * the ratio page / API (target <= 1.5x)
2. ``--big`` photos of about 5 MiB (3000x2000):
   * page: chosen in the drop zone -> every server thumbnail decoded, as above
   * bare: the same files chosen in Chromium and sent with ``fetch(FormData)`` to an endpoint that
     only reads ``request.body()`` (``bench/_upload_server.py``, its own process)
   * the throughput ratio bare time / page time (target >= 0.75x)
3. ``--filled`` small images (200) first, then the ``--photos`` through the page as in 1.: the page's
   cost of a card while many are already shown (it was quadratic before ``ui/memo.js``).
4. The transport's own floor, in the same run: the same files sent from a blank page (nothing to
   render) over a bare WebSocket to ``/api/ws/upload``, the page's protocol (256 KiB chunks read
   4 MiB at a time, socket opened before the clock), until the server's summary. Its ratios to
   the API and to ``fetch(FormData)`` are the best any WebSocket upload from this browser can reach
   on this machine.

Times are taken in the page (``performance.now()``): from the file input's ``change`` event to the
last thumbnail's ``load`` event, to the ``fetch`` answer, or to the WebSocket's summary.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ServerProcess as BareServer  # noqa: E402
from bench.common import free_port, photo_like_jpeg  # noqa: E402
from tests.browser import MISSING, ServerProcess, chromium, loaded_thumbnails, wait_for  # noqa: E402

TIMEOUT = 300  # seconds a single measurement may take

# Page: from the file input's change to the N-th server thumbnail decoded (capture phase: first).
PAGE_CLOCK = """
window.__t0 = null; window.__t1 = null; window.__loaded = 0;
const expected = arguments[0];
document.addEventListener('change', (e) => {
  if (e.target.matches && e.target.matches('input[type=file]')) window.__t0 = performance.now();
}, true);
document.addEventListener('load', (e) => {
  if (e.target.matches && e.target.matches('img.dr-thumb') && e.target.naturalWidth > 0) {
    window.__loaded += 1;
    if (window.__loaded === expected) window.__t1 = performance.now();
  }
}, true);
"""

# Bare: a file input whose files are posted with fetch(FormData) as soon as they are chosen.
BARE_CLOCK = """
window.__t0 = null; window.__t1 = null;
const input = document.createElement('input');
input.type = 'file'; input.multiple = true; input.id = 'bare-files';
document.body.appendChild(input);
input.addEventListener('change', async () => {
  window.__t0 = performance.now();
  const form = new FormData();
  for (const file of input.files) form.append('files', file, file.name);
  const response = await fetch('/bare', { method: 'POST', body: form });
  window.__bytes = (await response.json()).bytes;
  window.__t1 = performance.now();
});
"""


# Bare WebSocket: a session and an open upload socket of it first; then, from the files' change,
# the page's protocol with nothing else on the page, until the server's summary of the files.
BARE_WS_CLOCK = """
window.__t0 = null; window.__t1 = null; window.__ready = false;
const CHUNK = 256 * 1024, READ = 4 * 1024 * 1024, WINDOW = 8 * 1024 * 1024;
const input = document.createElement('input');
input.type = 'file'; input.multiple = true; input.id = 'bare-ws-files';
document.body.appendChild(input);
(async () => {
  const session = (await (await fetch('/api/sessions', { method: 'POST' })).json()).session_id;
  const ws = new WebSocket(`ws://${location.host}/api/ws/upload?session_id=${session}`);
  ws.binaryType = 'arraybuffer';
  await new Promise((resolve) => { ws.onmessage = resolve; });  // "ready"
  let finish;
  const finished = new Promise((resolve) => { finish = resolve; });
  ws.onmessage = (event) => {
    const message = JSON.parse(event.data);
    if (message.type === 'summary') { window.__accepted = message.accepted; finish(); }
  };
  input.addEventListener('change', async () => {
    window.__t0 = performance.now();
    for (const file of input.files) {
      ws.send(JSON.stringify({ filename: file.name, size: file.size }));
      for (let start = 0; start < file.size; start += READ) {
        const buffer = await file.slice(start, Math.min(file.size, start + READ)).arrayBuffer();
        for (let offset = 0; offset < buffer.byteLength; offset += CHUNK) {
          ws.send(new Uint8Array(buffer, offset, Math.min(CHUNK, buffer.byteLength - offset)));
        }
        while (ws.bufferedAmount > WINDOW) await new Promise((resolve) => setTimeout(resolve, 2));
      }
    }
    ws.send(JSON.stringify({ type: 'done' }));
    await finished;
    window.__t1 = performance.now();
  });
  window.__ready = true;
})();
"""


def api_upload(server: ServerProcess, paths: list[Path]) -> float:
    with httpx.Client(base_url=server.url, timeout=TIMEOUT) as client:
        session_id = client.post("/api/sessions").json()["session_id"]
        files = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in paths]  # read before the clock
        started = time.perf_counter()
        response = client.post("/api/images", headers={"X-Session-Id": session_id}, files=files)
        elapsed = time.perf_counter() - started
    assert response.status_code == 200 and len(response.json()["accepted"]) == len(paths), response.text[:300]
    return elapsed


def _clocked(driver: Any, selector: str, paths: list[Path]) -> float:
    driver.find_element("css selector", selector).send_keys("\n".join(str(p) for p in paths))
    wait_for(driver, lambda d: d.execute_script("return window.__t1 !== null"), TIMEOUT, "did not finish")
    t0, t1 = driver.execute_script("return [window.__t0, window.__t1]")
    return (t1 - t0) / 1000


def page_upload(server: ServerProcess, paths: list[Path], filled: list[Path] | None = None) -> float:
    """Choose ``paths`` in a fresh workspace (after ``filled``, 100 at a time, shown as cards)."""
    driver = chromium()
    try:
        driver.get(server.url)  # a fresh browser: a fresh workspace
        wait_for(driver, lambda d: d.find_elements("css selector", "[data-testid=usage]"), 30)
        files = "input[type=file]:not([webkitdirectory])"
        for start in range(0, len(filled or []), 100):
            driver.find_element("css selector", files).send_keys("\n".join(str(p) for p in filled[start : start + 100]))
            shown = min(len(filled), start + 100)
            wait_for(driver, lambda d, n=shown: loaded_thumbnails(d) >= n, TIMEOUT, "the workspace was not filled")
        driver.execute_script(PAGE_CLOCK, len(paths))
        return _clocked(driver, files, paths)
    finally:
        driver.quit()


def bare_upload(bare: BareServer, paths: list[Path]) -> float:
    driver = chromium()
    try:
        driver.get(bare.url + "/api/health")  # same origin as /bare: no CORS in the way
        driver.execute_script(BARE_CLOCK)
        elapsed = _clocked(driver, "#bare-files", paths)
        assert driver.execute_script("return window.__bytes") >= sum(p.stat().st_size for p in paths)
        return elapsed
    finally:
        driver.quit()


def bare_socket_upload(server: ServerProcess, paths: list[Path]) -> float:
    driver = chromium()
    try:
        driver.get(server.url + "/api/health")  # same origin as the socket: no cross-site refusal
        driver.execute_script(BARE_WS_CLOCK)
        wait_for(driver, lambda d: d.execute_script("return window.__ready"), 30, "the socket did not open")
        elapsed = _clocked(driver, "#bare-ws-files", paths)
        assert driver.execute_script("return window.__accepted") == len(paths)
        return elapsed
    finally:
        driver.quit()


def write_photos(folder: Path, count: int, width: int, height: int, target: int, prefix: str) -> list[Path]:
    paths = []
    for seed in range(count):
        path = folder / f"{prefix}-{seed:02d}.jpg"
        path.write_bytes(photo_like_jpeg(seed + (1000 if prefix == "big" else 0), width, height, target_bytes=target))
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--photos", type=int, default=20)
    parser.add_argument("--big", type=int, default=10, help="5 MiB photos for the fetch(FormData) comparison")
    parser.add_argument("--filled", type=int, default=200, help="small images shown before the photos of 3.")
    args = parser.parse_args()
    if MISSING:
        sys.exit(MISSING)
    with tempfile.TemporaryDirectory(prefix="darkroom-bench-ui-") as folder:
        photos = write_photos(Path(folder), args.photos, 2048, 1536, 1_500_000, "photo")
        big = write_photos(Path(folder), args.big, 3000, 2000, 5 * 2**20, "big")
        print(f"{len(photos)} photos of 2048x1536 (3.1 MP), {sum(p.stat().st_size for p in photos) / 2**20:.1f} MiB")
        print(f"{len(big)} photos of 3000x2000, {sum(p.stat().st_size for p in big) / 2**20:.1f} MiB")
        small = []
        for seed in range(args.filled):
            path = Path(folder) / f"small-{seed:03d}.jpg"
            path.write_bytes(photo_like_jpeg(seed + 5000, 96, 64, target_bytes=4000))
            small.append(path)
        # Every measurement leaves its workspace behind (a page's lives until it is idle): room for all.
        server = ServerProcess(free_port(), env={"DARKROOM_MEMORY_CAP_BYTES": str(8 * 2**30)})
        bare = BareServer("bench._upload_server")
        try:
            api_upload(server, photos)  # warm-up: imports, worker pools, the browser binary
            page_upload(server, photos[:2])
            bare_upload(bare, big[:1])
            bare_socket_upload(server, photos[:2])
            api, page, page_big, bare_big, socket, socket_big, page_filled = [], [], [], [], [], [], []
            for _ in range(args.runs):
                api.append(api_upload(server, photos))
                page.append(page_upload(server, photos))
                page_big.append(page_upload(server, big))
                bare_big.append(bare_upload(bare, big))
                socket.append(bare_socket_upload(server, photos))
                socket_big.append(bare_socket_upload(server, big))
                page_filled.append(page_upload(server, photos, small))
        finally:
            server.stop()
            bare.stop()
    median = statistics.median
    print(f"API  POST /api/images:                     {median(api):6.2f} s (median of {args.runs})")
    print(f"page files chosen -> thumbnails visible:   {median(page):6.2f} s")
    print(f"ratio page / API: {median(page) / median(api):.2f}x (target <= 1.5x)")
    print(f"page {len(big)} x 5 MiB -> thumbnails visible:  {median(page_big):6.2f} s")
    print(f"bare fetch(FormData) -> request.body():     {median(bare_big):6.2f} s")
    print(f"throughput page / bare: {median(bare_big) / median(page_big):.2f}x (target >= 0.75x)")
    print(
        f"page {len(photos)} photos into a workspace of {args.filled} cards: {median(page_filled):6.2f} s "
        f"({median(page_filled) / median(page):.2f}x the empty workspace)"
    )
    print("the WebSocket's floor: the same files over a bare socket from a blank page")
    print(f"  {len(photos)} photos: {median(socket):6.2f} s, {median(socket) / median(api):.2f}x the API")
    print(
        f"  {len(big)} x 5 MiB: {median(socket_big):6.2f} s, throughput {median(bare_big) / median(socket_big):.2f}x "
        "of fetch(FormData)"
    )


if __name__ == "__main__":
    main()
