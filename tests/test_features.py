"""The feature engine: reference values through the API, caching, isolation, table, duplicates."""

from __future__ import annotations

import csv
import io
import json

import pytest
from PIL import Image

from core import workspace
from core.events import PROGRESS, bus
from core.features import CATALOGUE_ORDER, REGISTRY, default_groups
from tests.feature_tolerances import mismatches
from tests.helpers import DATA, hostile, listed, make_jpeg, new_session, upload

FEATURES = DATA / "features"
EXPECTED = json.loads((FEATURES / "expected.json").read_text())["images"]
EXPECTED_EDGE = json.loads((FEATURES / "expected_edge.json").read_text())["images"]


def features_of(api, session, image_id, **params):
    response = api.get(f"/api/images/{image_id}/features", params={"session_id": session, **params})
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize(
    "folder, name",
    [("images", n) for n in sorted(EXPECTED)] + [("edge_cases", n) for n in sorted(EXPECTED_EDGE)],
)
def test_every_feature_matches_the_reference_libraries(api, folder, name):
    """FEATURES.md's schema and tolerances, strictly, through the API (HOG vector included)."""
    session = new_session(api)
    data = (FEATURES / folder / name).read_bytes()
    record = upload(api, session, (name, data)).json()["accepted"][0]
    actual = features_of(api, session, record["id"], include_vectors="true")
    expected = (EXPECTED if folder == "images" else EXPECTED_EDGE)[name]
    assert actual["name"] == name
    assert mismatches(expected, actual) == []
    assert list(actual)[2:] == default_groups()  # every group but exif_gps, which is only on request


def test_pairwise_hash_distances_match_the_reference(api):
    from core.features.hashes import hamming

    session = new_session(api)
    hashes = {}
    for name in sorted(EXPECTED):
        record = upload(api, session, (name, (FEATURES / "images" / name).read_bytes())).json()["accepted"][0]
        hashes[name] = features_of(api, session, record["id"], groups="hashes")["hashes"]
    expected = json.loads((FEATURES / "expected.json").read_text())["pairwise_hamming"]
    for kind in ("ahash", "dhash"):
        for pair, distance in expected[kind].items():
            a, b = pair.split("|")
            assert hamming(hashes[a][kind], hashes[b][kind]) == distance


def test_no_nan_or_infinity_anywhere(api):
    session = new_session(api)
    for name in ["black_3x3.png", "chelsea_1bit.png"]:
        record = upload(api, session, (name, (FEATURES / "edge_cases" / name).read_bytes())).json()["accepted"][0]
        text = api.get(f"/api/images/{record['id']}/features", params={"session_id": session}).text
        assert "NaN" not in text and "Infinity" not in text


def test_groups_filter_and_hog_vector_only_on_request(api):
    session = new_session(api)
    record = upload(api, session, ("a.jpg", make_jpeg())).json()["accepted"][0]
    some = features_of(api, session, record["id"], groups="hog,basic")
    assert list(some) == ["id", "name", "basic", "hog"]
    assert "hog" not in some["hog"] and some["hog"]["hog_len"] == 8100
    assert len(features_of(api, session, record["id"], groups="hog", include_vectors="true")["hog"]["hog"]) == 8100


def test_unknown_group_is_400_listing_the_valid_ones(api):
    session = new_session(api)
    record = upload(api, session, ("a.jpg", make_jpeg())).json()["accepted"][0]
    for path in (f"/api/images/{record['id']}/features", "/api/features"):
        response = api.get(path, params={"session_id": session, "groups": "basic,sparkle"})
        assert response.status_code == 400
        detail = response.json()["detail"]
        assert "sparkle" in detail and all(name in detail for name in CATALOGUE_ORDER)


def test_catalog_endpoint_matches_the_registry(api):
    groups = api.get("/api/features/catalog").json()["groups"]
    assert [g["name"] for g in groups] == CATALOGUE_ORDER == list(REGISTRY)
    for group in groups:
        registered = REGISTRY[group["name"]]
        assert group["description"] == registered.description and group["description"]
        assert group["outputs"] == registered.outputs and group["outputs"]
        assert group["parameters"] == registered.parameters
        assert group["by_default"] == registered.by_default


def test_another_sessions_image_features_are_404(api):
    owner, other = new_session(api), new_session(api)
    record = upload(api, owner, ("a.jpg", make_jpeg())).json()["accepted"][0]
    response = api.get(f"/api/images/{record['id']}/features", params={"session_id": other})
    assert response.status_code == 404
    assert response.json() == {"detail": "no such image in this workspace"}


def test_feature_results_are_cached_in_the_session_and_counted(api):
    session = new_session(api)
    record = upload(api, session, ("a.jpg", make_jpeg(300, 200))).json()["accepted"][0]
    from core.sessions import session_scope

    with session_scope(session):
        before = workspace.session_bytes_held()
        first = features_of(api, session, record["id"], include_vectors="true")
        after = workspace.session_bytes_held()
        assert after > before + 8100 * 8  # the HOG vector alone is that big
        assert workspace.cache_get(record["id"], "features:hog") is not None
    assert features_of(api, session, record["id"], include_vectors="true") == first


def test_cache_goes_with_the_image_on_delete_and_clear(api):
    session = new_session(api)
    from core.sessions import session_scope

    first = upload(api, session, ("a.jpg", make_jpeg(seed=1))).json()["accepted"][0]
    features_of(api, session, first["id"])
    api.delete(f"/api/images/{first['id']}", params={"session_id": session})
    with session_scope(session):
        assert workspace.session_bytes_held() == 0
    second = upload(api, session, ("b.jpg", make_jpeg(seed=2))).json()["accepted"][0]
    features_of(api, session, second["id"])
    api.delete("/api/session", params={"session_id": session})
    with session_scope(session):
        assert workspace.session_bytes_held() == 0
    assert api.get(f"/api/images/{second['id']}/features", params={"session_id": session}).status_code == 404


