"""The culling view at keyboard speed, in real Chromium: a key press to the next image on screen,
and a verdict in one tab to its showing in another tab of the same workspace.

    python bench/culling.py [--images 2000] [--presses 200] [--pace 0.12]

Needs Debian's chromium and chromium-driver and the test extra (selenium). As ``bench/ui.py`` does,
the server (memory mode, with its decode workers) runs on core 1 (``taskset``) and this script with
ChromeDriver and both browsers on core 0. One tab opens a workspace; ``--images`` small generated
photo-like JPEGs (640x427, about 30 KB) are uploaded into it over the API; a second browser joins it
through an invite. Both open the culling view (the C key).

Per round, the first tab presses an arrow (a move) and then a digit (a verdict, which moves on too);
the second tab follows with arrows, so it shows each image the verdict lands on. Keys are real
input (WebDriver), ``--pace`` seconds apart, which keeps the verdicts well under the annotation
rate limit (10 a second).

* next image: from the keydown's timestamp (``event.timeStamp``, when the browser took the key) to
  the frame after the view's preview of the next image has loaded (its ``load`` event, then
  ``requestAnimationFrame``), in the first tab's clock. Target: p95 < 50 ms.
* other tab: from the verdict's keydown in the first tab to the second tab drawing the new
  annotation version of that image (a MutationObserver); both times are
  ``performance.timeOrigin + ...``, the wall clock both browsers share. Target: p95 < 150 ms.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._pinning import BROWSER_CORE, SERVER_CORE, PinnedServer, check_pinned, pin_self  # noqa: E402
from bench.common import free_port, percentile  # noqa: E402
from bench.ui import darkroom_env  # noqa: E402
from tests.browser import MISSING, chromium, wait_for  # noqa: E402

NEXT_IMAGE_TARGET = 0.050
OTHER_TAB_TARGET = 0.150
UPLOAD_BATCH = 100  # files per POST /api/images
WIDTH, HEIGHT = 640, 427

# The first tab's recorder: per key press, when the browser took it and when the next image was on
# screen (the frame after its preview loaded), and the wall time of each verdict's keydown.
RECORD_MOVES = """
window.__cull = { moves: [], verdicts: [], pending: null };
document.addEventListener('keydown', (event) => {
  const view = document.querySelector('[data-testid=culling]');
  if (!view) return;
  const wall = performance.timeOrigin + event.timeStamp;
  if (event.key >= '1' && event.key <= '5') window.__cull.verdicts.push({ id: view.dataset.imageId, wall });
  window.__cull.pending = { from: view.dataset.imageId, at: event.timeStamp };
}, true);
new MutationObserver(() => {
  const view = document.querySelector('[data-testid=culling]');
  const pending = window.__cull.pending;
  if (!view || !pending) return;
  if (view.dataset.shownId !== view.dataset.imageId || view.dataset.imageId === pending.from) return;
  window.__cull.pending = null;
  requestAnimationFrame(() => window.__cull.moves.push(performance.now() - pending.at));
}).observe(document, { subtree: true, attributes: true, attributeFilter: ['data-shown-id'] });
"""
# The second tab's recorder: when each image's annotation version first changed on screen.
RECORD_SEEN = """
window.__seen = {};
let shown = {};
new MutationObserver(() => {
  const view = document.querySelector('[data-testid=culling]');
  const rating = view && view.querySelector('[data-testid=cull-rating]');
  if (!rating) return;
  const id = view.dataset.imageId, version = rating.dataset.annotationVersion;
  if (id in shown && shown[id] !== version && !(id in window.__seen)) {
    window.__seen[id] = performance.timeOrigin + performance.now();
  }
  shown[id] = version;
}).observe(document, { subtree: true, childList: true, attributes: true, characterData: true });
"""
STATE = """
const view = document.querySelector('[data-testid=culling]');
return view ? { index: Number(view.dataset.index), count: Number(view.dataset.count),
                shown: view.dataset.shownId === view.dataset.imageId } : null;
