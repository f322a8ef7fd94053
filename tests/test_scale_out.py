"""Several real ``darkroom`` processes on one real Redis (DARKROOM_STORAGE=redis), as
``docs/deploy/`` runs them: sessions, quotas, events and invites are shared; a killed process
loses nothing; a Redis that writes to disk is refused; a Redis that goes away gives 503 and the
calls recover by themselves. Then real Chromium through a real HAProxy (``docs/deploy/haproxy.cfg``
on free ports) in front of two processes: live pushes across processes, reloads, a tab landing on the
other process, and an invite made on one process joining a browser on the other.

Locally these tests skip when redis-server, HAProxy or Chromium is missing; in CI they fail.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.browser import MISSING as BROWSER_MISSING
from tests.browser import chromium, loaded_thumbnails, wait_for
from tests.helpers import free_port, make_jpeg, skip_or_fail
from tests.redis_server import MISSING as REDIS_MISSING
from tests.redis_server import RedisServer
from tests.server_process import ROOT, ServerProcess

pytestmark = [pytest.mark.redis, pytest.mark.slow]  # several server processes per test

HAPROXY = shutil.which("haproxy")
HAPROXY_CONFIG = ROOT / "docs" / "deploy" / "haproxy.cfg"
QUOTA_BYTES = 200_000
UPLOADERS = 6
UPLOADS_EACH = 8
STICKY_COOKIE = "DARKROOM_SERVER"
WAIT_SECONDS = 30


def redis_env(url: str, **extra: str) -> dict[str, str]:
    return {
        "DARKROOM_STORAGE": "redis",
        "DARKROOM_REDIS_URL": url,
        "DARKROOM_SESSION_QUOTA_BYTES": str(QUOTA_BYTES),
        "DARKROOM_FEATURE_WORKERS": "1",
        "DARKROOM_DECODE_WORKERS": "1",
        **extra,
    }


@pytest.fixture(scope="module")
def shared_server() -> Iterator[RedisServer]:
    if REDIS_MISSING:
        skip_or_fail(REDIS_MISSING)
    server = RedisServer()
    yield server
    server.close()


@pytest.fixture(scope="module")
def pair(shared_server: RedisServer) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """Two darkroom processes on one Redis."""
    first = ServerProcess(free_port(), redis_env(shared_server.url()))
    try:
        second = ServerProcess(free_port(), redis_env(shared_server.url()))
    except BaseException:
        first.stop()
        raise
    yield first, second
    first.stop()
    second.stop()


def new_session(url: str) -> str:
    response = httpx.post(f"{url}/api/sessions", timeout=30)
    assert response.status_code == 201
    return response.json()["session_id"]


def push(url: str, session_id: str, name: str, data: bytes) -> httpx.Response:
    return httpx.post(
        f"{url}/api/images", params={"session_id": session_id}, files=[("files", (name, data))], timeout=60
    )


def listed(url: str, session_id: str) -> list[dict]:
    response = httpx.get(f"{url}/api/images", params={"session_id": session_id}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


# -- two processes on one Redis --
def test_a_session_made_on_one_process_is_served_by_the_other(pair):
    first, second = pair
    session_id = new_session(first.url)
    photo = make_jpeg(seed=1)
    assert push(first.url, session_id, "one.jpg", photo).status_code == 200
    (record,) = listed(second.url, session_id)
    assert record["filename"] == "one.jpg"
    original = httpx.get(f"{second.url}/api/images/{record['id']}", params={"session_id": session_id}, timeout=30)
    assert original.status_code == 200 and original.content == photo
    assert httpx.delete(f"{second.url}/api/images/{record['id']}", params={"session_id": session_id}).status_code == 204
    assert listed(first.url, session_id) == []


def test_uploads_through_both_processes_at_once_stay_inside_the_quota(pair):
    session_id = new_session(pair[0].url)
    photos = [make_jpeg(128, 96, seed=100 + n) for n in range(UPLOADERS * UPLOADS_EACH)]
    assert sum(len(p) for p in photos) > 2 * QUOTA_BYTES  # far more than fits
    statuses: list[int] = []
    start = threading.Barrier(UPLOADERS)

    def upload(n: int) -> None:
        url = pair[n % 2].url
        start.wait()
        for k in range(UPLOADS_EACH):
            index = n * UPLOADS_EACH + k
            statuses.append(push(url, session_id, f"{index}.jpg", photos[index]).status_code)

    threads = [threading.Thread(target=upload, args=(n,)) for n in range(UPLOADERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert set(statuses) == {200, 413}
    kept = listed(pair[1].url, session_id)
    assert len(kept) == statuses.count(200)
    thumbnails = sum(
        len(httpx.get(f"{pair[0].url}/api/images/{r['id']}/thumbnail", params={"session_id": session_id}).content)
        for r in kept
    )
    assert sum(r["size_bytes"] for r in kept) + thumbnails + 1024 * len(kept) <= QUOTA_BYTES


def test_when_one_process_is_killed_the_other_serves_every_session(shared_server, pair):
    victim = ServerProcess(free_port(), redis_env(shared_server.url()))
    sessions = {}
    for n in range(3):
        session_id = new_session(victim.url)
        assert push(victim.url, session_id, f"s{n}.jpg", make_jpeg(seed=200 + n)).status_code == 200
        sessions[session_id] = f"s{n}.jpg"
    victim.kill()  # SIGKILL: no shutdown handler runs
    survivor = pair[1].url
    for session_id, name in sessions.items():
        assert [r["filename"] for r in listed(survivor, session_id)] == [name]


def test_a_redis_that_writes_to_disk_is_refused_at_start(shared_server):
    persistent = RedisServer(persistence=True)
    try:
        with pytest.raises(RuntimeError) as error:
            ServerProcess(free_port(), redis_env(persistent.url()))
        output = str(error.value)
        assert "the server exited" in output
        assert "persistence on" in output and "CONFIG SET save ''" in output and "CONFIG SET appendonly no" in output
    finally:
        persistent.close()


def test_when_redis_goes_away_calls_get_503_and_recover_when_it_returns():
    if REDIS_MISSING:
        skip_or_fail(REDIS_MISSING)
    redis_process = RedisServer()
    server = ServerProcess(free_port(), redis_env(redis_process.url()))
    try:
        session_id = new_session(server.url)
        redis_process.stop()
        for call in (
            lambda: httpx.get(f"{server.url}/api/images", params={"session_id": session_id}, timeout=30),
            lambda: push(server.url, session_id, "a.jpg", make_jpeg(seed=3)),
            lambda: httpx.post(f"{server.url}/api/sessions", timeout=30),
        ):
            response = call()
            assert response.status_code == 503, response.text
            assert "Redis" in response.json()["detail"] and "try again" in response.json()["detail"]
            assert int(response.headers["Retry-After"]) > 0
        redis_process.start()  # same port; a RAM-only Redis comes back empty
        deadline = time.monotonic() + WAIT_SECONDS
        while (status := push(server.url, session_id, "b.jpg", make_jpeg(seed=4)).status_code) != 200:
            assert status == 503 and time.monotonic() < deadline, status
            time.sleep(0.2)
        assert [r["filename"] for r in listed(server.url, session_id)] == ["b.jpg"]
        assert "Traceback" not in server.output()
    finally:
        server.stop()
        redis_process.close()


# -- Chromium through HAProxy in front of two processes --
class HAProxy:
    """``haproxy`` in the foreground with docs/deploy/haproxy.cfg, its ports replaced by free ones."""

    def __init__(self, backends: list[int]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = HAPROXY_CONFIG.read_text()
        config = re.sub(r"bind \*:\d+", f"bind 127.0.0.1:{self.port}", config)
        for n, port in enumerate(backends, start=1):
            config = re.sub(rf"server app{n} 127\.0\.0\.1:\d+", f"server app{n} 127.0.0.1:{port}", config)
        self.folder = Path(tempfile.mkdtemp(prefix="darkroom-haproxy-"))
        (self.folder / "haproxy.cfg").write_text(config)
        self.log = open(self.folder / "haproxy.log", "wb")  # noqa: SIM115  closed in stop()
        self.process = subprocess.Popen(
            [HAPROXY, "-db", "-f", str(self.folder / "haproxy.cfg")], stdout=self.log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + WAIT_SECONDS
        while True:  # up, and every backend passed its health check (round-robin answers from each)
            if self.process.poll() is not None:
                raise RuntimeError(f"haproxy exited: {(self.folder / 'haproxy.log').read_text()}")
            try:
                answers = [httpx.get(f"{self.url}/api/health", timeout=2).status_code for _ in backends]
                if answers == [200] * len(backends):
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("haproxy did not come up")
            time.sleep(0.2)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)
        self.log.close()
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture(scope="module")
def proxy(pair) -> Iterator[HAProxy]:
    if HAPROXY is None:
        skip_or_fail("HAProxy is not installed (apt-get install haproxy)")
    if BROWSER_MISSING:
        skip_or_fail(BROWSER_MISSING)
    haproxy = HAProxy([pair[0].port, pair[1].port])
    yield haproxy
    haproxy.stop()


@pytest.fixture
def driver() -> Iterator:
    browser = chromium()
    yield browser
    browser.quit()


def card_names(driver) -> list[str]:
    return sorted(
        driver.execute_script(
            "return [...document.querySelectorAll('.dr-card [data-testid=card-name]')].map(e => e.textContent)"
        )
    )


def open_page(driver, url: str) -> None:
    driver.get(url)
    wait_for(
        driver,
        lambda d: d.execute_script("return !!document.querySelector('[data-testid=usage]')"),
        message="the page did not load through the proxy",
    )


@pytest.mark.browser
def test_a_tab_behind_the_proxy_sees_live_what_a_script_pushed_through_the_other_process(pair, proxy, driver, tmp_path):
    open_page(driver, proxy.url)
    pinned = driver.get_cookie(STICKY_COOKIE)
    assert pinned is not None, "the proxy did not pin the browser to a process"
    mine, other = (pair[0], pair[1]) if pinned["value"] == "app1" else (pair[1], pair[0])
    notice = driver.execute_script("return document.querySelector('[data-testid=storage-notice]').textContent")
    assert "Redis" in notice and "Nothing is written to disk" in notice

    photo = tmp_path / "dropped.jpg"
    photo.write_bytes(make_jpeg(120, 90, seed=40))
    driver.find_element("css selector", "input[type=file]").send_keys(str(photo))
    wait_for(driver, lambda d: loaded_thumbnails(d) == 1, message="the tab's upload did not show")
    session_id = wait_for(driver, lambda d: d.execute_script("return sessionStorage.getItem('darkroom_session')"))
    assert [r["filename"] for r in listed(mine.url, session_id)] == ["dropped.jpg"]

    assert push(other.url, session_id, "pushed.jpg", make_jpeg(120, 90, seed=41)).status_code == 200
    wait_for(
        driver, lambda d: loaded_thumbnails(d) == 2, message="the push through the other process did not show live"
    )
    assert card_names(driver) == ["dropped.jpg", "pushed.jpg"]

    driver.refresh()  # sticky: the same process, the same workspace
    wait_for(driver, lambda d: loaded_thumbnails(d) == 2, message="the reload lost the workspace")
    assert driver.get_cookie(STICKY_COOKIE)["value"] == pinned["value"]

    # The tab lands on the other process (its process went away, or stickiness was lost): the id in
    # its sessionStorage brings it back to the same workspace.
    driver.delete_cookie(STICKY_COOKIE)
    driver.add_cookie({"name": STICKY_COOKIE, "value": "app2" if pinned["value"] == "app1" else "app1", "path": "/"})
    driver.refresh()
    wait_for(
        driver, lambda d: loaded_thumbnails(d) == 2, message="the tab did not find its workspace on the other process"
    )
    assert card_names(driver) == ["dropped.jpg", "pushed.jpg"]


def click_button(driver, label: str) -> None:
    xpath = f"//button[not(@disabled)][.//span[normalize-space()='{label}']]"
    button = wait_for(driver, lambda d: [b for b in d.find_elements("xpath", xpath) if b.is_displayed()])[-1]
    driver.execute_script("arguments[0].click()", button)


def pin(driver, proxy: HAProxy, server: str) -> None:
    """Route this browser to ``server`` ("app1" or "app2") through the proxy's sticky cookie."""
    driver.get(f"{proxy.url}/api/health")
    driver.delete_cookie(STICKY_COOKIE)
    driver.add_cookie({"name": STICKY_COOKIE, "value": server, "path": "/"})


