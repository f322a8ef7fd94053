"""The culling view's Python side through NiceGUI's ``user`` fixture: every event argument from the
browser is checked (an unknown id, a bad index, a bad value do nothing), verdicts and undos go
through the annotation patch path as the tab's member, "unrated only" culls the images without a
verdict, and a refused edit (the rate limit) is not remembered as a verdict. The keys themselves,
in Chromium: ``test_browser_culling.py``."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable

import pytest
from nicegui.testing import User
from PIL import Image

from core import data_service, workspace
from core.annotations import EDIT_BURST, limiter, parse_patch
from core.config import Settings
from core.errors import BadRequest
from core.presence import presence
from core.sessions import session_scope
from tests.helpers import Clock, cards_named, make_jpeg
from ui.culling import Culling
from ui.routes import fit_preview_size
from ui.session import binding_of


@pytest.fixture(autouse=True)
def ui_settings(configure: Callable[..., Settings]) -> Settings:
    return configure(feature_workers=1)


_cullings: list[Culling] = []
_original_build = Culling.build


def _tracking_build(self: Culling) -> None:
    _cullings.append(self)
    _original_build(self)


@pytest.fixture(autouse=True)
def track_cullings(monkeypatch: pytest.MonkeyPatch) -> None:
    _cullings.clear()
    monkeypatch.setattr(Culling, "build", _tracking_build)


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0.02)


async def until(condition: Callable[[], bool]) -> None:
    """Wait for ``condition``: choosing the images again waits out the view's RESET_SECONDS."""
    for _ in range(100):
        if condition():
            return
        await asyncio.sleep(0.05)
    assert condition()


async def open_culling(user: User, *names: str) -> tuple[Culling, str, dict[str, str]]:
    """A page with images ``names``, its culling view open; the view, the session and the ids."""
    client = await user.open("/")
    await user.should_see("Script access")
    session_id = binding_of(client).session_id
    with session_scope(session_id):
        report = data_service.save_uploaded_images([(name, make_jpeg(seed=n)) for n, name in enumerate(names)])
    ids = {record.filename: record.id for record in report.accepted}
    await cards_named(user, *names)
    (culling,) = _cullings
    culling.open()
    await settle()
    assert culling.is_open
    return culling, session_id, ids


def stored(session_id: str, image_id: str) -> dict:
    with session_scope(session_id):
        return workspace.get_annotations(image_id).to_public()


async def test_events_with_unknown_ids_bad_indexes_or_bad_values_change_nothing(user: User) -> None:
    culling, session_id, ids = await open_culling(user, "a.jpg", "b.jpg")
    view = user.find(marker="culling")
    a, b = ids["a.jpg"], ids["b.jpg"]
    for args in (
        ["rate", "f" * 32, 3],  # not an image of this workspace
        ["rate", "../../etc/passwd", 3],
        ["rate", a, 9],
        ["rate", a, -1],
        ["rate", a, True],
        ["rate", a, "3"],
        ["pick", a, "maybe"],
        ["pick", a, None],
        ["delete", a, 1],
        ["tag", a, ["keep"]],
        ["rate", a],
        {"kind": "rate"},
        "rate",
    ):
        view.trigger("verdict", args)
    await settle()
    assert stored(session_id, a)["version"] == 0 and not culling.undo
    assert culling.current == a
    for args in ([5, a], [-1, a], [1, a], ["0", a], [0.0, a], [True, b], [0, "f" * 32], [0], None):
        view.trigger("at", args)
    await settle()
    assert culling.current == a  # none of them named the image at its index
    view.trigger("at", [1, b])
    await settle()
    assert culling.current == b
    for args in ([10**9, 5], [0, 0], ["1920", 1080], [1920], [1.5, 2]):
        view.trigger("screen", args)
    assert culling.view.props["size"] == 1280
    view.trigger("screen", [1920, 1080])
    assert culling.view.props["size"] == fit_preview_size(1920) == 2048
    view.trigger("command", ["q", a])  # no key bound: nothing happens
    view.trigger("unrated", "yes")
    await settle()
    assert culling.unrated is False


