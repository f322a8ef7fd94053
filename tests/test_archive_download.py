"""GET /api/images/archive: the workspace's originals as one ZIP, streamed from RAM."""

from __future__ import annotations

import io
import zipfile

import httpx

from core.api.export import member_name
from tests.helpers import big_jpeg, make_jpeg, new_session, upload


def archive_of(client: httpx.Client, session_id: str | None) -> zipfile.ZipFile:
    params = {"session_id": session_id} if session_id else {}
    response = client.get("/api/images/archive", params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    assert response.headers["content-disposition"].startswith("attachment;")
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    assert archive.testzip() is None
    return archive


def test_the_archive_holds_every_original_byte_for_byte(api) -> None:
    session = new_session(api)
    files = {"first.jpg": make_jpeg(80, 60, seed=1), "second.jpg": make_jpeg(60, 80, seed=2), "big.jpg": big_jpeg()}
    assert upload(api, session, *files.items()).status_code == 200
    archive = archive_of(api, session)
    assert sorted(archive.namelist()) == sorted(files)
    for name, data in files.items():
        assert archive.read(name) == data
        assert archive.getinfo(name).compress_type == zipfile.ZIP_STORED


def test_another_sessions_archive_holds_nothing_of_ours(api) -> None:
    mine, theirs = new_session(api), new_session(api)
    assert upload(api, mine, ("secret.jpg", make_jpeg(seed=3))).status_code == 200
    assert upload(api, theirs, ("theirs.jpg", make_jpeg(seed=4))).status_code == 200
    assert archive_of(api, theirs).namelist() == ["theirs.jpg"]
    assert archive_of(api, new_session(api)).namelist() == []  # an empty workspace: an empty archive
    assert archive_of(api, None).namelist() == []  # the legacy folder holds nothing of a session


def test_same_names_are_made_unique_and_folders_kept_safe(api) -> None:
    session = new_session(api)
    files = [
        ("a.jpg", make_jpeg(seed=5)),
        ("A.jpg", make_jpeg(seed=6)),
        ("a.jpg", make_jpeg(seed=7)),
        ("trip/day 1/b.jpg", make_jpeg(seed=8)),
        ("../../etc/c.jpg", make_jpeg(seed=9)),
    ]
    response = upload(api, session, *files)
    assert response.status_code == 200 and len(response.json()["accepted"]) == 5
    archive = archive_of(api, session)
    names = archive.namelist()
    assert len({name.lower() for name in names}) == 5
    assert names[:3] == ["a.jpg", "A (2).jpg", "a (3).jpg"]
    assert all(not name.startswith("/") and ".." not in name.split("/") for name in names)
    for name, (_, data) in zip(names, files, strict=True):
        assert archive.read(name) == data


def test_member_names() -> None:
    taken: set[str] = set()
    assert member_name("photo.jpg", taken) == "photo.jpg"
    assert member_name("PHOTO.jpg", taken) == "PHOTO (2).jpg"
    assert member_name("/abs/../x.png", taken) == "abs/x.png"
    assert member_name("..", taken) == "image"
    assert member_name("C:\\pics\\y.gif", taken) == "C:/pics/y.gif"
    assert member_name("no-extension", taken) == "no-extension"
    assert member_name("no-extension", taken) == "no-extension (2)"
    assert member_name("dir.v2/readme", taken) == "dir.v2/readme"


def test_the_legacy_folder_is_archived_without_a_session_and_refused_when_switched_off(api, configure) -> None:
    assert upload(api, None, ("shared.jpg", make_jpeg(seed=10))).status_code == 200
    assert archive_of(api, None).namelist() == ["shared.jpg"]
    configure(legacy_fallback=False)
    response = api.get("/api/images/archive")
    assert response.status_code == 400 and response.json()["detail"]


def test_a_malformed_session_id_is_a_400_not_an_image_lookup(api) -> None:
    response = api.get("/api/images/archive", params={"session_id": "not-a-session"})
    assert response.status_code == 400


def test_the_archive_is_written_to_no_file(api, watch_writes) -> None:
    session = new_session(api)
    assert upload(api, session, ("big.jpg", big_jpeg()), ("small.jpg", make_jpeg(seed=11))).status_code == 200
    watch_writes.clear()
    assert sorted(archive_of(api, session).namelist()) == ["big.jpg", "small.jpg"]
    assert [write for write in watch_writes if not write.split(" ", 1)[0].isdigit()] == []
