"""Every file of the hostile set gets what EXPECTED.md says, through the real HTTP API."""

from __future__ import annotations

import io
import time

import pytest
from PIL import Image

from tests.helpers import hostile, listed, new_session, upload, upload_zip

SINGLE_ACCEPTED = {
    "ok_photo.jpg": ("JPEG", 640, 480),
    "ok_photo.png": ("PNG", 640, 480),
    "ok_photo.webp": ("WEBP", 640, 480),
    "exif_orientation_6.jpg": ("JPEG", 100, 200),
    "jpeg_named.png": ("JPEG", 640, 480),
}

SINGLE_REJECTED = {
    "empty.jpg": (415, "empty"),
    "not_an_image.jpg": (415, "not a supported image"),
    "random_bytes.jpg": (415, "not a supported image"),
    "svg_renamed.png": (415, "SVG is not supported"),
    "eps_renamed.jpg": (415, "EPS"),
    "exotic_format.ico": (415, "ICO is not supported"),
    "truncated.jpg": (422, "corrupt or truncated"),
    "bomb_png_100000x100000.png": (413, "too many pixels"),
    "bomb_tiff_100000x100000.tif": (413, "too many pixels"),
    "bomb_png_10000x10000_L.png": (413, "too many pixels"),
    "bomb_tiff_9000x9000_deflate.tif": (413, "too many pixels"),
    "gif_10000_frames.gif": (413, "too many frames"),
}

ZIP_REJECTED = {
    "zip_slip.zip": (422, "unsafe path"),
    "zip_absolute_path.zip": (422, "unsafe path"),
    "zip_symlink.zip": (422, "symbolic link"),
    "zip_encrypted.zip": (422, "encrypted"),
    "zip_duplicate_names.zip": (422, "appears twice"),
    "zip_bomb_bzip2_1GiB.zip": (422, "only stored and deflate"),
    "zip_bomb_deflate_500MiB.zip": (413, "would unpack to 500 MiB"),
    "zip_10000_entries.zip": (413, "10000 entries"),
    "not_a_zip.zip": (422, "not a valid ZIP"),
    "zip_truncated.zip": (422, "not a valid ZIP"),
}


@pytest.mark.parametrize("name", sorted(SINGLE_ACCEPTED))
def test_good_single_file_is_accepted_with_format_from_content(api, name):
    session = new_session(api)
    response = upload(api, session, (name, hostile(name)))
    assert response.status_code == 200, response.text
    (record,) = response.json()["accepted"]
    assert (record["format"], record["width"], record["height"]) == SINGLE_ACCEPTED[name]
    assert record["filename"] == name
    assert [r["id"] for r in listed(api, session)] == [record["id"]]


def test_exif_rotated_photo_preview_is_upright(api):
    session = new_session(api)
    record = upload(api, session, ("r.jpg", hostile("exif_orientation_6.jpg"))).json()["accepted"][0]
    thumbnail = api.get(f"/api/images/{record['id']}/thumbnail", params={"session_id": session})
    assert thumbnail.status_code == 200
    preview = Image.open(io.BytesIO(thumbnail.content))
    assert preview.width < preview.height  # stored landscape 200x100, shown portrait 100x200
    original = api.get(f"/api/images/{record['id']}", params={"session_id": session})
    assert original.content == hostile("exif_orientation_6.jpg")  # the bytes themselves are untouched


@pytest.mark.parametrize("name", sorted(SINGLE_REJECTED))
def test_hostile_single_file_is_rejected_cleanly_and_nothing_is_stored(api, name):
    session = new_session(api)
    upload(api, session, ("keep.jpg", hostile("ok_photo.jpg")))
    before = listed(api, session)
    started = time.perf_counter()
    response = upload(api, session, (name, hostile(name)))
    status, words = SINGLE_REJECTED[name]
    assert response.status_code == status, response.text
    body = response.json()
    assert words in body["detail"]
    assert body["accepted"] == [] and body["rejected"][0]["status"] == status
    assert "Traceback" not in response.text
    assert listed(api, session) == before
    assert time.perf_counter() - started < 60  # sanity only: the point is it returns at all


@pytest.mark.parametrize("name", sorted(ZIP_REJECTED))
def test_hostile_zip_is_refused_whole(api, name):
    session = new_session(api)
    response = upload_zip(api, session, hostile(name))
    status, words = ZIP_REJECTED[name]
    assert response.status_code == status, response.text
    assert words in response.json()["detail"]
    assert listed(api, session) == []


def test_good_zip_keeps_member_paths_as_names(api):
    session = new_session(api)
    response = upload_zip(api, session, hostile("zip_good.zip"))
    assert response.status_code == 200
    names = [r["filename"] for r in response.json()["accepted"]]
    assert names == ["photos/a.jpg", "photos/b.png", "c.jpg"]


def test_os_junk_and_directories_are_skipped_silently(api):
    session = new_session(api)
    body = upload_zip(api, session, hostile("zip_junk.zip")).json()
    assert len(body["accepted"]) == 1
    assert body["skipped"] == [] and body["rejected"] == []


def test_non_image_members_are_listed_with_reasons(api):
    session = new_session(api)
    body = upload_zip(api, session, hostile("zip_non_image.zip")).json()
    assert [r["filename"] for r in body["accepted"]] == ["a.jpg"]
    skipped = {s["filename"]: s["reason"] for s in body["skipped"]}
    assert set(skipped) == {"run.sh", "fake.jpg"}
    assert all("not a supported image" in reason for reason in skipped.values())


def test_nested_archive_is_listed_not_opened(api):
    session = new_session(api)
    body = upload_zip(api, session, hostile("zip_nested.zip")).json()
    assert [r["filename"] for r in body["accepted"]] == ["b.jpg"]
    assert body["skipped"] == [{"filename": "more_photos.zip", "reason": "nested archives are not opened"}]


def test_weird_member_names_are_cleaned_everywhere_they_are_echoed(api):
    session = new_session(api)
    body = upload_zip(api, session, hostile("zip_weird_names.zip")).json()
    names = [r["filename"] for r in body["accepted"]]
    assert len(names) == 2
    for name in names:
        assert not any(ord(ch) < 32 for ch in name)
        assert len(name) <= 200
    for record in body["accepted"]:
        response = api.get(f"/api/images/{record['id']}", params={"session_id": session})
        disposition = response.headers["content-disposition"]
        assert "\r" not in disposition and "\n" not in disposition
        assert "x-injected" not in {k.lower() for k in response.headers}


@pytest.mark.parametrize("name", ["zip_non_utf8_names.zip", "zip_bad_utf8_flagged.zip"])
def test_badly_encoded_member_names_are_decoded_leniently(api, name):
    session = new_session(api)
    response = upload_zip(api, session, hostile(name))
    assert response.status_code == 200
    assert len(response.json()["accepted"]) == 1
