"""The round trip: a Darkroom archive (its originals and annotations.json) uploaded back restores
the annotations by member name, into an empty workspace or on request, trusting nothing else of
the archive (``core.restore``); and a ZIP over the script socket is unpacked as over multipart."""

from __future__ import annotations

import io
import json
import queue
import zipfile

import pytest
from websockets.sync.client import connect

from core.annotations import EDIT_BURST
from core.client import Workspace
from core.events import ANNOTATION_CHANGED, bus
from core.restore import MAX_NOTES_BYTES, RESTORE_AUTHOR
from tests.helpers import listed, make_jpeg, new_session, upload, upload_zip, ws_connect

NOTES = {
    "a.jpg": {"tags_add": ["keep", "sharp"], "rating": 5, "note": "best of the series\nsecond line", "pick": "picked"},
    "trip/b.jpg": {"tags_add": ["blurred"], "rating": 1, "pick": "rejected"},
    "c.jpg": {"rating": 0},  # zero stars is a rating, not "none"
    "d.jpg": {"note": "only a note"},
}


def _annotated_workspace(api) -> tuple[str, dict[str, dict]]:
    """A workspace of five images, four annotated (``NOTES``); returns it and each image's
    annotations by filename, as the API lists them."""
    session = new_session(api)
    names = [*NOTES, "e.jpg"]
    response = upload(api, session, *[(name, make_jpeg(seed=index)) for index, name in enumerate(names)])
    assert response.status_code == 200, response.text
    ids = {record["filename"]: record["id"] for record in response.json()["accepted"]}
    for name, body in NOTES.items():
        answer = api.patch(f"/api/images/{ids[name]}/annotations", params={"session_id": session}, json=body)
        assert answer.status_code == 200, answer.text
    return session, _annotations_by_name(api, session)


def _annotations_by_name(api, session: str) -> dict[str, dict]:
    return {record["filename"]: record["annotations"] for record in listed(api, session)}


def _kept(annotations: dict) -> dict:
    """What a round trip keeps (versions, times and authors are the new workspace's own)."""
    return {key: annotations[key] for key in ("tags", "rating", "note", "pick")}


def _download(api, session: str) -> bytes:
    response = api.get("/api/images/archive", params={"session_id": session})
    assert response.status_code == 200
    return response.content