@pytest.mark.browser
def test_an_invite_made_on_one_process_joins_a_browser_on_the_other_live(pair, proxy, tmp_path):
    owner, guest = chromium(), chromium()
    try:
        pin(owner, proxy, "app1")
        pin(guest, proxy, "app2")
        open_page(owner, proxy.url)
        photo = tmp_path / "shared.jpg"
        photo.write_bytes(make_jpeg(100, 80, seed=50))
        owner.find_element("css selector", "input[type=file]").send_keys(str(photo))
        wait_for(owner, lambda d: card_names(d) == ["shared.jpg"])
        click_button(owner, "Invite")
        click_button(owner, "Create invite link")
        selector = "[data-testid=invite-link] input, input[data-testid=invite-link]"
        link = wait_for(owner, lambda d: d.find_elements("css selector", selector))[0].get_attribute("value")
        assert link.startswith(proxy.url) and "?join=" in link

        open_page(guest, link)
        wait_for(guest, lambda d: card_names(d) == ["shared.jpg"], message="the invite did not join on app2")
        assert guest.get_cookie(STICKY_COOKIE)["value"] == "app2" and owner.get_cookie(STICKY_COOKIE)["value"] == "app1"
        later = tmp_path / "added-later.jpg"
        later.write_bytes(make_jpeg(100, 80, seed=51))
        owner.find_element("css selector", "input[type=file]").send_keys(str(later))
        wait_for(guest, lambda d: card_names(d) == ["added-later.jpg", "shared.jpg"], message="not live on app2")
    finally:
        owner.quit()
        guest.quit()
