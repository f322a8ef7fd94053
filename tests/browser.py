"""Real headless Chromium against the real server process, shared by the browser tests and
``bench/ui.py``. Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.server_process import ServerProcess

__all__ = ["MISSING", "ServerProcess", "chromium", "loaded_thumbnails", "wait_for"]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
MISSING = (
    None
    if CHROMIUM and CHROMEDRIVER
    else "Chromium and ChromeDriver are not installed (apt-get install chromium chromium-driver)"
)


def chromium(width: int = 1400, height: int = 1000, download_dir: Path | None = None) -> Any:
    """A fresh headless Chromium with its own profile: a separate browser, no shared storage.
    With ``download_dir``, downloads are saved there without asking."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",  # the machine's network is closed
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        # Headless Chromium 15x preloads its WebUI omnibox popup in a renderer of its own: about a
        # second of CPU at start, taken from the page under test on a small machine.
        "--disable-features=WebUIOmniboxPopup,WebUIOmniboxAimPopup,WebUIOmniboxFullPopup,PreloadTopChromeWebUI",
        f"--window-size={width},{height}",
    ):
        options.add_argument(argument)
    if download_dir is not None:
        options.add_experimental_option(
            "prefs", {"download.default_directory": str(download_dir), "download.prompt_for_download": False}
        )
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    if download_dir is not None:
        download_dir.mkdir(parents=True, exist_ok=True)
        driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(download_dir)})
    return driver


def wait_for(driver: Any, condition: Callable[[Any], Any], timeout: float = 20, message: str = "") -> Any:
    """Poll ``condition`` until it is truthy. An element re-rendered between finding it and reading
    it (NiceGUI replaces elements on update) only means: look again."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(driver, timeout, poll_frequency=0.05, ignored_exceptions=[StaleElementReferenceException])
    return wait.until(condition, message)


def loaded_thumbnails(driver: Any) -> int:
    """Cards whose thumbnail has actually been fetched and decoded by the browser."""
    return driver.execute_script(
        "return [...document.querySelectorAll('img.dr-thumb')].filter(i => i.complete && i.naturalWidth > 0).length"
    )