def _zip(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


def _photos(count: int = 2) -> dict[str, bytes]:
    return {f"p{index}.jpg": make_jpeg(16, 16, seed=100 + index) for index in range(count)}


def _with_notes(notes: object | bytes, photos: dict[str, bytes] | None = None) -> bytes:
    raw = notes if isinstance(notes, bytes) else json.dumps(notes).encode()
    return _zip({**(photos if photos is not None else _photos()), "annotations.json": raw})


def _socket_upload(url: str, files: list[tuple[str, bytes]]) -> list[dict]:
    """Send ``files`` over an upload socket at ``url``; every message up to the summary."""
    messages = []
    with connect(url, compression=None, max_size=None) as ws:
        assert json.loads(ws.recv(timeout=5))["type"] == "ready"
        for name, data in files:
            ws.send(json.dumps({"filename": name, "size": len(data)}))
            for start in range(0, len(data), 256 * 1024):
                ws.send(data[start : start + 256 * 1024])
        ws.send(json.dumps({"type": "done"}))
        while (message := json.loads(ws.recv(timeout=30)))["type"] != "summary":
            messages.append(message)
    return messages


# -- out and back in --
def test_an_archive_out_and_back_in_keeps_every_tag_rating_note_and_pick(api):
    source, before = _annotated_workspace(api)
    archive = _download(api, source)
    target = new_session(api)
    response = upload_zip(api, target, archive)
    assert response.status_code == 200, response.text
    body = response.json()
    assert sorted(body["annotations"]["restored"]) == sorted(NOTES)
    assert body["annotations"]["skipped"] == []
    assert "restored the annotations of 4 image(s)" in body["annotations"]["detail"]
    after = _annotations_by_name(api, target)
    assert sorted(after) == sorted(before)  # every image came back, and no annotations.json image
    assert {name: _kept(notes) for name, notes in after.items()} == {
        name: _kept(notes) for name, notes in before.items()
    }
    assert after["a.jpg"]["updated_by"] == RESTORE_AUTHOR and after["e.jpg"]["version"] == 0
    # annotations.json is consumed: neither an image nor a member skipped as unsupported
    assert [entry["filename"] for entry in body["skipped"]] == []


def test_over_the_script_socket_an_archive_is_unpacked_with_its_annotations(api, live_server):
    source, before = _annotated_workspace(api)
    archive = _download(api, source)
    target = new_session(api)
    messages = _socket_upload(f"{live_server.ws_url}/api/ws/upload?session_id={target}", [("back.zip", archive)])
    results = [m for m in messages if m["type"] == "result"]
    assert sorted(m["filename"] for m in results) == sorted(before)
    assert all(m["member"] and m["status"] == 200 and m["file"] == 0 for m in results)
    [restored] = [m for m in messages if m["type"] == "annotations"]
    assert restored["file"] == 0 and sorted(restored["restored"]) == sorted(NOTES)
    assert [m for m in messages if m["type"] == "skipped"] == []
    after = _annotations_by_name(api, target)
    assert {name: _kept(notes) for name, notes in after.items()} == {
        name: _kept(notes) for name, notes in before.items()
    }


def test_the_pages_socket_restores_an_archive_dropped_into_an_empty_workspace(api, archive_socket):
    source, before = _annotated_workspace(api)
    target = new_session(api)
    messages = _socket_upload(f"{archive_socket.ws_url}/ws/{target}", [("back.zip", _download(api, source))])
    assert sorted(next(m for m in messages if m["type"] == "annotations")["restored"]) == sorted(NOTES)
    assert _kept(_annotations_by_name(api, target)["a.jpg"]) == _kept(before["a.jpg"])


def test_the_client_archives_and_uploads_back_with_the_annotations(api, live_server, tmp_path):
    source, before = _annotated_workspace(api)
    with Workspace(live_server.url, source) as old:
        saved = old.archive(tmp_path / "all.zip")
    with Workspace(live_server.url) as new:
        report = new.upload(saved)
        assert sorted(record["filename"] for record in report.accepted) == sorted(before)
        assert sorted(report.restored) == sorted(NOTES)
        assert report.annotations[0]["filename"] == "all.zip" and report.skipped == []
        after = {record["filename"]: record["annotations"] for record in new.images()}
    assert {name: _kept(notes) for name, notes in after.items()} == {
        name: _kept(notes) for name, notes in before.items()
    }


def test_an_archive_packed_again_from_its_folder_still_comes_back_with_its_annotations(api):
    source, before = _annotated_workspace(api)
    with zipfile.ZipFile(io.BytesIO(_download(api, source))) as original:
        members = {f"shoot/{info.filename}": original.read(info) for info in original.infolist()}
    target = new_session(api)
    body = upload_zip(api, target, _zip(members)).json()
    assert sorted(body["annotations"]["restored"]) == sorted(f"shoot/{name}" for name in NOTES)
    assert _kept(_annotations_by_name(api, target)["shoot/a.jpg"]) == _kept(before["a.jpg"])


# -- only into an empty workspace, unless asked --
def test_a_workspace_that_holds_images_restores_only_when_asked(api):
    source, before = _annotated_workspace(api)
    archive = _download(api, source)
    target = new_session(api)
    upload(api, target, ("mine.jpg", make_jpeg(seed=99)))
    refused = upload_zip(api, target, archive).json()
    assert refused["annotations"]["restored"] == []
    assert "restore_annotations=true" in refused["annotations"]["detail"]
    assert all(notes["version"] == 0 for notes in _annotations_by_name(api, target).values())
    # asked: the same archive again restores onto the images it already stored (its duplicates)
    asked = api.post(
        "/api/images/zip",
        params={"session_id": target, "restore_annotations": "true"},
        files={"file": ("a.zip", archive)},
    ).json()
    assert asked["accepted"] == [] and sorted(asked["annotations"]["restored"]) == sorted(NOTES)
    after = _annotations_by_name(api, target)
    assert _kept(after["a.jpg"]) == _kept(before["a.jpg"]) and after["mine.jpg"]["version"] == 0


def test_over_the_socket_a_workspace_that_holds_images_restores_only_when_asked(api, live_server):
    source, _ = _annotated_workspace(api)
    archive = _download(api, source)
    target = new_session(api)
    upload(api, target, ("mine.jpg", make_jpeg(seed=99)))
    plain = _socket_upload(f"{live_server.ws_url}/api/ws/upload?session_id={target}", [("a.zip", archive)])
    assert next(m for m in plain if m["type"] == "annotations")["restored"] == []
    url = f"{live_server.ws_url}/api/ws/upload?session_id={target}&restore_annotations=true"
    asked = _socket_upload(url, [("a.zip", archive)])
    assert sorted(next(m for m in asked if m["type"] == "annotations")["restored"]) == sorted(NOTES)


def test_a_restore_flag_that_is_not_true_or_false_is_refused(api, live_server):
    session = new_session(api)
    response = api.post(
        "/api/images/zip",
        params={"session_id": session, "restore_annotations": "maybe"},
        files={"file": ("a.zip", _with_notes([]))},
    )
    assert response.status_code == 400 and "restore_annotations" in response.json()["detail"]
    with ws_connect(live_server, session + "&restore_annotations=maybe") as ws:
        error = json.loads(ws.recv(timeout=5))
    assert error["type"] == "error" and error["status"] == 400


# -- through the store's patch path --
def test_a_restore_of_many_images_is_one_system_edit_each_seen_by_open_tabs(api, configure):
    configure(zip_max_entries=200)
    count = EDIT_BURST * 3  # well past what one client may edit at once
    photos = {f"img{index:03}.jpg": make_jpeg(8, 8, seed=1000 + index) for index in range(count)}
    notes = [{"file": name, "tags": ["burst"], "rating": 3} for name in photos]
    session = new_session(api)
    upload(api, session, ("seed.jpg", make_jpeg(seed=5)))
    received: queue.Queue = queue.Queue()
    stop = bus.subscribe(session, received.put)
    try:
        response = api.post(
            "/api/images/zip",
            params={"session_id": session, "restore_annotations": "1"},
            files={"file": ("many.zip", _with_notes(notes, photos))},
        )
    finally:
        stop()
    assert response.status_code == 200 and len(response.json()["annotations"]["restored"]) == count
    changed = []
    while not received.empty():
        event = received.get_nowait()
        if event.kind == ANNOTATION_CHANGED:
            changed.append(event)
    assert len(changed) == count and all(event.data["by"] == RESTORE_AUTHOR for event in changed)
    stored = _annotations_by_name(api, session)
    assert all(stored[name]["tags"] == ["burst"] and stored[name]["rating"] == 3 for name in photos)


def test_restored_annotations_count_against_the_quota_and_what_does_not_fit_is_skipped(api, configure):
    from core import data_service

    photos = _photos(2)
    probe = new_session(api)
    upload_zip(api, probe, _zip(photos))
    held = data_service.current_stores().sessions.bytes_held(probe)  # the images and their thumbnails
    configure(session_quota_bytes=held + 1024)  # a tag fits beside them, a 4,000-byte note does not
    session = new_session(api)
    notes = [{"file": "p0.jpg", "note": "n" * 4000}, {"file": "p1.jpg", "tags": ["t"]}]
    body = upload_zip(api, session, _with_notes(notes, photos)).json()
    assert sorted(record["filename"] for record in body["accepted"]) == ["p0.jpg", "p1.jpg"]
    assert body["annotations"]["restored"] == ["p1.jpg"]
    [(name, reason)] = [(entry["filename"], entry["reason"]) for entry in body["annotations"]["skipped"]]
    assert name == "p0.jpg" and "workspace is full" in reason
    stored = _annotations_by_name(api, session)
    assert stored["p0.jpg"]["note"] == "" and stored["p1.jpg"]["tags"] == ["t"]


def test_the_annotations_of_an_image_the_quota_refused_are_never_applied_alone(api, configure):
    from core import data_service

    first = {"p0.jpg": make_jpeg(16, 16, seed=100)}
    probe = new_session(api)
    upload_zip(api, probe, _zip(first))
    configure(session_quota_bytes=data_service.current_stores().sessions.bytes_held(probe) + 512)
    session = new_session(api)
    photos = {**first, "p1.jpg": make_jpeg(64, 48, seed=101)}  # does not fit beside p0
    notes = [{"file": "p0.jpg", "tags": ["a"]}, {"file": "p1.jpg", "tags": ["b"]}]
    body = upload_zip(api, session, _with_notes(notes, photos)).json()
    assert [record["filename"] for record in body["accepted"]] == ["p0.jpg"]
    assert [r["filename"] for r in body["rejected"]] == ["p1.jpg"]
    assert body["annotations"]["restored"] == ["p0.jpg"]
    assert body["annotations"]["skipped"] == [{"filename": "p1.jpg", "reason": "its image was not stored"}]


def test_an_archive_refused_whole_restores_nothing(api, configure):
    configure(zip_max_total_bytes=64 * 1024)
    session = new_session(api)
    big = {"p0.jpg": make_jpeg(16, 16, seed=1), "pad.bin": bytes(128 * 1024)}
    response = upload_zip(api, session, _with_notes([{"file": "p0.jpg", "tags": ["x"]}], big))
    assert response.status_code == 413 and "annotations" not in response.json()
    assert listed(api, session) == []


# -- annotations.json is client data --
@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b"\xff\xfe not utf-8 \x80", "not UTF-8 text"),
        (b"[[[" + b"0" * 1000 + b"]]]", "not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "100000 JSON objects and lists"),
        (b'{"file": "p0.jpg", "tags": ["x"]}', "must be a JSON list"),
        (json.dumps([f"x{i}.jpg" for i in range(100)]).encode(), "lists 100 entries"),
        (json.dumps([{"file": f"x{i}.jpg"} for i in range(10_000)]).encode(), "10001 JSON objects and lists"),
        # Under 4 MiB, but two million dicts or a million numbers once parsed: refused unparsed.
        (b"[" + b"{}," * 1_300_000 + b"{}]", "1300002 JSON objects and lists"),
        (b"[" + b"0," * 2_000_000 + b"0]", "2000001 JSON values"),
        (b'[{"file": "p0.jpg", "tags": ["x"]}' + b" " * (MAX_NOTES_BYTES + 1) + b"]", "over the 4 MiB limit"),
    ],
    ids=["non-utf8", "bad", "deep", "not-a-list", "over-entries", "10k-objects", "many-dicts", "many-values", "huge"],
)
def test_a_hostile_annotations_json_is_answered_and_the_images_are_stored(api, raw, words):
    session = new_session(api)
    response = upload_zip(api, session, _with_notes(raw))
    assert response.status_code == 200, response.text
    body = response.json()
    assert sorted(record["filename"] for record in body["accepted"]) == ["p0.jpg", "p1.jpg"]
    assert body["skipped"] == [] and body["annotations"]["restored"] == []
    assert words in body["annotations"]["detail"] and "no annotations were restored" in body["annotations"]["detail"]
    assert all(notes["version"] == 0 for notes in _annotations_by_name(api, session).values())


