"""Collaboration on the page through NiceGUI's ``user`` fixture: presence, annotations shown on the
cards as scripts change them, the gallery's filters and the dashboard's colouring by tag."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from nicegui import Client
from nicegui.testing import User

from core import data_service, workspace
from core.annotations import parse_patch
from core.config import Settings
from core.presence import presence
from core.sessions import session_scope
from tests.helpers import cards_named, gallery_cards, make_jpeg
from ui.collab import Collab, tag_colour
from ui.session import binding_of


@pytest.fixture(autouse=True)
def ui_settings(configure: Callable[..., Settings]) -> Settings:
    return configure(feature_workers=1)


async def open_page(user: User) -> tuple[Client, str]:
    client = await user.open("/")
    await user.should_see("Script access")
    return client, binding_of(client).session_id


def add_images(session_id: str, *names: str) -> dict[str, str]:
    with session_scope(session_id):
        report = data_service.save_uploaded_images([(name, make_jpeg(seed=n)) for n, name in enumerate(names)])
    return {record.filename: record.id for record in report.accepted}


def annotate(session_id: str, image_id: str, body: dict, author: str = "Nightly job") -> None:
    with session_scope(session_id):
        workspace.patch_annotations(image_id, parse_patch(body), author, author)


def collab_of(user: User) -> Collab:
    select = next(iter(user.find(marker="filter-tags").elements))
    for collab in _collabs:
        if collab.tag_filter is select:
            return collab
    raise AssertionError("no collaboration panel on the page")


_collabs: list[Collab] = []
_original_build_filters = Collab.build_filters


def _tracking_build_filters(self: Collab) -> None:
    _collabs.append(self)
    _original_build_filters(self)


@pytest.fixture(autouse=True)
def track_collabs(monkeypatch: pytest.MonkeyPatch) -> None:
    _collabs.clear()
    monkeypatch.setattr(Collab, "build_filters", _tracking_build_filters)


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0.02)


async def test_the_page_is_in_presence_and_leaves_it_when_closed(user: User) -> None:
    client, session_id = await open_page(user)
    members = presence.members(session_id)
    assert len(members) == 1 and members[0].kind == "tab"
    await user.should_see(members[0].name + " (you)")
    collab_of(user).close()
    assert presence.members(session_id) == []


async def test_a_scripts_annotations_show_on_the_card_live(user: User) -> None:
    _, session_id = await open_page(user)
    ids = add_images(session_id, "a.jpg")
    await cards_named(user, "a.jpg")
    annotate(session_id, ids["a.jpg"], {"tags_add": ["keep"], "rating": 4, "note": "sharp"})
    await settle()
    card = gallery_cards(user)[ids["a.jpg"]]
    assert card["rating"] == 4 and card["note"] == "sharp" and card["by"] == "Nightly job"
    assert card["tags"] == [["keep", tag_colour("keep")]]


async def test_gallery_filters_by_tag_rating_and_show_counts(user: User) -> None:
    _, session_id = await open_page(user)
    ids = add_images(session_id, "keep.jpg", "drop.jpg", "plain.jpg")
    annotate(session_id, ids["keep.jpg"], {"tags_add": ["keep"], "rating": 5})
    annotate(session_id, ids["drop.jpg"], {"tags_add": ["blurry"], "rating": 1})
    await settle()
    collab = collab_of(user)
    cards = gallery_cards(user)
    assert sorted(collab.tag_filter.options) == ["blurry", "keep"]
    collab.tag_filter.value = ["keep"]
    assert [name for name, i in ids.items() if not cards[i]["hidden"]] == ["keep.jpg"]
    assert collab.filter_note.text == "showing 1 of 3"
    collab.tag_filter.value = []
    collab.rating_filter.value = "1"
    assert sorted(name for name, i in ids.items() if not cards[i]["hidden"]) == ["drop.jpg", "keep.jpg"]
    collab.rating_filter.value = "unrated"
    assert [name for name, i in ids.items() if not cards[i]["hidden"]] == ["plain.jpg"]
    # A live change re-filters: the plain image gets a rating and leaves the "unrated" view.
    annotate(session_id, ids["plain.jpg"], {"rating": 3})
    await settle()
    assert all(card["hidden"] for card in cards.values())


async def test_gallery_shows_verdicts_and_filters_by_them(user: User) -> None:
    _, session_id = await open_page(user)
    ids = add_images(session_id, "best.jpg", "blurry.jpg", "plain.jpg")
    annotate(session_id, ids["best.jpg"], {"pick": "picked"})
    annotate(session_id, ids["blurry.jpg"], {"pick": "rejected"})
    await settle()
    collab = collab_of(user)
    cards = gallery_cards(user)
    assert [cards[ids[name]]["verdict"] for name in ids] == ["picked", "rejected", None]
    shown = {"picked": ["best.jpg"], "rejected": ["blurry.jpg"], "undecided": ["plain.jpg"]}
    for verdict, names in shown.items():
        collab.pick_filter.value = verdict
        assert [name for name, i in ids.items() if not cards[i]["hidden"]] == names
    annotate(session_id, ids["plain.jpg"], {"pick": "picked"})  # a live verdict re-filters
    await settle()
    assert all(card["hidden"] for card in cards.values())


async def test_quality_filter_uses_the_images_flags(user: User) -> None:
    _, session_id = await open_page(user)
    ids = add_images(session_id, "a.jpg", "b.jpg")
    await settle()
    collab = collab_of(user)
    collab.flag_filter.value = "no quality flags"
    for _ in range(500):
        if all(i in collab.flags for i in ids.values()):
            break
        await asyncio.sleep(0.05)
    cards = gallery_cards(user)
    for image_id in ids.values():
        assert cards[image_id]["hidden"] == (collab.flags[image_id] != [])


async def test_dashboard_colours_points_by_tag(user: User) -> None:
    _, session_id = await open_page(user)
    ids = add_images(session_id, "a.jpg", "b.jpg")
    annotate(session_id, ids["a.jpg"], {"tags_add": ["keep"]})
    await settle()
    collab = collab_of(user)
    options = {"series": [{"data": [{"id": ids["a.jpg"]}, {"id": ids["b.jpg"]}]}, {"data": []}]}
    collab.recolour(options)  # colouring by quality flags (the default) leaves the series alone
    assert len(options["series"]) == 2 and "name" not in options["series"][0]
    collab.colour_by.value = "tag"
    collab.recolour(options)
    assert [(s["name"], [p["id"] for p in s["data"]]) for s in options["series"]] == [
        ("keep", [ids["a.jpg"]]),
        ("untagged", [ids["b.jpg"]]),
    ]


async def test_rename_shows_in_every_tab(user: User) -> None:
    _, session_id = await open_page(user)
    collab = collab_of(user)
    assert collab.member is not None
    presence.rename(session_id, collab.member.id, "Ada")
    await settle()
    await user.should_see("Ada (you)")


async def test_detail_editor_shows_and_sends_annotations(user: User) -> None:
    _, session_id = await open_page(user)
    ids = add_images(session_id, "a.jpg")
    await cards_named(user, "a.jpg")
    user.find(marker="gallery").trigger("open", ids["a.jpg"])
    collab = collab_of(user)
    for _ in range(100):
        if collab.editor is not None:
            break
        await asyncio.sleep(0.02)
    editor = collab.editor
    assert editor is not None and editor.image_id == ids["a.jpg"]
    annotate(session_id, ids["a.jpg"], {"tags_add": ["keep"], "note": "from the script"})
    await settle()
    assert [chip.props["data-tag"] for chip in editor.chips] == ["keep"]
    assert editor.note.value == "from the script" and "Nightly job" in editor.by.text
    # The tab's own edits go out under its presence name.
    editor.note.value = "sharp enough"
    await editor._save_note()
    editor.rating.value = 3
    await settle()
    with session_scope(session_id):
        stored = workspace.get_annotations(ids["a.jpg"])
    assert stored.note == "sharp enough" and stored.rating == 3 and stored.updated_by == collab.member.name


async def test_a_page_opened_on_an_annotated_workspace_can_filter_at_once(user: User) -> None:
    _, session_id = await open_page(user)
    ids = add_images(session_id, "a.jpg", "b.jpg")
    annotate(session_id, ids["a.jpg"], {"tags_add": ["keep"]})
    await settle()
    await user.open("/")  # a reload: the page lists the workspace with its annotations
    await user.should_see("Script access")
    collab = _collabs[-1]
    assert collab.tag_filter.options == ["keep"]
    assert gallery_cards(user)[ids["a.jpg"]]["tags"] == [["keep", tag_colour("keep")]]