async def test_verdicts_go_out_as_the_tabs_member_and_undo_puts_back_what_each_changed(user: User) -> None:
    culling, session_id, ids = await open_culling(user, "a.jpg", "b.jpg", "c.jpg")
    view = user.find(marker="culling")
    a, b, c = ids["a.jpg"], ids["b.jpg"], ids["c.jpg"]
    name = culling.collab.member.name
    with session_scope(session_id):
        workspace.patch_annotations(c, parse_patch({"tags_add": ["old"], "rating": 2}), "Nightly job", "job")
    await settle()
    view.trigger("verdict", ["rate", a, 4])
    view.trigger("verdict", ["pick", b, "rejected"])
    view.trigger("verdict", ["tag", c, " keep "])
    view.trigger("verdict", ["tag", c, "old"])  # already there: changes nothing, undoes nothing
    await settle()
    assert stored(session_id, a)["rating"] == 4 and stored(session_id, a)["updated_by"] == name
    assert stored(session_id, b)["pick"] == "rejected"
    assert stored(session_id, c)["tags"] == ["old", "keep"]
    assert culling.collab.annotations_of(a)["rating"] == 4  # the gallery's view of it, at once

    view.trigger("undo")  # the "old" verdict changed nothing: this undoes " keep "
    await settle()
    assert stored(session_id, c)["tags"] == ["old"] and stored(session_id, c)["rating"] == 2
    assert culling.current == c  # the view went back to the undone image
    view.trigger("undo")
    await settle()
    assert stored(session_id, b)["pick"] is None
    view.trigger("pick", None)  # not an event of the view
    view.trigger("verdict", ["pick", b, "picked"])
    view.trigger("verdict", ["pick", b, "picked"])  # again: clears the pick
    await settle()
    assert stored(session_id, b)["pick"] is None
    view.trigger("undo")
    await settle()
    assert stored(session_id, b)["pick"] == "picked"
    for _ in range(2):
        view.trigger("undo")
        await settle()
    assert stored(session_id, a)["rating"] is None and stored(session_id, b)["pick"] is None
    assert not culling.undo


async def test_a_verdict_that_changes_nothing_is_neither_saved_nor_undone(user: User) -> None:
    culling, session_id, ids = await open_culling(user, "a.jpg")
    view = user.find(marker="culling")
    a = ids["a.jpg"]
    view.trigger("verdict", ["rate", a, 3])
    await settle()
    version = stored(session_id, a)["version"]
    view.trigger("verdict", ["rate", a, 3])  # the stars it has
    await settle()
    assert stored(session_id, a)["version"] == version and len(culling.undo) == 1


async def test_undo_never_takes_back_what_another_tab_set_since(user: User) -> None:
    culling, session_id, ids = await open_culling(user, "a.jpg", "b.jpg")
    view = user.find(marker="culling")
    a, b = ids["a.jpg"], ids["b.jpg"]
    view.trigger("verdict", ["rate", a, 4])
    view.trigger("verdict", ["pick", b, "picked"])
    await settle()
    with session_scope(session_id):
        workspace.patch_annotations(b, parse_patch({"pick": "rejected"}), "Nightly job", "job")
        workspace.patch_annotations(a, parse_patch({"tags_add": ["x"]}), "Nightly job", "job")
    await settle()
    view.trigger("undo")  # b's pick is the job's now: not undone, and forgotten
    await settle()
    assert stored(session_id, b)["pick"] == "rejected" and len(culling.undo) == 1
    view.trigger("undo")  # a still holds the 4 stars this tab gave it: a tag beside them is no reason to refuse
    await settle()
    assert stored(session_id, a)["rating"] is None and stored(session_id, a)["tags"] == ["x"]
    assert not culling.undo


async def test_unrated_only_culls_the_images_without_stars_or_a_pick(user: User) -> None:
    culling, session_id, ids = await open_culling(user, "a.jpg", "b.jpg", "c.jpg")
    with session_scope(session_id):
        workspace.patch_annotations(ids["a.jpg"], parse_patch({"rating": 3}), "Nightly job", "job")
        workspace.patch_annotations(ids["b.jpg"], parse_patch({"pick": "picked"}), "Nightly job", "job")
    await settle()
    user.find(marker="culling").trigger("unrated", True)
    await until(lambda: culling.order == [ids["c.jpg"]])
    assert culling.current == ids["c.jpg"]
    user.find(marker="culling").trigger("unrated", False)
    await until(lambda: culling.order == [ids["a.jpg"], ids["b.jpg"], ids["c.jpg"]])


async def test_toggling_unrated_only_fast_chooses_once_per_interval(user: User, monkeypatch) -> None:
    culling, _, ids = await open_culling(user, "a.jpg", "b.jpg")
    passes = []
    original = culling._choose_images
    monkeypatch.setattr(culling, "_choose_images", lambda: (passes.append(1), original())[1])
    view = user.find(marker="culling")
    for n in range(200):
        view.trigger("unrated", n % 2 == 0)
    await settle()
    assert len(passes) <= 1  # one pass at the end of the open's interval, however many toggles
    await until(lambda: len(passes) == 1 and culling.order == [ids["a.jpg"], ids["b.jpg"]])


async def test_a_verdict_refused_by_the_rate_limit_is_not_remembered(user: User, monkeypatch) -> None:
    monkeypatch.setattr(limiter, "clock", Clock())  # no time passes: the bucket never refills
    culling, session_id, ids = await open_culling(user, "a.jpg")
    view = user.find(marker="culling")
    for n in range(EDIT_BURST + 5):
        view.trigger("verdict", ["rate", ids["a.jpg"], 1 + n % 5])
    await settle()
    assert len(culling.undo) == EDIT_BURST
    assert stored(session_id, ids["a.jpg"])["version"] == EDIT_BURST