def test_braces_and_commas_inside_strings_do_not_count_against_the_shape(api):
    session = new_session(api)
    note = ('{[,]} "quoted" \\ ' * 200).strip()  # 3,800 characters of what the shape check counts outside strings
    tags = [f"t{i},[{{" for i in range(32)]
    response = upload_zip(api, session, _with_notes([{"file": "p0.jpg", "note": note, "tags": tags}]))
    assert response.status_code == 200, response.text
    assert response.json()["annotations"]["restored"] == ["p0.jpg"]
    restored = _annotations_by_name(api, session)["p0.jpg"]
    assert restored["note"] == note and restored["tags"] == tags


def test_each_bad_entry_is_skipped_in_plain_words_and_the_good_ones_are_restored(api):
    other = new_session(api)
    theirs = upload(api, other, ("p0.jpg", make_jpeg(seed=77))).json()["accepted"][0]
    entries = [
        {"file": "p0.jpg", "id": theirs["id"], "tags": ["good"], "version": 999, "updated_by": "Mallory"},
        {"file": "p1.jpg", "rating": "five"},
        "not an object",
        {"file": 12},
        {"file": "../p1.jpg", "tags": ["escape"]},
        {"file": "elsewhere.jpg", "tags": ["x"]},
        {"file": "p0.jpg", "tags": ["twice"]},
    ]
    session = new_session(api)
    body = upload_zip(api, session, _with_notes(entries, _photos(len(entries)))).json()
    notes = body["annotations"]
    assert notes["restored"] == ["p0.jpg"]
    reasons = {entry["filename"]: entry["reason"] for entry in notes["skipped"]}
    assert "whole number of stars" in reasons["p1.jpg"]
    assert "not a JSON object" in reasons["entry 3"] and "no 'file'" in reasons["entry 4"]
    assert "no file of the archive" in reasons["../p1.jpg"] and "no file of the archive" in reasons["elsewhere.jpg"]
    assert "listed twice" in reasons["p0.jpg"]
    mine = _annotations_by_name(api, session)["p0.jpg"]
    # the id, version and author in the file are not trusted: the other workspace's image is untouched
    assert mine["tags"] == ["good"] and mine["version"] == 1 and mine["updated_by"] == RESTORE_AUTHOR
    assert _annotations_by_name(api, other)["p0.jpg"]["version"] == 0


