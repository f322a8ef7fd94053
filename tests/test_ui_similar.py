"""The detail's "More like this" strip through NiceGUI's ``user`` fixture: the nearest images as
the page's own thumbnails (by token, never the session id), and a click opens one."""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import Callable

import httpx
import pytest
from nicegui import ui
from nicegui.testing import User
from PIL import Image, ImageEnhance

from core.config import Settings
from tests.helpers import DATA, cards_named
from ui.dropzone import DropZone
from ui.session import binding_of

PHOTOS = DATA / "features" / "images"


@pytest.fixture(autouse=True)
def ui_settings(configure: Callable[..., Settings]) -> Settings:
    return configure(feature_workers=1)  # features in a thread: no process pool per test


async def drop(user: User, *files: tuple[str, bytes]) -> httpx.Response:
    url = next(iter(user.find(DropZone).elements)).props["url"]
    return await user.http_client.post(url, files=[("files", (name, data)) for name, data in files])


def brighter_cat() -> bytes:
    out = io.BytesIO()
    ImageEnhance.Brightness(Image.open(PHOTOS / "chelsea.png").convert("RGB")).enhance(1.25).save(out, "PNG")
    return out.getvalue()


async def strip_thumbnails(user: User, retries: int = 200) -> list[ui.element]:
    """The strip's thumbnails in the order shown (elements are made in that order)."""
    for _ in range(retries):
        with contextlib.suppress(AssertionError):  # find raises while there is none
            found = sorted(
                (e for e in user.find(marker="similar-image").elements if not e.is_deleted), key=lambda e: e.id
            )
            if found:
                return found
        await asyncio.sleep(0.05)
    raise AssertionError("the detail shows no similar images")


async def test_the_detail_shows_the_most_similar_images_and_a_click_opens_one(user: User) -> None:
    client = await user.open("/")
    await user.should_see("Script access")
    files = [(name, (PHOTOS / name).read_bytes()) for name in ("chelsea.png", "camera.png", "coffee.png")]
    assert (await drop(user, *files, ("brighter cat.png", brighter_cat()))).status_code == 200
    cards = await cards_named(user, "chelsea.png", "camera.png", "coffee.png", "brighter cat.png")
    user.find(marker="gallery").trigger("open", cards["brighter cat.png"]["id"])
    await user.should_see("More like this", retries=200)
    thumbnails = await strip_thumbnails(user)
    assert [t.props["alt"] for t in thumbnails][0] == "chelsea.png"  # the nearest first
    assert len(thumbnails) == 3  # every other image, itself left out
    token = binding_of(client).token
    nearest = thumbnails[0]
    assert nearest.props["src"] == f"/_darkroom/thumbnail/{token}/{cards['chelsea.png']['id']}"
    assert binding_of(client).session_id not in nearest.props["src"]
    assert (await user.http_client.get(nearest.props["src"])).status_code == 200

    user.find(marker=f"similar-{cards['chelsea.png']['id']}").click()
    for _ in range(100):
        shown = [e.props.get("data-image-id") for e in user.find(kind=ui.card).elements if not e.is_deleted]
        if cards["chelsea.png"]["id"] in shown:
            break
        await asyncio.sleep(0.05)
    assert cards["chelsea.png"]["id"] in shown
    again = await strip_thumbnails(user)
    assert [t.props["alt"] for t in again][0] == "brighter cat.png"
