"""Time from files chosen on the page to every thumbnail visible, against the plain API.

    python bench/ui.py [--runs 3] [--photos 20]

Needs Debian's chromium and chromium-driver and the test extra (selenium). Prints, for 20
photo-like JPEGs of about 3 MP, measured in one run against one server process:
  * API:  POST /api/images of all the files into a fresh session (the baseline)
  * page: files chosen in the drop zone of a fresh tab -> every thumbnail fetched and decoded
  * the ratio page / API (target <= 1.5)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import free_port, photo_like_jpeg  # noqa: E402
from tests.browser import MISSING, ServerProcess, chromium, loaded_thumbnails, wait_for  # noqa: E402


def api_upload(server: ServerProcess, paths: list[Path]) -> float:
    with httpx.Client(base_url=server.url, timeout=120) as client:
        session_id = client.post("/api/sessions").json()["session_id"]
        files = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in paths]  # read before the clock
        started = time.perf_counter()
        response = client.post("/api/images", headers={"X-Session-Id": session_id}, files=files)
        elapsed = time.perf_counter() - started
    assert response.status_code == 200 and len(response.json()["accepted"]) == len(paths), response.text[:300]
    return elapsed


def page_upload(server: ServerProcess, paths: list[Path]) -> float:
    from selenium.webdriver.common.by import By

    driver = chromium()
    try:
        driver.get(server.url)  # a fresh browser: a fresh workspace
        wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "input[type=file]"), 30)
        file_input = driver.find_element(By.CSS_SELECTOR, "input[type=file]")
        started = time.perf_counter()
        file_input.send_keys("\n".join(str(p) for p in paths))
        wait_for(driver, lambda d: loaded_thumbnails(d) == len(paths), 300, "thumbnails did not all appear")
        return time.perf_counter() - started
    finally:
        driver.quit()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--photos", type=int, default=20)
    args = parser.parse_args()
    if MISSING:
        sys.exit(MISSING)
    with tempfile.TemporaryDirectory(prefix="darkroom-bench-ui-") as folder:
        paths = []
        for seed in range(args.photos):
            path = Path(folder) / f"photo-{seed:02d}.jpg"
            path.write_bytes(photo_like_jpeg(seed, 2048, 1536, target_bytes=1_500_000))
            paths.append(path)
        total = sum(p.stat().st_size for p in paths)
        print(f"{len(paths)} photos of 2048x1536 (3.1 MP), {total / 2**20:.1f} MiB in all")
        server = ServerProcess(free_port())
        try:
            api_upload(server, paths)  # warm-up: imports, thread pools
            page_upload(server, paths[:2])
            api, page = [], []
            for _ in range(args.runs):
                api.append(api_upload(server, paths))
                page.append(page_upload(server, paths))
        finally:
            server.stop()
    api_time, page_time = statistics.median(api), statistics.median(page)
    print(f"API  POST /api/images:                    {api_time:6.2f} s (median of {args.runs})")
    print(f"page files chosen -> thumbnails visible:  {page_time:6.2f} s (median of {args.runs})")
    print(f"ratio page / API: {page_time / api_time:.2f}x (target <= 1.5x)")


if __name__ == "__main__":
    main()