def test_values_are_cleaned_and_bounded_as_any_annotation_edit(api):
    entries = [
        {"file": "p0.jpg", "tags": [" keep\u200b ", "x" * 65], "note": "n"},
        {"file": "p1.jpg", "tags": ["  tidy\tme  "], "note": "a\x00b", "pick": "maybe"},
    ]
    session = new_session(api)
    body = upload_zip(api, session, _with_notes(entries)).json()
    reasons = {entry["filename"]: entry["reason"] for entry in body["annotations"]["skipped"]}
    assert "64 characters" in reasons["p0.jpg"] and "a pick is" in reasons["p1.jpg"]
    assert body["annotations"]["restored"] == []
    entries = [{"file": "p0.jpg", "tags": [" keep\u200b ", "  tidy\tme  "], "note": "a\x00b", "pick": "picked"}]
    session = new_session(api)
    cleaned = upload_zip(api, session, _with_notes(entries)).json()
    assert cleaned["annotations"]["restored"] == ["p0.jpg"]
    assert _kept(_annotations_by_name(api, session)["p0.jpg"]) == {
        "tags": ["keep", "tidy me"],
        "rating": None,
        "note": "ab",
        "pick": "picked",
    }


def test_an_archive_with_annotations_json_and_no_image_is_an_unsupported_upload(api):
    response = upload_zip(api, new_session(api), _zip({"annotations.json": b"[]"}))
    assert response.status_code == 415 and "no supported images" in response.json()["detail"]


