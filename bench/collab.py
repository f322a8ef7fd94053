"""Time from an edit in one Chromium tab until it shows in the other tabs of the same workspace.

    python bench/collab.py [--rounds 40] [--tabs 2,10]

Needs Debian's chromium and chromium-driver and the test extra (selenium). One server process
(memory mode), one headless Chromium; the first tab creates an invite and every other tab joins
through it (each its own window, so none is a throttled background tab). Per round the editing tab
clicks a star of the first card's rating; every other tab records, with a MutationObserver, when
its card carries the new annotation version. Both times come from the browser's clock
(``performance.timeOrigin + performance.now()``), so no WebDriver round trip is measured. Prints
p50 and p95 in milliseconds for the second tab and for the last of all tabs, with 2 and with 10
tabs open (target: p95 < 150 ms with 10 tabs).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import free_port, percentile  # noqa: E402
from tests.browser import CHROMEDRIVER, CHROMIUM, MISSING, ServerProcess, wait_for  # noqa: E402
from tests.helpers import make_jpeg  # noqa: E402

STARS = ".dr-card [data-testid=card-rating] .dr-star"
WATCH = """
const version = String(arguments[0]);
window.__seen = null;
if (window.__watch) window.__watch.disconnect();
const check = () => {
  if (window.__seen === null && document.querySelector(`.dr-card [data-annotation-version="${version}"]`))
    window.__seen = performance.timeOrigin + performance.now();
};
window.__watch = new MutationObserver(check);
window.__watch.observe(document.body, {subtree: true, childList: true, attributes: true,
                                       attributeFilter: ['data-annotation-version']});
check();
"""
EDIT = """
const star = document.querySelectorAll(arguments[0])[arguments[1]];
const sent = performance.timeOrigin + performance.now();
star.click();
return sent;
"""


def browser() -> Any:
    """Headless Chromium whose windows are never throttled as background tabs."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-background-timer-throttling",
        "--disable-renderer-backgrounding",
        "--disable-backgrounding-occluded-windows",
        "--no-first-run",
        "--window-size=1200,900",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    return driver


def wait_for_card(driver: Any) -> None:
    from selenium.webdriver.common.by import By

    wait_for(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, STARS)) == 5, 30, "the card did not show")


def first_workspace(driver: Any, server: ServerProcess) -> str:
    """Open the first tab, put one image in its workspace, and return an invite link to it."""
    from selenium.webdriver.common.by import By

    driver.get(server.url)
    selector = "[data-testid=session-id] input, input[data-testid=session-id]"

    def click_button(label: str) -> None:
        xpath = f"//button[not(@disabled)][.//span[normalize-space()='{label}']]"
        button = wait_for(driver, lambda d: [b for b in d.find_elements(By.XPATH, xpath) if b.is_displayed()], 30)
        driver.execute_script("arguments[0].click()", button[-1])

    click_button("Script access")
    session = wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, selector), 30)[0].get_attribute("value")
    click_button("Close")
    files = {"files": ("bench.jpg", make_jpeg(160, 120, seed=7))}
    response = httpx.post(f"{server.url}/api/images", params={"session_id": session}, files=files, timeout=60)
    assert response.status_code == 200, response.text[:300]
    wait_for_card(driver)
    click_button("Invite")
    click_button("Create invite link")
    link_selector = "[data-testid=invite-link] input, input[data-testid=invite-link]"
    link = wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, link_selector), 30)[0].get_attribute("value")
    click_button("Close")
    return link


def open_tab(driver: Any, link: str) -> str:
    driver.switch_to.new_window("window")
    driver.get(link)
    wait_for_card(driver)
    return driver.current_window_handle


def current_version(driver: Any) -> int:
    return int(
        driver.execute_script(
            "return document.querySelector('.dr-card [data-annotation-version]').dataset.annotationVersion"
        )
    )


def measure(driver: Any, tabs: list[str], rounds: int) -> tuple[list[float], list[float]]:
    """Per round: (ms until the second tab shows the edit, ms until the last tab does)."""
    to_second: list[float] = []
    to_all: list[float] = []
    editor, receivers = tabs[0], tabs[1:]
    driver.switch_to.window(editor)
    version = current_version(driver)
    for number in range(rounds):
        version += 1
        for handle in receivers:
            driver.switch_to.window(handle)
            driver.execute_script(WATCH, version)
        driver.switch_to.window(editor)
        sent = driver.execute_script(EDIT, STARS, number % 4 + (1 if number % 4 >= 2 else 0))  # 1, 2, 4, 5 stars
        seen: list[float] = []
        for handle in receivers:
            driver.switch_to.window(handle)
            seen.append(wait_for(driver, lambda d: d.execute_script("return window.__seen"), 20, "edit not shown"))
        to_second.append(seen[0] - sent)
        to_all.append(max(seen) - sent)
        driver.switch_to.window(editor)
        time.sleep(0.15)  # a person's pace, and well under the per-tab edit rate limit
    return to_second, to_all


def report(label: str, values: list[float]) -> None:
    print(f"  {label:<22} p50 {statistics.median(values):7.1f} ms   p95 {percentile(values, 0.95):7.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=40, help="edits measured per tab count")
    parser.add_argument("--tabs", default="2,10", help="tab counts to measure, in increasing order")
    args = parser.parse_args()
    if MISSING:
        sys.exit(MISSING)
    counts = sorted(int(n) for n in args.tabs.split(","))
    server = ServerProcess(free_port(), {"DARKROOM_FEATURE_WORKERS": "1"})
    driver = browser()
    try:
        link = first_workspace(driver, server)
        tabs = [driver.current_window_handle]
        measure_warm = True
        for count in counts:
            while len(tabs) < count:
                tabs.append(open_tab(driver, link))
            if measure_warm:  # the first edits pay for imports and JIT
                measure(driver, tabs, 3)
                measure_warm = False
            to_second, to_all = measure(driver, tabs, args.rounds)
            print(f"{count} tabs, {args.rounds} edits (a star rating clicked in one tab):")
            report("until the second tab", to_second)
            report(f"until all {count - 1} others", to_all)
    finally:
        driver.quit()
        server.stop()
    print("target: p95 < 150 ms with 10 tabs")


if __name__ == "__main__":
    main()