async def test_the_viewed_image_is_in_presence_while_the_view_is_open(user: User) -> None:
    culling, session_id, ids = await open_culling(user, "a.jpg", "b.jpg")
    member = culling.collab.member

    async def viewing() -> str | None:
        for _ in range(50):
            await asyncio.sleep(0.02)
            found = presence.member(session_id, member.id).viewing
            if found == culling.current or (not culling.is_open and found is None):
                break
        return presence.member(session_id, member.id).viewing

    assert await viewing() == ids["a.jpg"]
    user.find(marker="culling").trigger("at", [1, ids["b.jpg"]])
    assert await viewing() == ids["b.jpg"]
    user.find(marker="culling").trigger("close")
    assert await viewing() is None


async def test_c_on_the_page_opens_the_view_unless_the_detail_has_the_keys(user: User) -> None:
    culling, _, ids = await open_culling(user, "a.jpg")
    user.find(marker="culling").trigger("close")
    assert not culling.is_open
    user.find(marker="gallery").trigger("open", ids["a.jpg"])  # the image detail
    await settle()
    user.find(marker="culling").trigger("open")
    assert not culling.is_open
    (detail,) = user.find(marker="detail").elements
    detail.close()
    await settle()
    user.find(marker="culling").trigger("open")
    assert culling.is_open
    await until(lambda: culling.current == ids["a.jpg"])


def test_a_requested_preview_size_is_rounded_up_to_one_of_a_few() -> None:
    assert [fit_preview_size(n) for n in (1, 640, 641, 1280, 1920, "2048", 99_999)] == [
        640, 640, 960, 1280, 2048, 2048, 2048,
    ]  # fmt: skip
    for bad in (0, -5, "12px", "", "1e3", 1.5, True, None, "9" * 7):
        with pytest.raises(BadRequest):
            fit_preview_size(bad)


async def test_the_preview_route_serves_the_fitted_size_and_refuses_a_bad_one(user: User) -> None:
    client = await user.open("/")
    await user.should_see("Script access")
    with session_scope(binding_of(client).session_id):
        report = data_service.save_uploaded_images([("big.jpg", make_jpeg(1500, 1000, seed=3))])
    url = f"/_darkroom/preview/{binding_of(client).token}/{report.accepted[0].id}"
    fitted = await user.http_client.get(url, params={"size": "700"})
    assert fitted.status_code == 200
    with Image.open(io.BytesIO(fitted.content)) as image:
        assert max(image.size) == 960
    refused = await user.http_client.get(url, params={"size": "huge"})
    assert refused.status_code == 400 and "whole number" in refused.json()["detail"]


async def test_b_is_listed_and_on_an_image_in_no_burst_says_so_and_changes_nothing(user: User, monkeypatch) -> None:
    culling, session_id, ids = await open_culling(user, "a.jpg", "b.jpg")
    assert "b" in culling.view.props["keys"] and "burst" in culling.view.props["keys"]["b"]
    said: list[str] = []
    monkeypatch.setattr(culling, "_notice", lambda text, warning=False: said.append(text))
    user.find(marker="culling").trigger("command", ["b", ids["a.jpg"]])
    for _ in range(200):  # the features of both images are computed first
        await asyncio.sleep(0.05)
        if len(said) >= 2:
            break
    assert said[0].startswith("Looking") and "no burst" in said[-1], said
    assert stored(session_id, ids["a.jpg"])["version"] == 0 and not culling.undo


async def test_images_deleted_while_culling_leave_the_order_and_the_next_one_takes_the_shown_ones_place(
    user: User,
) -> None:
    culling, session_id, ids = await open_culling(user, "a.jpg", "b.jpg", "c.jpg", "d.jpg")
    culling.ready = True  # the browser's view is mounted: lists are sent (throttled)
    sent: list[list[str]] = []
    culling.view.run_method = lambda name, *args: sent.append([r["id"] for r in args[0]]) if name == "reset" else None
    culling.current = ids["b.jpg"]
    with session_scope(session_id):
        for name in ("b.jpg", "c.jpg"):  # the shown image and the one after it
            workspace.delete_image(ids[name])
    for _ in range(60):
        await asyncio.sleep(0.05)
        if sent and not culling._resets.pending:
            break
    assert culling.order == [ids["a.jpg"], ids["d.jpg"]] and culling.positions == {ids["a.jpg"]: 0, ids["d.jpg"]: 1}
    assert culling.current == ids["d.jpg"]  # the next image still there
    assert sent[-1] == [ids["a.jpg"], ids["d.jpg"]]