# -- ZIPs over the script socket --
def test_a_zip_over_the_script_socket_is_unpacked_like_over_multipart(api, live_server):
    archive = _zip({"trip/one.jpg": make_jpeg(seed=6), "trip/notes.txt": b"not an image"})
    over_http = upload_zip(api, new_session(api), archive).json()
    session = new_session(api)
    messages = _socket_upload(
        f"{live_server.ws_url}/api/ws/upload?session_id={session}",
        [("a.jpg", make_jpeg(seed=7)), ("trip.zip", archive)],
    )
    results = sorted((m["file"], m["member"], m["filename"], m["status"]) for m in messages if m["type"] == "result")
    assert results == [(0, False, "a.jpg", 200), (1, True, "trip/one.jpg", 200)]
    skipped = [(m["file"], m["filename"]) for m in messages if m["type"] == "skipped"]
    assert skipped == [(1, "trip/notes.txt")] == [(1, entry["filename"]) for entry in over_http["skipped"]]
    assert sorted(record["filename"] for record in listed(api, session)) == ["a.jpg", "trip/one.jpg"]


def test_a_large_file_that_is_no_zip_is_refused_from_its_first_bytes(api, live_server, configure):
    configure(max_file_bytes=256 * 1024, zip_max_archive_bytes=4 * 1024 * 1024)
    session = new_session(api)
    with ws_connect(live_server, session) as ws:
        assert json.loads(ws.recv(timeout=5))["max_file_bytes"] == 4 * 1024 * 1024
        ws.send(json.dumps({"filename": "big.jpg", "size": 2 * 1024 * 1024}))
        ws.send(b"\xff\xd8\xff\xe0" + bytes(64 * 1024))
        refused = json.loads(ws.recv(timeout=5))
        assert refused["type"] == "result" and refused["status"] == 413
        assert "256 KiB limit per file" in refused["detail"] and "do not send it" in refused["detail"]
        ws.send(bytes(64 * 1024))  # sent before the answer arrived: read and dropped, unanswered
        ws.send(json.dumps({"filename": "ok.jpg", "size": len(make_jpeg(seed=2))}))
        ws.send(make_jpeg(seed=2))
        messages = []
        while (message := json.loads(ws.recv(timeout=10)))["type"] != "result":
            messages.append(message)
        assert message["status"] == 200 and message["filename"] == "ok.jpg"
        assert {m["filename"] for m in messages} == {"ok.jpg"}  # the dropped bytes were not acknowledged
    assert [record["filename"] for record in listed(api, session)] == ["ok.jpg"]
