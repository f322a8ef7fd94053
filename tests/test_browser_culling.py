"""The culling view in real headless Chromium against the real server process: a pass by keys
(rate, pick, reject, undo, tag) stored for the workspace, every verdict shown live in another
joined tab's view, and each member's name on the image it looks at. Locally skipped without
Chromium; in CI a missing browser fails."""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image, ImageFilter

from tests.browser import MISSING, ServerProcess, wait_for
from tests.helpers import DATA, make_jpeg

if MISSING:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"browser tests cannot run in CI: {MISSING}", pytrace=False)
    pytest.skip(MISSING, allow_module_level=True)

from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402

from tests.test_browser_collab import click_button, invite_link, open_workspace  # noqa: E402

BURST_PHOTO = DATA / "features" / "images" / "chelsea.png"

# What the culling view shows now: its position, the image, whether its preview has loaded, and
# that image's stars, pick and tags as drawn.
STATE = """
const view = document.querySelector('[data-testid=culling]');
if (!view) return null;
const rating = view.querySelector('[data-testid=cull-rating]');
const pick = view.querySelector('[data-testid=cull-pick]');
return {
  index: Number(view.dataset.index), count: Number(view.dataset.count), id: view.dataset.imageId,
  shown: view.dataset.shownId === view.dataset.imageId,
  rating: rating ? Number(rating.dataset.rating) : null,
  pick: pick ? pick.dataset.pick : null,
  tags: [...view.querySelectorAll('[data-testid=cull-tag]')].map((chip) => chip.dataset.tag),
  viewers: [...view.querySelectorAll('[data-testid=cull-viewer]')].map((chip) => chip.dataset.memberName),
  notice: (view.querySelector('[data-testid=cull-notice]') || {}).textContent || '',
};
"""


def state(driver: Any) -> dict[str, Any] | None:
    return driver.execute_script(STATE)


def press(driver: Any, *keys: str) -> None:
    ActionChains(driver).send_keys(*keys).perform()


def shows(driver: Any, timeout: float = 20, message: str = "", **expected: Any) -> dict[str, Any]:
    """Wait until the view shows ``expected`` (keys of ``state``) and its preview has loaded."""

    def matches(d: Any) -> dict[str, Any] | None:
        now = state(d)
        return now if now and now["shown"] and all(now[k] == v for k, v in expected.items()) else None

    try:
        return wait_for(driver, matches, timeout=timeout, message=message)
    except Exception as exc:
        raise AssertionError(f"{message or 'the culling view'}: wanted {expected}, shows {state(driver)}") from exc


def session_of(driver: Any) -> str:
    click_button(driver, "Script access")
    selector = "[data-testid=session-id] input, input[data-testid=session-id]"
    session = wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, selector))[0].get_attribute("value")
    click_button(driver, "Close")
    return session


def upload(driver: Any, tmp_path: Path, count: int) -> list[str]:
    """Choose ``count`` photos in the page and wait for their cards; their ids in gallery order."""
    paths = []
    for n in range(count):
        path = tmp_path / f"cull-{n}.jpg"
        path.write_bytes(make_jpeg(160, 120, seed=200 + n))
        paths.append(str(path))
    driver.find_element(By.CSS_SELECTOR, "input[type=file]:not([webkitdirectory])").send_keys("\n".join(paths))
    wait_for(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".dr-card")) == count, message="no cards")
    return [card.get_attribute("data-image-id") for card in driver.find_elements(By.CSS_SELECTOR, ".dr-card")]


def open_culling(driver: Any, count: int) -> dict[str, Any]:
    driver.execute_script("document.activeElement && document.activeElement.blur()")
    press(driver, "c")
    return shows(driver, index=0, count=count, message="C did not open the culling view")


def joined_pair(server: ServerProcess, browser: Callable[[], Any], tmp_path: Path, count: int) -> tuple[Any, Any]:
    owner, guest = browser(), browser()
    open_workspace(owner, server.url)
    upload(owner, tmp_path, count)
    open_workspace(guest, invite_link(owner))
    wait_for(guest, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".dr-card")) == count, message="guest: no cards")
    return owner, guest


def test_a_culling_pass_by_keys_rates_picks_rejects_undoes_and_tags(server, browser, tmp_path) -> None:
    driver = browser()
    open_workspace(driver, server.url)
    session = session_of(driver)
    ids = upload(driver, tmp_path, 5)
    first = open_culling(driver, 5)
    assert first["id"] == ids[0] and first["rating"] == 0 and first["pick"] is None

    press(driver, "4")  # rates and moves on
    shows(driver, index=1, id=ids[1], message="4 did not move on")
    press(driver, "p")
    shows(driver, index=2, id=ids[2], message="P did not move on")
    press(driver, "x")
    shows(driver, index=3, id=ids[3], message="X did not move on")
    press(driver, "z")  # undoes the reject and goes back to that image
    shows(driver, index=2, id=ids[2], pick=None, message="Z did not undo the reject")
    press(driver, "t")
    field = wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "[data-testid=cull-tag-input]"))[0]
    field.send_keys("keep", Keys.ENTER)
    shows(driver, index=3, id=ids[3], message="a tag did not move on")
    press(driver, Keys.ARROW_LEFT)
    shows(driver, index=2, tags=["keep"], pick=None, message="the tag does not show")
    press(driver, Keys.ARROW_LEFT)
    shows(driver, index=1, pick="picked", rating=0)
    press(driver, Keys.ARROW_LEFT)
    shows(driver, index=0, rating=4, pick=None)
    press(driver, " ", " ", " ", " ")  # space moves on too, and stops at the last image
    shows(driver, index=4, id=ids[4])
    press(driver, " ")
    wait_for(driver, lambda d: "last image" in state(d)["notice"], message="no word at the end")

    with httpx.Client(base_url=server.url, timeout=30) as api:
        listed = {r["id"]: r["annotations"] for r in api.get("/api/images", params={"session_id": session}).json()}
    assert [(listed[i]["rating"], listed[i]["pick"], listed[i]["tags"]) for i in ids] == [
        (4, None, []),
        (None, "picked", []),
        (None, None, ["keep"]),
        (None, None, []),
        (None, None, []),
    ]
    press(driver, Keys.ESCAPE)
    wait_for(driver, lambda d: state(d) is None, message="Esc did not close the view")
    stars = ".dr-card [data-testid=card-rating] .dr-star-on"
    wait_for(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, stars)) == 4, message="the gallery lacks the stars")