def test_same_image_in_two_sessions_is_computed_and_cached_separately(api):
    a, b = new_session(api), new_session(api)
    data = make_jpeg(seed=4)
    in_a = upload(api, a, ("x.jpg", data)).json()["accepted"][0]
    in_b = upload(api, b, ("x.jpg", data)).json()["accepted"][0]
    features_of(api, a, in_a["id"])
    from core.sessions import session_scope

    with session_scope(b):
        assert workspace.cache_get(in_b["id"], "features:basic") is None  # nothing shared
    api.delete("/api/session", params={"session_id": a})
    assert features_of(api, b, in_b["id"], groups="basic")["basic"]["width"] == 64


def test_csv_table_has_a_header_and_one_row_per_image(api):
    session = new_session(api)
    names = [f"{i}.jpg" for i in range(4)]
    upload(api, session, *[(n, make_jpeg(80 + i, 60, seed=i)) for i, n in enumerate(names)])
    response = api.get("/api/features", params={"session_id": session, "format": "csv"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [r["filename"] for r in rows] == names
    assert {r["id"] for r in rows} == {r["id"] for r in listed(api, session)}
    assert [int(r["basic.width"]) for r in rows] == [80, 81, 82, 83]
    for column in (
        "stats.R.mean",
        "hashes.phash",
        "lbp.lbp_hist.9",
        "cleanvision.is_odd_size",
        "dominant_colors.dominant_colors_kmeans.top_hex",
        "glcm.contrast",
    ):
        assert column in rows[0]
    assert not any(column.startswith(("hist256", "hog.hog.")) for column in rows[0])


def test_json_table_with_chosen_groups(api):
    session = new_session(api)
    upload(api, session, ("a.jpg", make_jpeg(seed=1)), ("b.jpg", make_jpeg(seed=2)))
    body = api.get("/api/features", params={"session_id": session, "groups": "basic,sharpness"}).json()
    assert body["columns"][:2] == ["id", "filename"]
    assert "sharpness.laplacian_var" in body["columns"] and len(body["rows"]) == 2
    assert not any(c.startswith("stats.") for c in body["columns"])


def test_empty_session_table_is_empty(api):
    body = api.get("/api/features", params={"session_id": new_session(api)}).json()
    assert body["rows"] == []


def test_duplicates_finds_same_pixels_and_near_copies(api):
    session = new_session(api)
    photo = Image.open(FEATURES / "images" / "chelsea.png").convert("RGB")
    same_pixels = io.BytesIO()
    photo.save(same_pixels, "BMP")  # other bytes, same pixels
    near = io.BytesIO()
    photo.resize((photo.width // 2, photo.height // 2)).save(near, "PNG")
    other = (FEATURES / "images" / "camera.png").read_bytes()
    body = upload(
        api,
        session,
        ("cat.png", (FEATURES / "images" / "chelsea.png").read_bytes()),
        ("cat.bmp", same_pixels.getvalue()),
        ("small.png", near.getvalue()),
        ("camera.png", other),
    ).json()
    assert len(body["accepted"]) == 4
    result = api.get("/api/features/duplicates", params={"session_id": session}).json()
    assert [sorted(r["filename"] for r in group) for group in result["exact"]] == [["cat.bmp", "cat.png"]]
    assert len(result["near"]) == 1
    assert sorted(r["filename"] for r in result["near"][0]["images"]) == ["cat.bmp", "cat.png", "small.png"]
    assert result["threshold"] == 4
    strict = api.get("/api/features/duplicates", params={"session_id": session, "threshold": 0}).json()
    assert all("camera.png" not in [r["filename"] for r in g["images"]] for g in strict["near"])
    assert api.get("/api/features/duplicates", params={"session_id": session, "threshold": 99}).status_code == 400


def test_session_run_publishes_progress(api):
    session = new_session(api)
    upload(api, session, *[(f"{i}.jpg", make_jpeg(seed=i)) for i in range(3)])
    seen = []
    stop = bus.subscribe(session, seen.append)
    try:
        api.get("/api/features", params={"session_id": session, "groups": "basic,edges"})
    finally:
        stop()
    progress = [e.data for e in seen if e.kind == PROGRESS]
    assert progress[0] == {"task": "features", "done": 0, "total": 3}
    assert progress[-1] == {"task": "features", "done": 3, "total": 3}
    assert [p["done"] for p in progress] == sorted(p["done"] for p in progress)


def test_legacy_folder_images_have_features_too(api):
    record = upload(api, None, ("shared.png", hostile("ok_photo.png"))).json()["accepted"][0]
    body = api.get(f"/api/images/{record['id']}/features", params={"groups": "basic"}).json()
    assert body["basic"]["width"] == 640


def test_exif_orientation_is_applied_before_features(api):
    session = new_session(api)
    record = upload(api, session, ("r.jpg", hostile("exif_orientation_6.jpg"))).json()["accepted"][0]
    basic = features_of(api, session, record["id"], groups="basic")["basic"]
    assert (basic["width"], basic["height"]) == (100, 200) == (record["width"], record["height"])


def test_feature_table_through_worker_processes_matches_single_image_results(api, configure):
    configure(feature_workers=2)
    session = new_session(api)
    upload(api, session, *[(f"{i}.jpg", make_jpeg(120, 90, seed=i)) for i in range(3)])
    table = api.get("/api/features", params={"session_id": session, "groups": "stats,hashes"}).json()
    assert len(table["rows"]) == 3
    for row in table["rows"]:
        single = features_of(api, session, row["id"], groups="stats")
        assert row["stats.gray.mean"] == single["stats"]["gray"]["mean"]
