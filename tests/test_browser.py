"""End to end in real headless Chromium against the real server process.

Locally these tests skip when Chromium is missing; in CI (``CI=true``) a missing browser fails.
Set ``DARKROOM_SCREENSHOT_DIR`` to keep the screenshots (the README's come from here).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser import MISSING, ServerProcess, loaded_thumbnails, wait_for
from tests.helpers import DATA, free_port, make_jpeg

if MISSING:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"browser tests cannot run in CI: {MISSING}", pytrace=False)
    pytest.skip(MISSING, allow_module_level=True)

from selenium.webdriver.common.by import By  # noqa: E402  only once Chromium is known to be there
from websockets.sync.client import connect  # noqa: E402

PHOTOS = sorted((DATA / "features" / "images").iterdir())


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("DARKROOM_SCREENSHOT_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def open_workspace(driver, url: str) -> None:
    driver.get(url)
    wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "[data-testid=usage]"), message="page did not load")


def filenames(driver) -> list[str]:
    return sorted(e.text for e in driver.find_elements(By.CSS_SELECTOR, ".dr-card [data-testid=card-name]"))


def choose_files(driver, *paths: Path) -> None:
    driver.find_element(By.CSS_SELECTOR, "input[type=file]").send_keys("\n".join(str(p) for p in paths))


def click_button(driver, label: str) -> None:
    xpath = f"//button[not(@disabled)][.//span[normalize-space()='{label}']]"
    button = wait_for(driver, lambda d: [b for b in d.find_elements(By.XPATH, xpath) if b.is_displayed()])[-1]
    driver.execute_script("arguments[0].click()", button)  # a dialog still fading in must not swallow it


def click_tab(driver, label: str) -> None:
    xpath = f"//div[contains(@class, 'q-tab ')][.//div[normalize-space()='{label}']]"
    tab = wait_for(driver, lambda d: d.find_elements(By.XPATH, xpath))[0]
    driver.execute_script("arguments[0].click()", tab)  # a notification over it must not swallow the click


def field_value(driver, testid: str) -> str:
    """The value of a readonly input marked with ``data-testid`` (Quasar puts it on the input or a wrapper)."""
    selector = f"[data-testid={testid}] input, input[data-testid={testid}]"
    return wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, selector))[0].get_attribute("value")


def session_id_of(driver) -> str:
    click_button(driver, "Script access")
    value = field_value(driver, "session-id")
    click_button(driver, "Close")
    return value


def test_upload_through_the_file_input_shows_thumbnails_and_a_reload_keeps_them(server, browser, screenshots) -> None:
    driver = browser()
    open_workspace(driver, server.url)
    wait_for(driver, lambda d: "No images yet." in d.page_source)
    choose_files(driver, *PHOTOS)
    wait_for(driver, lambda d: loaded_thumbnails(d) == len(PHOTOS), message="thumbnails did not appear")
    assert filenames(driver) == sorted(p.name for p in PHOTOS)

    driver.refresh()
    wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "[data-testid=usage]"))
    wait_for(driver, lambda d: loaded_thumbnails(d) == len(PHOTOS), message="the reload lost the workspace")


def test_the_readme_screenshot_shows_a_shared_annotated_workspace(server, browser, screenshots) -> None:
    """The README's picture of the page: photos with a script's tags, stars and notes on their
    cards, and the script in the header's presence."""
    driver = browser()
    open_workspace(driver, server.url)
    choose_files(driver, *PHOTOS)
    wait_for(driver, lambda d: loaded_thumbnails(d) == len(PHOTOS), message="thumbnails did not appear")
    session = session_id_of(driver)
    edits = [
        {"tags_add": ["keep", "portfolio"], "rating": 5, "note": "the cover"},
        {"tags_add": ["keep"], "rating": 4},
        {"tags_add": ["blurry"], "rating": 1},
        {"rating": 3, "note": "crop the left edge"},
    ]
    with (
        httpx.Client(base_url=server.url, timeout=30) as api,
        connect(f"{server.url.replace('http', 'ws', 1)}/api/ws/events?session_id={session}"),
    ):  # an open events socket: the script is a member of the workspace
        images = api.get("/api/images", params={"session_id": session}).json()
        for image, edit in zip(images, edits, strict=False):
            response = api.patch(f"/api/images/{image['id']}/annotations", params={"session_id": session}, json=edit)
            assert response.status_code == 200
        wait_for(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".dr-card [data-tag]")) == 4)
        wait_for(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "[data-testid=presence-member]")) == 2)
        driver.save_screenshot(str(screenshots / "workspace.png"))
        click_tab(driver, "Dashboard")
        wait_for(driver, lambda d: "every feature computed" in d.page_source, timeout=60)
        driver.execute_script("document.querySelector('[data-testid=histogram]').scrollIntoView({block: 'start'})")
        driver.execute_script("window.scrollBy(0, -120)")  # the chart controls stay in the picture
        driver.save_screenshot(str(screenshots / "dashboard.png"))


def test_two_browsers_and_two_tabs_are_isolated(server, browser, tmp_path) -> None:
    first, second = browser(), browser()
    open_workspace(first, server.url)
    open_workspace(second, server.url)
    mine = tmp_path / "only-mine.jpg"
    mine.write_bytes(make_jpeg(120, 90, seed=30))
    choose_files(first, mine)
    theirs = tmp_path / "only-theirs.jpg"
    theirs.write_bytes(make_jpeg(120, 90, seed=31))
    choose_files(second, theirs)
    wait_for(first, lambda d: filenames(d) == ["only-mine.jpg"])
    wait_for(second, lambda d: filenames(d) == ["only-theirs.jpg"])
    assert session_id_of(first) != session_id_of(second)

    first.switch_to.new_window("tab")  # a new tab of the same browser: a workspace of its own
    open_workspace(first, server.url)
    wait_for(first, lambda d: "No images yet." in d.page_source)
    assert filenames(first) == []