def test_another_tab_sees_every_verdict_live(server, browser, tmp_path) -> None:
    owner, guest = joined_pair(server, browser, tmp_path, 4)
    open_culling(owner, 4)
    open_culling(guest, 4)

    press(owner, "3")
    shows(guest, index=0, rating=3, message="the rating did not reach the other tab")
    press(guest, Keys.ARROW_RIGHT)
    press(owner, "p")
    shows(guest, index=1, pick="picked", message="the pick did not reach the other tab")
    press(guest, Keys.ARROW_RIGHT)
    press(owner, "x")
    shows(guest, index=2, pick="rejected", message="the reject did not reach the other tab")
    press(owner, "z")
    shows(guest, index=2, pick=None, message="the undo did not reach the other tab")
    shows(owner, index=2, pick=None)
    press(owner, "t")
    field = wait_for(owner, lambda d: d.find_elements(By.CSS_SELECTOR, "[data-testid=cull-tag-input]"))[0]
    field.send_keys("sharp", Keys.ENTER)
    shows(guest, index=2, tags=["sharp"], message="the tag did not reach the other tab")
    press(guest, Keys.ARROW_LEFT, Keys.ARROW_LEFT)
    shows(guest, index=0, rating=3, pick=None)


def test_each_member_sees_who_looks_at_which_image(server, browser, tmp_path) -> None:
    owner, guest = joined_pair(server, browser, tmp_path, 3)
    guest_name = guest.find_element(By.CSS_SELECTOR, "[data-testid=presence-member][data-you=true]").get_attribute(
        "data-member-name"
    )
    open_culling(owner, 3)
    click_button(guest, "Cull")  # the header's button opens it too
    shows(guest, index=0, count=3, message="Cull did not open the culling view")
    shows(owner, index=0, viewers=[guest_name], message="the owner does not see the guest on the first image")
    press(guest, Keys.ARROW_RIGHT, Keys.ARROW_RIGHT)
    shows(owner, index=0, viewers=[], message="the guest's name stayed on the first image")
    press(owner, Keys.END)
    shows(owner, index=2, viewers=[guest_name], message="the owner does not see the guest on the last image")
    press(guest, Keys.ESCAPE)  # a member that closed its view looks at nothing
    shows(owner, index=2, viewers=[], message="the guest's name stayed after it closed its view")


def burst_frames(blurs: list[float]) -> list[bytes]:
    """One frame of the same photo per blur radius (0: sharp), in upload order: a burst."""
    base = Image.open(BURST_PHOTO).convert("RGB")
    frames = []
    for radius in blurs:
        out = io.BytesIO()
        (base.filter(ImageFilter.GaussianBlur(radius)) if radius else base).save(out, "JPEG", quality=95)
        frames.append(out.getvalue())
    return frames


def test_b_keeps_the_sharpest_of_a_burst_and_rejects_the_rest_and_z_undoes_it(server, browser) -> None:
    driver = browser()
    open_workspace(driver, server.url)
    session = session_of(driver)
    frames = burst_frames([2.5, 0, 4.0])  # the sharp frame in the middle
    files = [("files", (f"burst-{n}.jpg", data, "image/jpeg")) for n, data in enumerate(frames)]
    with httpx.Client(base_url=server.url, timeout=60, params={"session_id": session}) as api:

        def picks() -> list[str | None]:
            return [record["annotations"]["pick"] for record in api.get("/api/images").json()]

        ids = [record["id"] for record in api.post("/api/images", files=files).json()["accepted"]]
        wait_for(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".dr-card")) == 3, message="no cards")
        open_culling(driver, 3)
        press(driver, "b")
        kept = "Kept burst-1.jpg (sharpest"
        wait_for(driver, lambda d: kept in state(d)["notice"], timeout=60, message="B said nothing")
        assert picks() == ["rejected", "picked", "rejected"]
        shows(driver, index=0, id=ids[0], pick="rejected", message="the view does not show the reject")
        rejected = ".dr-card[data-verdict=rejected]"
        wait_for(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, rejected)) == 2, message="not in the gallery")
        press(driver, "z")  # the whole burst's verdict at once
        shows(driver, pick=None, message="Z did not undo the burst")
        wait_for(driver, lambda d: picks() == [None, None, None], message="the undo was not stored")
