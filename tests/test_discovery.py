"""Finding images: "more like this" (GET /api/images/{id}/similar) and bursts with their best frame
(GET /api/groups), through the real server; the vector, the memo and the grouping rules directly."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageFilter
from PIL.ExifTags import IFD, Base

from core.events import IMAGE_REMOVED, SESSION_CLEARED, Event, bus
from core.features import REGISTRY
from core.features.bursts import Shot, choose_best, find_groups
from core.features.discovery import SimilarityMemos
from core.features.similar import VECTOR_LENGTH, WEIGHTS, SimilarityIndex, similarity_vector
from core.sessions import new_session_id
from tests.helpers import DATA, new_session, upload

PHOTOS = DATA / "features" / "images"


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def jpeg(image: Image.Image, taken: str | None = None) -> bytes:
    exif = Image.Exif()
    if taken is not None:
        exif.get_ifd(IFD.Exif)[Base.DateTimeOriginal] = taken
    out = io.BytesIO()
    image.save(out, "JPEG", quality=95, exif=exif.tobytes())
    return out.getvalue()


def photo(name: str) -> Image.Image:
    return Image.open(PHOTOS / name).convert("RGB")


def similar(api, session, image_id, **params):
    return api.get(f"/api/images/{image_id}/similar", params={"session_id": session, **params})


def uploaded(api, session, *files) -> dict[str, str]:
    body = upload(api, session, *files).json()
    assert not body["rejected"], body
    return {record["filename"]: record["id"] for record in body["accepted"]}


@pytest.fixture
def gallery(api):
    """A session of the five reference photos and a brightness-shifted copy of the cat."""
    session = new_session(api)
    files = [(path.name, path.read_bytes()) for path in sorted(PHOTOS.glob("*.png"))]
    brighter = ImageEnhance.Brightness(photo("chelsea.png")).enhance(1.25)
    ids = uploaded(api, session, *files, ("brighter cat.png", png(brighter)))
    return session, ids


# -- more like this --
def test_the_nearest_of_a_brightness_shifted_copy_is_the_image_itself(api, gallery):
    session, ids = gallery
    response = similar(api, session, ids["brighter cat.png"], k=3)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["image"]["id"] == ids["brighter cat.png"] and body["k"] == 3
    results = body["results"]
    assert [r["filename"] for r in results][0] == "chelsea.png"
    assert len(results) == 3
    distances = [r["distance"] for r in results]
    assert distances == sorted(distances) and 0 <= distances[0] < distances[1] <= 2**0.5
    # and the other way round: the cat's nearest is its brighter copy
    assert similar(api, session, ids["chelsea.png"], k=1).json()["results"][0]["filename"] == "brighter cat.png"


def test_k_is_bounded_and_never_more_than_the_other_images(api, gallery):
    session, ids = gallery
    for bad in (0, 101, -1, "many"):
        response = similar(api, session, ids["camera.png"], k=bad)
        assert response.status_code == 400, bad
        assert response.json()["detail"]
    assert len(similar(api, session, ids["camera.png"], k=100).json()["results"]) == len(ids) - 1
    assert len(similar(api, session, ids["camera.png"]).json()["results"]) == len(ids) - 1  # default 12


def test_another_sessions_image_is_not_found(api, gallery):
    session, ids = gallery
    other = new_session(api)
    response = similar(api, other, ids["camera.png"])
    assert response.status_code == 404
    assert ids["camera.png"] not in response.text
    assert similar(api, session, "0" * 32).status_code == 404
    assert similar(api, session, "not-an-id").status_code == 404


def test_a_deleted_image_is_never_an_answer_again(api, gallery):
    session, ids = gallery
    first = [r["filename"] for r in similar(api, session, ids["brighter cat.png"], k=100).json()["results"]]
    assert "chelsea.png" in first
    assert api.delete(f"/api/images/{ids['chelsea.png']}", params={"session_id": session}).status_code == 204
    after = [r["filename"] for r in similar(api, session, ids["brighter cat.png"], k=100).json()["results"]]
    assert after == [name for name in first if name != "chelsea.png"]
    assert similar(api, session, ids["chelsea.png"]).status_code == 404
    added = uploaded(api, session, ("cat again.png", (PHOTOS / "chelsea.png").read_bytes()))
    again = similar(api, session, ids["brighter cat.png"], k=1).json()["results"]
    assert [r["id"] for r in again] == [added["cat again.png"]]  # a new image is in the memo at once


def test_the_vector_and_its_weighting_are_in_the_catalogue(api):
    groups = {group["name"]: group for group in api.get("/api/features/catalog").json()["groups"]}
    described = groups["similarity"]
    assert described["by_default"] is False  # not in every table: only when named or searched
    assert described["parameters"]["weights"] == WEIGHTS
    assert "219" in described["description"] and "Euclidean" in described["description"]


def test_the_vector_is_normalised_and_weighted_per_block():
    rng = np.random.default_rng(0)
    vector = similarity_vector(rng.integers(0, 50, 128), rng.random(8100), rng.random(10))
    assert vector.shape == (VECTOR_LENGTH,)
    colour, shape, texture = vector[:128], vector[128:209], vector[209:]
    assert np.linalg.norm(colour) ** 2 == pytest.approx(WEIGHTS["colour"])
    assert np.linalg.norm(shape) ** 2 == pytest.approx(WEIGHTS["shape"])
    assert np.linalg.norm(texture) ** 2 == pytest.approx(WEIGHTS["texture"])
    assert np.linalg.norm(vector) == pytest.approx(1.0)
    assert REGISTRY["similarity"].by_default is False


def test_the_index_is_exact_and_follows_the_images():
    rng = np.random.default_rng(1)
    vectors = {f"{i:032x}": rng.random(VECTOR_LENGTH) for i in range(50)}
    index = SimilarityIndex()
    index.sync(list(vectors), vectors)
    query = "0" * 32
    expected = sorted((float(np.linalg.norm(v - vectors[query])), i) for i, v in vectors.items() if i != query)
    found = index.nearest(query, 5)
    assert [n.image_id for n in found] == [i for _, i in expected[:5]]
    assert [n.distance for n in found] == pytest.approx([d for d, _ in expected[:5]], rel=1e-5)
    index.forget([found[0].image_id])
    assert found[0].image_id not in [n.image_id for n in index.nearest(query, 49)]
    assert len(index.nearest(query, 100)) == 48
    index.sync([query, found[1].image_id], {})  # the others went
    assert [n.image_id for n in index.nearest(query, 10)] == [found[1].image_id]
    assert index.nearest("f" * 32, 3) is None


def test_a_sessions_memo_goes_with_its_delete_and_clear_events_and_the_memory_bound():
    memos = SimilarityMemos(max_bytes=VECTOR_LENGTH * 4 * 10)
    session, other = new_session_id(), new_session_id()
    index = memos.index_for(session, session)
    assert memos.index_for(session, session) is index
    assert memos.index_for(other, other) is not index  # never shared across sessions
    vectors = {f"{i:032x}": [float(i)] * VECTOR_LENGTH for i in range(3)}
    index.sync(list(vectors), vectors)
    bus.publish(Event(IMAGE_REMOVED, session, {"image_id": f"{1:032x}"}))
    assert index.known() == {f"{0:032x}", f"{2:032x}"}
    bus.publish(Event(SESSION_CLEARED, session, {"reason": "cleared"}))
    assert session not in memos and bus.subscriber_count(session) == 0
    big = memos.index_for(session, session)
    many = {f"{i:032x}": [0.0] * VECTOR_LENGTH for i in range(20)}
    big.sync(list(many), many)
    memos.trim()
    assert other not in memos and session in memos  # the least recently used went first
    memos.drop(session)
    assert bus.subscriber_count(session) == 0 and bus.subscriber_count(other) == 0


# -- bursts and near duplicates --
def burst(base: Image.Image, start_second: int, blurs: list[float]) -> list[bytes]:
    """One frame per blur radius (0: sharp), half a second apart from ``start_second``."""
    frames = []
    for index, radius in enumerate(blurs):
        frame = base.filter(ImageFilter.GaussianBlur(radius)) if radius else base
        whole, half = divmod(index, 2)
        stamp = f"2024:05:01 10:00:{start_second + whole:02d}"
        exif = Image.Exif()
        sub = exif.get_ifd(IFD.Exif)
        sub[Base.DateTimeOriginal] = stamp
        sub[Base.SubsecTimeOriginal] = "5" if half else "0"
        out = io.BytesIO()
        frame.save(out, "JPEG", quality=95, exif=exif.tobytes())
        frames.append(out.getvalue())
    return frames


def test_in_a_burst_of_sharp_and_blurred_copies_the_sharpest_is_suggested(api):
    session = new_session(api)
    cat, coffee, rocket = photo("chelsea.png"), photo("coffee.png"), photo("astronaut.png")
    cats = burst(cat, 0, [2.0, 0, 4.0])  # the sharp frame in the middle
    coffees = burst(coffee, 30, [1.5, 3.0, 0])
    files = [(f"cat{i}.jpg", data) for i, data in enumerate(cats)]
    files += [(f"coffee{i}.jpg", data) for i, data in enumerate(coffees)]
    files.append(("rocket.jpg", jpeg(rocket, "2024:05:01 10:00:01")))  # taken amid the cats, unlike them
    ids = uploaded(api, session, *files)
    response = api.get("/api/groups", params={"session_id": session})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["gap"] == 2.0 and body["distance"] == 12 and body["near"] == 4
    groups = body["groups"]
    by_first = {group["members"][0]["filename"]: group for group in groups}
    assert sorted(by_first) == ["cat0.jpg", "coffee0.jpg"]  # the lone rocket is no group
    cats_group, coffees_group = by_first["cat0.jpg"], by_first["coffee0.jpg"]
    assert cats_group["member_ids"] == [ids["cat0.jpg"], ids["cat1.jpg"], ids["cat2.jpg"]]  # capture order
    assert cats_group["kind"] == "burst"
    assert cats_group["best"] == ids["cat1.jpg"] and coffees_group["best"] == ids["coffee2.jpg"]
    sharpness = {m["filename"]: m["laplacian_var"] for m in cats_group["members"]}
    runner_up = sorted(sharpness.values())[-2]
    assert cats_group["reason"] == f"sharpest: Laplacian variance {sharpness['cat1.jpg']:,.0f} against {runner_up:,.0f}"
    assert all(m["capture_time"].startswith("2024-05-01T10:00:") for m in cats_group["members"])


def test_frames_further_apart_than_the_gap_are_no_burst(api):
    session = new_session(api)
    cat = photo("chelsea.png")
    width, height = cat.size
    files = [  # the camera moved a little: a few pHash bits apart, no near duplicates at 0 bits
        ("early.jpg", jpeg(cat.crop((0, 0, width - 8, height)), "2024:05:01 10:00:00")),
        ("late.jpg", jpeg(cat.crop((8, 0, width, height)), "2024:05:01 10:00:09")),
    ]
    uploaded(api, session, *files)
    params = {"session_id": session, "near": 0}
    assert api.get("/api/groups", params=params).json()["groups"] == []
    wide = api.get("/api/groups", params={**params, "gap": 10}).json()["groups"]
    assert [(g["kind"], [m["filename"] for m in g["members"]]) for g in wide] == [("burst", ["early.jpg", "late.jpg"])]
    # near duplicates are grouped by pHash alone, whenever they were taken
    near = api.get("/api/groups", params={**params, "near": 12}).json()["groups"]
    assert [g["kind"] for g in near] == ["near_duplicates"]


def test_without_capture_times_upload_order_makes_the_burst(api):
    session = new_session(api)
    coffee = photo("coffee.png")
    ids = uploaded(api, session, ("a.png", png(coffee.filter(ImageFilter.GaussianBlur(3)))))
    ids |= uploaded(api, session, ("b.png", png(coffee)))
    groups = api.get("/api/groups", params={"session_id": session, "near": 0}).json()["groups"]
    assert [(g["kind"], g["member_ids"], g["best"]) for g in groups] == [
        ("burst", [ids["a.png"], ids["b.png"]], ids["b.png"])
    ]


@pytest.mark.parametrize(
    "params",
    [{"gap": -1}, {"gap": 3601}, {"gap": "soon"}, {"distance": 33}, {"distance": -1}, {"near": 65}],
)
def test_group_parameters_are_bounded(api, params):
    session = new_session(api)
    response = api.get("/api/groups", params={"session_id": session, **params})
    assert response.status_code == 400 and response.json()["detail"]


def shot(
    index: int,
    sharpness: float = 100.0,
    clipped: float = 0.0,
    size: int = 100,
    when: float | None = None,
    phash: int = 0,
) -> Shot:
    return Shot(index, f"{index:032x}", f"{index}.jpg", phash, when, sharpness, clipped, size, size)


def test_the_best_is_the_largest_then_the_least_clipped_then_the_sharpest():
    best, reason = choose_best([shot(0, 900.0, size=50), shot(1, 300.0, size=100)])
    assert best.upload_index == 1 and reason == "largest: 100×100 px against 50×50 px"
    best, reason = choose_best([shot(0, 900.0, clipped=0.2), shot(1, 300.0, clipped=0.01)])
    assert best.upload_index == 1
    assert reason == "least clipped: 1.0% of pixels pure black or white against 20.0%"
    best, reason = choose_best([shot(0, 420.0, clipped=0.015), shot(1, 1810.0, clipped=0.0), shot(2, 10.0)])
    assert best.upload_index == 1 and reason == "sharpest: Laplacian variance 1,810 against 420"
    best, reason = choose_best([shot(0), shot(1)])
    assert best.upload_index == 0 and reason.startswith("as sharp as the others")


def test_timed_and_untimed_images_are_two_sequences():
    shots = [shot(0, when=0.0, phash=0b0), shot(1, phash=0b1), shot(2, when=1.0, phash=0b11), shot(3, phash=0b101)]
    found = find_groups(shots, gap=2.0, distance=2, near=0)  # distinct hashes: no near duplicates
    assert [[s.upload_index for s in g.members] for g in found] == [[0, 2], [1, 3]]
    assert [g.kind for g in found] == ["burst", "burst"]
    assert [g.max_distance for g in found] == [2, 1]
    spaced = find_groups([shot(0, when=0.0), shot(1, when=5.0)], gap=2.0, distance=64, near=0)
    assert [[s.upload_index for s in g.members] for g in spaced] == [[0, 1]]  # equal pHashes
    assert spaced[0].kind == "near_duplicates"
