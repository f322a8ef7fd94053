"""The annotations API over real HTTP and WebSocket: shape, isolation, 409 on a stale version,
limits, the CSV export, records carrying annotations, and a script's edit reaching subscribers live."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import queue
import zipfile
from urllib.parse import quote

import pytest
from websockets.sync.client import connect

from core.annotations import MAX_BATCH_BODY_BYTES, MAX_BATCH_EDITS, MAX_NOTE_BYTES, MAX_TAG_CHARS, MAX_TAGS
from core.annotations import limiter as annotation_limiter
from core.events import ANNOTATION_CHANGED, PRESENCE_CHANGED, bus
from tests.helpers import listed, make_jpeg, new_session, upload


def url(image_id: str) -> str:
    return f"/api/images/{image_id}/annotations"


def one_image(api, session: str | None = None) -> tuple[str, str]:
    session = session or new_session(api)
    response = upload(api, session, ("a.jpg", make_jpeg(seed=3)))
    assert response.status_code == 200
    return session, response.json()["accepted"][0]["id"]


def patch(api, session: str | None, image_id: str, body: object, **kwargs):
    params = {"session_id": session} if session else {}
    return api.patch(url(image_id), params=params, json=body, **kwargs)


def events_socket(live_server, session: str, name: str | None = None):
    query = f"?session_id={session}" + (f"&name={quote(name)}" if name else "")
    return connect(f"{live_server.ws_url}/api/ws/events{query}", compression=None)


def receive_until(ws, kind: str) -> dict:
    for _ in range(50):
        message = json.loads(ws.recv(timeout=10))
        if message["type"] == kind:
            return message
    raise AssertionError(f"no {kind} message")


def test_new_image_has_empty_annotations(api):
    session, image_id = one_image(api)
    response = api.get(url(image_id), params={"session_id": session})
    assert response.status_code == 200
    assert response.json() == {
        "tags": [],
        "rating": None,
        "pick": None,
        "note": "",
        "version": 0,
        "updated_at": None,
        "updated_by": None,
    }


def test_patch_sets_tags_rating_and_note_and_get_returns_them(api):
    session, image_id = one_image(api)
    response = patch(api, session, image_id, {"tags_add": ["keep", "sharp"], "rating": 4, "note": "best one"})
    assert response.status_code == 200
    body = response.json()
    assert body["tags"] == ["keep", "sharp"] and body["rating"] == 4 and body["note"] == "best one"
    assert body["version"] == 1 and body["updated_by"] == "a script" and body["updated_at"].endswith("Z")
    assert api.get(url(image_id), params={"session_id": session}).json() == body
    removed = patch(api, session, image_id, {"tags_remove": ["keep"], "rating": None, "expected_version": 1})
    assert removed.json()["tags"] == ["sharp"] and removed.json()["rating"] is None


def test_a_pick_is_set_cleared_and_exported(api):
    session, image_id = one_image(api)
    assert patch(api, session, image_id, {"pick": "picked"}).json()["pick"] == "picked"
    refused = patch(api, session, image_id, {"pick": "maybe"})
    assert refused.status_code == 422 and "picked" in refused.json()["detail"]
    rows = api.get("/api/features", params={"session_id": session, "groups": "basic"}).json()["rows"]
    assert rows[0]["annotations.pick"] == "picked"
    assert patch(api, session, image_id, {"pick": None}).json()["pick"] is None


def test_another_sessions_image_is_404_on_get_and_patch(api):
    _, image_id = one_image(api)
    stranger = new_session(api)
    for response in (
        api.get(url(image_id), params={"session_id": stranger}),
        patch(api, stranger, image_id, {"tags_add": ["mine"]}),
        api.get(url(image_id)),  # the legacy shared folder
        patch(api, None, image_id, {"rating": 1}),
    ):
        assert response.status_code == 404
        assert response.json() == {"detail": "no such image in this workspace"}


def test_stale_expected_version_gets_409_with_the_current_value(api):
    session, image_id = one_image(api)
    patch(api, session, image_id, {"rating": 2})
    current = patch(api, session, image_id, {"rating": 3, "expected_version": 1}).json()
    response = patch(api, session, image_id, {"rating": 5, "expected_version": 1})
    assert response.status_code == 409
    assert response.json()["current"] == current and "version" in response.json()["detail"]
    assert api.get(url(image_id), params={"session_id": session}).json() == current


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"tags_add": ["x" * (MAX_TAG_CHARS + 1)]}, 413),
        ({"tags_add": [f"t{i}" for i in range(MAX_TAGS + 1)]}, 413),
        ({"note": "n" * (MAX_NOTE_BYTES + 1)}, 413),
        ({"rating": 6}, 422),
        ({"tags_add": ["\x07"]}, 422),
        ({"rating": "five"}, 400),
        ({"stars": 5}, 400),
        (["keep"], 400),
    ],
)
def test_bad_patches_get_a_plain_4xx_and_store_nothing(api, body, status):
    session, image_id = one_image(api)
    response = patch(api, session, image_id, body)
    assert response.status_code == status
    assert isinstance(response.json()["detail"], str) and response.json()["detail"]
    assert api.get(url(image_id), params={"session_id": session}).json()["version"] == 0


def test_malformed_and_oversized_bodies_are_refused(api):
    session, image_id = one_image(api)
    params = {"session_id": session}
    assert api.patch(url(image_id), params=params, content=b"{not json").status_code == 400
    assert api.patch(url(image_id), params=params, content=b"").status_code == 400
    huge = json.dumps({"note": "n" * 100_000}).encode()
    assert api.patch(url(image_id), params=params, content=huge).status_code == 413


def test_thirty_three_tags_are_refused_across_patches(api):
    session, image_id = one_image(api)
    assert patch(api, session, image_id, {"tags_add": [f"t{i}" for i in range(MAX_TAGS)]}).status_code == 200
    response = patch(api, session, image_id, {"tags_add": ["one more"]})
    assert response.status_code == 413 and str(MAX_TAGS) in response.json()["detail"]


def test_edits_over_the_rate_get_429(api, monkeypatch):
    monkeypatch.setattr(annotation_limiter, "burst", 3)
    monkeypatch.setattr(annotation_limiter, "rate", 0.001)
    session, image_id = one_image(api)
    statuses = [patch(api, session, image_id, {"tags_add": [f"t{n}"]}).status_code for n in range(4)]
    assert statuses == [200, 200, 200, 429]
    other_session, other_image = one_image(api)  # another workspace is not slowed down
    assert patch(api, other_session, other_image, {"rating": 1}).status_code == 200


def batch(api, session: str, edits: object):
    return api.patch("/api/annotations", params={"session_id": session}, json={"edits": edits})


def test_a_batch_keeps_the_best_and_rejects_the_rest_in_one_call(api):
    session = new_session(api)
    ids = [
        r["id"] for r in upload(api, session, *[(f"{n}.jpg", make_jpeg(seed=n)) for n in range(4)]).json()["accepted"]
    ]
    edits = [{"image_id": ids[0], "pick": "picked", "tags_add": ["best"]}] + [
        {"image_id": image_id, "pick": "rejected"} for image_id in ids[1:]
    ]
    response = batch(api, session, edits)
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["image_id"] for r in results] == ids
    assert [r["annotations"]["pick"] for r in results] == ["picked", "rejected", "rejected", "rejected"]
    assert [r["annotations"]["pick"] for r in listed(api, session)] == ["picked", "rejected", "rejected", "rejected"]


def test_a_batch_answers_each_edit_on_its_own(api):
    session, image_id = one_image(api)
    patch(api, session, image_id, {"rating": 2})
    gone = "0" * 32  # deleted meanwhile, or never there: that edit alone is 404
    results = batch(
        api,
        session,
        [{"image_id": image_id, "rating": 5, "expected_version": 0}, {"image_id": gone, "pick": "rejected"}],
    ).json()["results"]
    assert results[0]["status"] == 409 and results[0]["current"]["rating"] == 2
    assert results[1] == {"image_id": gone, "status": 404, "detail": "no such image in this workspace"}


def test_another_workspaces_images_are_404_in_a_batch(api):
    _, image_id = one_image(api)
    stranger = new_session(api)
    (result,) = batch(api, stranger, [{"image_id": image_id, "pick": "picked"}]).json()["results"]
    assert result["status"] == 404 and "annotations" not in result


@pytest.mark.parametrize(
    ("edits", "status", "words"),
    [
        ([], 400, "empty"),
        ("all", 400, "edits"),
        ([{"pick": "picked"}], 400, "image_id"),
        ([{"image_id": "a" * 32, "pick": "maybe"}], 422, "edit 1"),
        ([{"image_id": "a" * 32, "rating": 1}, {"image_id": "a" * 32, "rating": 2}], 400, "twice"),
        ([{"image_id": f"{n:032x}", "pick": "picked"} for n in range(MAX_BATCH_EDITS + 1)], 413, str(MAX_BATCH_EDITS)),
    ],
)
def test_a_bad_batch_is_refused_whole_with_the_edit_named(api, edits, status, words):
    session, _ = one_image(api)
    response = batch(api, session, edits)
    assert response.status_code == status and words in response.json()["detail"]
    assert listed(api, session)[0]["annotations"]["version"] == 0  # nothing of it applied


def test_a_batch_body_over_its_limit_is_413_and_read_no_further(api):
    session, image_id = one_image(api)
    edits = [{"image_id": image_id, "note": "n" * 1000}]
    body = json.dumps({"edits": edits, "padding": " " * MAX_BATCH_BODY_BYTES}).encode()
    response = api.patch(
        "/api/annotations", params={"session_id": session}, content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413 and "1024 KiB of JSON" in response.json()["detail"]
    assert listed(api, session)[0]["annotations"]["version"] == 0


def test_a_batch_costs_one_edit_per_ten_and_is_refused_whole_over_the_rate(api, monkeypatch):
    monkeypatch.setattr(annotation_limiter, "burst", 3)
    monkeypatch.setattr(annotation_limiter, "rate", 0.001)
    session = new_session(api)
    ids = [
        r["id"] for r in upload(api, session, *[(f"{n}.jpg", make_jpeg(seed=n)) for n in range(25)]).json()["accepted"]
    ]
    assert batch(api, session, [{"image_id": i, "pick": "rejected"} for i in ids]).status_code == 200  # 3 of 3
    refused = batch(api, session, [{"image_id": ids[0], "pick": None}])
    assert refused.status_code == 429 and refused.headers["Retry-After"]
    assert all(r["annotations"]["pick"] == "rejected" for r in listed(api, session))


def test_listed_records_carry_their_annotations(api):
    session, image_id = one_image(api)
    upload(api, session, ("b.jpg", make_jpeg(seed=4)))
    stored = patch(api, session, image_id, {"tags_add": ["keep"], "rating": 5}).json()
    records = listed(api, session)
    assert records[0]["annotations"] == stored
    assert records[1]["annotations"]["tags"] == [] and records[1]["annotations"]["version"] == 0


def test_workspace_annotations_and_tag_counts(api):
    session, first = one_image(api)
    second = upload(api, session, ("b.jpg", make_jpeg(seed=4))).json()["accepted"][0]["id"]
    patch(api, session, first, {"tags_add": ["keep", "blurry"]})
    patch(api, session, second, {"tags_add": ["keep"]})
    body = api.get("/api/annotations", params={"session_id": session}).json()
    assert set(body["images"]) == {first, second}
    assert body["tags"] == [{"tag": "keep", "count": 2}, {"tag": "blurry", "count": 1}]
    assert api.get("/api/annotations", params={"session_id": new_session(api)}).json() == {"images": {}, "tags": []}


def test_annotations_are_columns_of_the_csv_export(api):
    session, image_id = one_image(api)
    patch(api, session, image_id, {"tags_add": ["keep", "a, b"], "rating": 3, "note": "line 1\nline 2"})
    response = api.get("/api/features", params={"session_id": session, "groups": "basic", "format": "csv"})
    assert response.status_code == 200
    reader = csv.DictReader(io.StringIO(response.text))
    rows = list(reader)
    assert list(reader.fieldnames or [])[-4:] == [
        "annotations.tags",
        "annotations.rating",
        "annotations.pick",
        "annotations.note",
    ]
    assert json.loads(rows[0]["annotations.tags"]) == ["keep", "a, b"]
    assert rows[0]["annotations.rating"] == "3" and rows[0]["annotations.note"] == "line 1\nline 2"


def test_a_scripts_patch_reaches_the_workspaces_subscribers_live(api):
    session, image_id = one_image(api)
    received: queue.Queue = queue.Queue()
    stranger = new_session(api)
    strangers: queue.Queue = queue.Queue()
    stop = bus.subscribe(session, received.put)
    stop_stranger = bus.subscribe(stranger, strangers.put)
    try:
        patch(api, session, image_id, {"tags_add": ["keep"]})
        event = received.get(timeout=5)
        while event.kind != ANNOTATION_CHANGED:
            event = received.get(timeout=5)
        assert event.data["image_id"] == image_id and event.data["annotations"]["tags"] == ["keep"]
        assert event.data["by"] == "a script"
        assert strangers.empty()
    finally:
        stop()
        stop_stranger()


def test_events_socket_shows_a_script_in_presence_and_streams_edits(api, live_server):
    session, image_id = one_image(api)
    with events_socket(live_server, session, name="Nightly job") as watcher:
        hello = json.loads(watcher.recv(timeout=10))
        assert hello["type"] == "hello" and hello["you"]["name"] == "Nightly job"
        members = api.get("/api/presence", params={"session_id": session}).json()["members"]
        assert [m["name"] for m in members] == ["Nightly job"] and members[0]["kind"] == "script"
        assert api.get("/api/presence", params={"session_id": new_session(api)}).json() == {"members": []}
        # An HTTP edit that names the script's member id carries its name.
        response = patch(api, session, image_id, {"rating": 4}, headers={"X-Darkroom-Client": hello["you"]["id"]})
        assert response.json()["updated_by"] == "Nightly job"
        change = receive_until(watcher, ANNOTATION_CHANGED)
        assert change["image_id"] == image_id and change["annotations"]["rating"] == 4
        watcher.send(json.dumps({"type": "annotate", "image_id": image_id, "patch": {"tags_add": ["ws"]}}))
        assert receive_until(watcher, "annotated")["annotations"]["tags"] == ["ws"]
        watcher.send(json.dumps({"type": "rename", "name": "Renamed\x00 job"}))
        assert receive_until(watcher, PRESENCE_CHANGED)["members"][0]["name"] == "Renamed job"
        watcher.send(json.dumps({"type": "annotate", "image_id": "0" * 32, "patch": {"rating": 1}}))
        error = receive_until(watcher, "error")
        assert error["status"] == 404
        watcher.send(json.dumps({"type": "ping"}))
        assert receive_until(watcher, "pong") == {"type": "pong"}
    # A script stays listed for a minute after it disconnects ("seen in the last minute").
    names = [m["name"] for m in api.get("/api/presence", params={"session_id": session}).json()["members"]]
    assert names == ["Renamed job"]


def test_one_scripts_150_sockets_are_one_presence_member(api, live_server, configure):
    configure(trusted_proxies="127.0.0.1/32")  # so that X-Forwarded-For can name a second script
    session = new_session(api)
    script = {"X-Forwarded-For": "203.0.113.7"}
    with contextlib.ExitStack() as sockets:
        ids = set()
        for index in range(150):  # events and upload sockets, all open at once
            path = "events" if index % 2 else "upload"
            ws = sockets.enter_context(
                connect(
                    f"{live_server.ws_url}/api/ws/{path}?session_id={session}",
                    compression=None,
                    additional_headers=script,
                )
            )
            first = json.loads(ws.recv(timeout=10))
            assert first["type"] == ("hello" if path == "events" else "ready"), first
            if path == "events":
                ids.add(first["you"]["id"])
        members = api.get("/api/presence", params={"session_id": session}).json()["members"]
        assert len(ids) == 1 and [m["id"] for m in members] == list(ids)
        with connect(
            f"{live_server.ws_url}/api/ws/events?session_id={session}",
            compression=None,
            additional_headers={"X-Forwarded-For": "198.51.100.1"},
        ) as other:
            assert json.loads(other.recv(timeout=10))["you"]["id"] not in ids  # another script is another
            assert len(api.get("/api/presence", params={"session_id": session}).json()["members"]) == 2


def test_events_socket_needs_a_session(live_server):
    from websockets.exceptions import ConnectionClosed, InvalidStatus

    with (
        pytest.raises((InvalidStatus, ConnectionClosed)),
        connect(f"{live_server.ws_url}/api/ws/events", compression=None) as ws,
    ):
        ws.recv(timeout=5)


def test_workspace_zip_holds_annotations_json_beside_the_originals(api):
    session, image_id = one_image(api)
    upload(api, session, ("b.jpg", make_jpeg(seed=4)))
    patch(api, session, image_id, {"tags_add": ["keep"], "rating": 5, "note": "ok"})
    response = api.get("/api/images/archive", params={"session_id": session})
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    assert sorted(archive.namelist()) == ["a.jpg", "annotations.json", "b.jpg"]
    notes = json.loads(archive.read("annotations.json"))
    assert [(n["file"], n["id"], n["tags"], n["rating"], n["note"]) for n in notes] == [
        ("a.jpg", image_id, ["keep"], 5, "ok")
    ]


def test_a_page_of_another_site_cannot_patch(api):
    session, image_id = one_image(api)
    response = patch(api, session, image_id, {"tags_add": ["x"]}, headers={"Origin": "https://evil.example"})
    assert response.status_code == 403
    assert api.get(url(image_id), params={"session_id": session}).json()["version"] == 0


def test_lone_surrogates_and_deep_nesting_are_client_errors_not_server_errors(api):
    session, image_id = one_image(api)
    surrogate = '{"note": "a\\ud800b", "tags_add": ["x\\udc00"]}'
    response = api.patch(url(image_id), params={"session_id": session}, content=surrogate)
    assert response.status_code == 200, response.text
    assert response.json()["note"] == "ab" and response.json()["tags"] == ["x"]
    deep = api.patch(url(image_id), params={"session_id": session}, content="[" * 30_000)
    assert deep.status_code == 400 and "not valid JSON" in deep.json()["detail"]


def test_events_socket_of_a_workspace_that_does_not_exist_is_refused(live_server):
    from websockets.exceptions import InvalidStatus

    with pytest.raises(InvalidStatus):
        events_socket(live_server, "99999999-9999-4999-8999-999999999999")