def test_a_duplicated_tab_gets_a_fresh_workspace(server, browser, tmp_path) -> None:
    driver = browser()
    open_workspace(driver, server.url)
    photo = tmp_path / "original.jpg"
    photo.write_bytes(make_jpeg(100, 80, seed=32))
    choose_files(driver, photo)
    wait_for(driver, lambda d: filenames(d) == ["original.jpg"])
    original = driver.current_window_handle
    driver.execute_script("window.open(location.href)")  # copies sessionStorage, like "Duplicate tab"
    wait_for(driver, lambda d: len(d.window_handles) == 2)
    driver.switch_to.window([h for h in driver.window_handles if h != original][0])
    open_workspace(driver, server.url)
    wait_for(driver, lambda d: "No images yet." in d.page_source)
    assert filenames(driver) == []
    driver.switch_to.window(original)
    assert filenames(driver) == ["original.jpg"]


def test_an_api_push_with_the_tabs_session_id_appears_live(server, browser) -> None:
    driver = browser()
    open_workspace(driver, server.url)
    session_id = session_id_of(driver)
    response = httpx.post(
        f"{server.url}/api/images",
        headers={"X-Session-Id": session_id},
        files=[("files", ("from-a-script.jpg", make_jpeg(160, 120, seed=33)))],
    )
    assert response.status_code == 200
    wait_for(driver, lambda d: filenames(d) == ["from-a-script.jpg"] and loaded_thumbnails(d) == 1)
    image_id = response.json()["accepted"][0]["id"]
    assert httpx.delete(f"{server.url}/api/images/{image_id}", headers={"X-Session-Id": session_id}).status_code == 204
    wait_for(driver, lambda d: filenames(d) == [])


def test_an_invite_link_joins_another_browser_live(server, browser, tmp_path) -> None:
    owner, guest = browser(), browser()
    open_workspace(owner, server.url)
    photo = tmp_path / "shared.jpg"
    photo.write_bytes(make_jpeg(100, 80, seed=34))
    choose_files(owner, photo)
    wait_for(owner, lambda d: filenames(d) == ["shared.jpg"])
    click_button(owner, "Invite")
    click_button(owner, "Create invite link")
    link = field_value(owner, "invite-link")
    click_button(owner, "Close")
    owner_session = session_id_of(owner)
    assert "?join=" in link and owner_session not in link  # a token, never the session id

    open_workspace(guest, link)
    wait_for(guest, lambda d: filenames(d) == ["shared.jpg"], message="the invite did not join")
    assert "join=" not in guest.current_url  # the token left the address bar
    later = tmp_path / "added-later.jpg"
    later.write_bytes(make_jpeg(100, 80, seed=35))
    choose_files(owner, later)
    wait_for(guest, lambda d: filenames(d) == ["added-later.jpg", "shared.jpg"], message="not live in the guest")
    assert session_id_of(guest) == owner_session


def test_clear_empties_the_workspace(server, browser) -> None:
    driver = browser()
    open_workspace(driver, server.url)
    choose_files(driver, *PHOTOS[:3], DATA / "hostile" / "truncated.jpg")
    wait_for(driver, lambda d: loaded_thumbnails(d) == 3)
    wait_for(driver, lambda d: "truncated.jpg: the JPEG data is corrupt" in d.page_source)
    click_tab(driver, "Dashboard")
    wait_for(driver, lambda d: "every feature computed" in d.page_source, timeout=60)
    click_tab(driver, "Gallery (3)")
    click_button(driver, "Clear workspace")
    click_button(driver, "Clear")
    wait_for(driver, lambda d: filenames(d) == [] and "No images yet." in d.page_source)


def reopen(driver: Any) -> None:
    """Reload the tab. NiceGUI may be reloading it itself, having seen its socket come back from a
    new server; ChromeDriver then says the refresh was "aborted by navigation", and that reload
    does as well."""
    from selenium.common.exceptions import WebDriverException

    try:
        driver.refresh()
    except WebDriverException as exc:
        if "aborted by navigation" not in str(exc):
            raise


def test_in_disk_mode_a_tab_finds_its_workspace_after_the_server_restarts(browser, tmp_path) -> None:
    port = free_port()
    env = {
        "DARKROOM_STORAGE": "disk",
        "DARKROOM_STORAGE_DIR": str(tmp_path / "storage"),
        "DARKROOM_FEATURE_WORKERS": "1",
    }
    server = ServerProcess(port, env)
    try:
        driver = browser()
        open_workspace(driver, server.url)
        assert "survive a restart" in driver.page_source
        choose_files(driver, PHOTOS[0])
        wait_for(driver, lambda d: loaded_thumbnails(d) == 1)
        server.kill()
        server = ServerProcess(port, env)
        reopen(driver)
        wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "[data-testid=usage]"))
        wait_for(driver, lambda d: loaded_thumbnails(d) == 1, message="the reopened tab lost its workspace")
        assert filenames(driver) == [PHOTOS[0].name]
    finally:
        server.stop()