"""


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def photos(count: int) -> list[bytes]:
    """``count`` distinct photo-like JPEGs (smooth colour fields with grain): one base, shifted and
    tinted per image, each encoded once."""
    y, x = np.mgrid[0 : HEIGHT * 2, 0 : WIDTH * 2].astype(np.float32)
    base = np.stack([127 + 100 * np.sin(x / (90 + 25 * c) + c) * np.cos(y / (70 + 20 * c) - c) for c in range(3)], -1)
    grain = np.random.default_rng(0).normal(0, 10, size=base.shape).astype(np.float32)
    found = []
    for n in range(count):
        dy, dx = (n * 37) % HEIGHT, (n * 53) % WIDTH
        tint = np.array([(n * 29) % 60 - 30, (n * 17) % 60 - 30, (n * 11) % 60 - 30], dtype=np.float32)
        pixels = np.clip(base[dy : dy + HEIGHT, dx : dx + WIDTH] + grain[:HEIGHT, :WIDTH] + tint, 0, 255)
        out = io.BytesIO()
        Image.fromarray(pixels.astype(np.uint8)).save(out, "JPEG", quality=80)
        found.append(out.getvalue())
    return found


def click_button(driver: Any, label: str) -> None:
    xpath = f"//button[not(@disabled)][.//span[normalize-space()='{label}']]"
    button = wait_for(driver, lambda d: [b for b in d.find_elements("xpath", xpath) if b.is_displayed()])[-1]
    driver.execute_script("arguments[0].click()", button)


def field_value(driver: Any, testid: str) -> str:
    selector = f"[data-testid={testid}] input, input[data-testid={testid}]"
    return wait_for(driver, lambda d: d.find_elements("css selector", selector))[0].get_attribute("value")


def open_page(driver: Any, url: str) -> None:
    driver.get(url)
    wait_for(driver, lambda d: d.find_elements("css selector", "[data-testid=presence-member]"), timeout=60)


def cards(driver: Any) -> int:
    return len(driver.find_elements("css selector", ".dr-card"))


def fill(server: PinnedServer, session: str, count: int) -> None:
    with httpx.Client(base_url=server.url, timeout=300) as api:
        made = photos(count)
        for start in range(0, count, UPLOAD_BATCH):
            batch = range(start, min(count, start + UPLOAD_BATCH))
            files = [("files", (f"cull-{n:05d}.jpg", made[n], "image/jpeg")) for n in batch]
            response = api.post("/api/images", params={"session_id": session}, files=files)
            if response.status_code >= 300 or len(response.json()["accepted"]) != len(files):
                raise RuntimeError(f"upload: {response.status_code} {response.text[:300]}")
            progress(f"  uploaded {min(count, start + UPLOAD_BATCH)} of {count}")


def open_culling(driver: Any, count: int) -> None:
    driver.execute_script("document.activeElement && document.activeElement.blur()")
    press(driver, "c")
    wait_for(driver, lambda d: (s := d.execute_script(STATE)) and s["count"] == count and s["shown"], timeout=60)


def press(driver: Any, key: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).send_keys(key).perform()


def at_index(driver: Any, index: int) -> None:
    wait_for(driver, lambda d: (s := d.execute_script(STATE)) and s["index"] == index and s["shown"], timeout=30)


def measure(args: argparse.Namespace, workdir: str) -> tuple[list[float], list[float]]:
    from selenium.webdriver.common.keys import Keys

    port = free_port()
    env = darkroom_env(workdir)
    server = PinnedServer("Darkroom", [sys.executable, "-m", "ui.main", "--port", str(port)], port, "/api/health", env)
    drivers: list[Any] = []
    try:
        check_pinned("Darkroom", server.process.pid, SERVER_CORE)
        culler, watcher = chromium(1400, 900), chromium(1400, 900)
        drivers += [culler, watcher]
        culler.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": RECORD_MOVES})
        watcher.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": RECORD_SEEN})
        open_page(culler, server.url)
        click_button(culler, "Script access")
        session = field_value(culler, "session-id")
        click_button(culler, "Close")
        progress(f"uploading {args.images} images into the workspace ...")
        fill(server, session, args.images)
        wait_for(culler, lambda d: cards(d) == args.images, timeout=600, message="the page lacks cards")
        click_button(culler, "Invite")
        click_button(culler, "Create invite link")
        link = field_value(culler, "invite-link")
        click_button(culler, "Close")
        open_page(watcher, link)
        wait_for(watcher, lambda d: cards(d) == args.images, timeout=600, message="the joined page lacks cards")
        open_culling(culler, args.images)
        open_culling(watcher, args.images)
        progress(f"{args.presses} presses, {args.pace:.2f} s apart ...")
        for n in range(min(args.presses, args.images - 1)):
            verdict, index = n % 2 == 1, n + 1  # every press moves on by one image
            press(culler, str(1 + (n // 2) % 5) if verdict else Keys.ARROW_RIGHT)
            at_index(culler, index)
            if verdict:  # the watcher shows the image the verdict landed on: follow the culler
                wait_for(watcher, lambda d, n=n: len(d.execute_script("return Object.keys(window.__seen)")) > n // 2)
            press(watcher, Keys.ARROW_RIGHT)
            at_index(watcher, index)
            time.sleep(args.pace)
        moves = culler.execute_script("return window.__cull.moves")
        sent = culler.execute_script("return window.__cull.verdicts")
        seen = watcher.execute_script("return window.__seen")
        other = [seen[v["id"]] - v["wall"] for v in sent if v["id"] in seen]
        if len(other) < len(sent):
            progress(f"  {len(sent) - len(other)} verdicts were never seen in the other tab")
        return [m / 1000 for m in moves], [o / 1000 for o in other]
    finally:
        for driver in drivers:
            driver.quit()
        server.stop()


def report(name: str, values: list[float], target: float) -> str:
    if not values:
        return f"{name}: no samples"
    p50, high = statistics.median(values), percentile(values, 0.95)
    verdict = "PASS" if high < target else "FAIL"
    return (
        f"{name}: n={len(values)}  p50 {p50 * 1000:.1f} ms  p95 {high * 1000:.1f} ms  "
        f"max {max(values) * 1000:.1f} ms  (target p95 < {target * 1000:.0f} ms: {verdict})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=2000, help="images in the workspace")
    parser.add_argument("--presses", type=int, default=200, help="key presses in the culling tab (half verdicts)")
    parser.add_argument("--pace", type=float, default=0.12, help="seconds between rounds of presses")
    args = parser.parse_args()
    if MISSING:
        sys.exit(MISSING)
    if args.images < 2 or args.presses < 2:
        parser.error("at least 2 images and 2 presses")
    pin_self(BROWSER_CORE)
    with tempfile.TemporaryDirectory(prefix="darkroom-bench-culling-") as workdir:
        moves, other = measure(args, workdir)
    print(f"\n== culling: {args.images} images, browser on core {BROWSER_CORE}, server on core {SERVER_CORE} ==")
    print(report("key press -> next image shown", moves, NEXT_IMAGE_TARGET))
    print(report("verdict -> shown in another tab", other, OTHER_TAB_TARGET))


if __name__ == "__main__":
    main()
