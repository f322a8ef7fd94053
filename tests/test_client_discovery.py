"""core.client's ``similar`` and ``groups``, both twins, against a real server: plain answers in
the API's shape, and errors as typed exceptions in the server's words."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
from PIL import Image, ImageEnhance, ImageFilter

from core.client import AsyncWorkspace, BadRequest, NotFound, Workspace
from tests.helpers import DATA

PHOTOS = DATA / "features" / "images"


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def cat() -> Image.Image:
    return Image.open(PHOTOS / "chelsea.png").convert("RGB")


def shoot() -> list[tuple[str, bytes]]:
    """Three unlike photos, a brighter copy of the cat, then a sharp and a blurred coffee taken
    one after the other (no capture times: upload order makes the burst)."""
    coffee = Image.open(PHOTOS / "coffee.png").convert("RGB")
    return [
        ("cat.png", (PHOTOS / "chelsea.png").read_bytes()),
        ("camera.png", (PHOTOS / "camera.png").read_bytes()),
        ("text.png", (PHOTOS / "text.png").read_bytes()),
        ("brighter cat.png", png(ImageEnhance.Brightness(cat()).enhance(1.2))),
        ("coffee blurred.png", png(coffee.filter(ImageFilter.GaussianBlur(3)))),
        ("coffee.png", png(coffee)),
    ]


def by_name(records: list[dict]) -> dict[str, str]:
    return {record["filename"]: record["id"] for record in records}


@pytest.fixture
def workspace(api, live_server) -> Iterator[Workspace]:
    with Workspace(live_server.url) as made:
        for name, data in shoot():  # one at a time: upload order is the shoot's
            made.upload((name, data))
        yield made


def test_similar_returns_the_nearest_records_with_their_distances(workspace):
    ids = by_name(workspace.images())
    found = workspace.similar(ids["brighter cat.png"], k=2)
    assert [record["filename"] for record in found][0] == "cat.png"
    assert len(found) == 2
    assert {"id", "filename", "width", "height", "distance"} <= set(found[0])
    assert found[0]["distance"] <= found[1]["distance"]
    assert len(workspace.similar(ids["cat.png"])) == len(ids) - 1  # k=12 by default, here fewer exist


def test_similar_refusals_are_typed_in_the_servers_words(workspace, live_server):
    ids = by_name(workspace.images())
    with pytest.raises(BadRequest) as refused:
        workspace.similar(ids["cat.png"], k=0)
    assert "k" in str(refused.value)
    with Workspace(live_server.url) as other, pytest.raises(NotFound) as missing:
        other.similar(ids["cat.png"])
    assert str(missing.value) == "no such image in this workspace"


def test_groups_name_the_burst_its_best_frame_and_why(workspace):
    ids = by_name(workspace.images())
    groups = workspace.groups(near=0)
    copies, burst = groups  # in capture order of their first frames
    assert copies["kind"] == "near_duplicates"  # a brighter copy has the cat's pHash, uploaded later
    assert copies["member_ids"] == [ids["cat.png"], ids["brighter cat.png"]]
    assert burst["kind"] == "burst"
    assert burst["member_ids"] == [ids["coffee blurred.png"], ids["coffee.png"]]
    assert burst["best"] == ids["coffee.png"] and burst["reason"].startswith("sharpest: Laplacian variance")
    with pytest.raises(BadRequest):
        workspace.groups(gap=-1)


async def test_the_async_twin_finds_the_same(workspace, live_server):
    ids = by_name(workspace.images())
    async with AsyncWorkspace(live_server.url, workspace.session_id) as same:
        assert await same.similar(ids["brighter cat.png"], k=3) == workspace.similar(ids["brighter cat.png"], k=3)
        assert await same.groups(gap=5, distance=12, near=0) == workspace.groups(near=0)
        with pytest.raises(NotFound):
            await same.similar("0" * 32)
