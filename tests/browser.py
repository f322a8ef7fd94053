"""Real headless Chromium against the real server process, shared by the browser tests and
``bench/ui.py``. Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
MISSING = (
    None
    if CHROMIUM and CHROMEDRIVER
    else "Chromium and ChromeDriver are not installed (apt-get install chromium chromium-driver)"
)


class ServerProcess:
    """``python -m ui.main`` on a free port, as a user would run it."""

    def __init__(self, port: int, env: dict[str, str] | None = None) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "NICEGUI"))}
        self.workdir = tempfile.mkdtemp(prefix="darkroom-browser-")
        clean.update({"DARKROOM_LEGACY_DIR": str(Path(self.workdir) / "legacy"), **(env or {})})
        self.log = open(Path(self.workdir) / "server.log", "wb")  # noqa: SIM115  closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ui.main", "--port", str(port)],
            cwd=ROOT,
            env=clean,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited: {self.output()}")
            try:
                if httpx.get(f"{self.url}/api/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start: {self.output()}")
            time.sleep(0.2)

    def output(self) -> str:
        self.log.flush()
        return (Path(self.workdir) / "server.log").read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()
        shutil.rmtree(self.workdir, ignore_errors=True)


def chromium(width: int = 1400, height: int = 1000) -> Any:
    """A fresh headless Chromium with its own profile: a separate browser, no shared storage."""
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
        f"--window-size={width},{height}",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    return driver


def wait_for(driver: Any, condition: Callable[[Any], Any], timeout: float = 20, message: str = "") -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(condition, message)


def loaded_thumbnails(driver: Any) -> int:
    """Cards whose thumbnail has actually been fetched and decoded by the browser."""
    return driver.execute_script(
        "return [...document.querySelectorAll('img.dr-thumb')].filter(i => i.complete && i.naturalWidth > 0).length"
    )
