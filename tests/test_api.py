"""Every endpoint of the data API and its errors, over real HTTP (uvicorn on a free port)."""

from __future__ import annotations

import json
import time
from urllib.parse import unquote

import pytest

from core import data_service, workspace
from tests.helpers import LiveServer, hostile, listed, make_jpeg, new_session, raw_post, upload, upload_zip


def test_new_sessions_are_distinct_canonical_uuid4(api):
    ids = {new_session(api) for _ in range(5)}
    assert len(ids) == 5
    for session_id in ids:
        assert session_id == session_id.lower() and session_id[14] == "4"


@pytest.mark.parametrize(
    "bad",
    [
        "not-a-uuid",
        "3F2B8C1E-9A4D-4C7E-8F00-1234567890AB",  # upper case is not canonical
        "3f2b8c1e9a4d4c7e8f001234567890ab",  # no hyphens
        "{3f2b8c1e-9a4d-4c7e-8f00-1234567890ab}",
        "3f2b8c1e-9a4d-1c7e-8f00-1234567890ab",  # version 1
        "../../etc/passwd",
        "",
    ],
)
def test_malformed_session_id_is_400_and_never_echoed(api, bad):
    for kwargs in ({"params": {"session_id": bad}}, {"headers": {"X-Session-Id": bad}}):
        response = api.get("/api/images", **kwargs)
        assert response.status_code == 400, (bad, response.text)
        assert "invalid session id" in response.json()["detail"]
        if bad:
            assert bad not in response.text


def test_header_and_query_are_equivalent_and_must_agree(api):
    session = new_session(api)
    upload(api, session, ("a.jpg", make_jpeg()))
    by_header = api.get("/api/images", headers={"X-Session-Id": session}).json()
    assert by_header == listed(api, session)
    other = new_session(api)
    response = api.get("/api/images", params={"session_id": session}, headers={"X-Session-Id": other})
    assert response.status_code == 400 and "disagree" in response.json()["detail"]


def test_upload_many_files_lists_records_with_all_fields(api):
    session = new_session(api)
    response = upload(api, session, ("a.jpg", make_jpeg(seed=1)), ("b.jpg", make_jpeg(seed=2)))
    assert response.status_code == 200
    body = response.json()
    assert [r["filename"] for r in body["accepted"]] == ["a.jpg", "b.jpg"]
    assert body["rejected"] == [] and body["duplicates"] == []
    records = listed(api, session)
    fields = {"id", "filename", "format", "width", "height", "size_bytes", "sha256", "uploaded_at"}
    assert [{k: r[k] for k in fields} for r in records] == body["accepted"]
    assert set(records[0]) == fields | {"annotations"}  # the listing carries each image's annotations
    assert records[0]["annotations"]["tags"] == [] and records[0]["annotations"]["version"] == 0
    assert (records[0]["width"], records[0]["height"], records[0]["format"]) == (64, 48, "JPEG")


def test_mixed_upload_is_200_with_per_file_rejections(api):
    session = new_session(api)
    response = upload(api, session, ("good.jpg", make_jpeg()), ("bad.jpg", hostile("not_an_image.jpg")))
    assert response.status_code == 200
    body = response.json()
    assert len(body["accepted"]) == 1
    assert body["rejected"] == [{"filename": "bad.jpg", "status": 415, "detail": body["rejected"][0]["detail"]}]


def test_all_rejected_gets_status_of_first_rejection(api):
    session = new_session(api)
    response = upload(api, session, ("t.jpg", hostile("truncated.jpg")), ("e.jpg", hostile("empty.jpg")))
    assert response.status_code == 422
    assert response.json()["detail"].startswith("t.jpg: ")


def test_reupload_of_same_file_is_reported_not_stored(api):
    session = new_session(api)
    first = upload(api, session, ("a.jpg", make_jpeg())).json()["accepted"][0]
    again = upload(api, session, ("a.jpg", make_jpeg()))
    assert again.status_code == 200
    body = again.json()
    assert body["accepted"] == [] and body["duplicates"] == [{"filename": "a.jpg", "existing": first}]
    assert len(listed(api, session)) == 1


def test_get_image_returns_original_bytes_with_safe_headers(api):
    session = new_session(api)
    data = hostile("ok_photo.png")
    name = 'ünïcode "quoted"; name.png'
    record = upload(api, session, (name, data)).json()["accepted"][0]
    response = api.get(f"/api/images/{record['id']}", params={"session_id": session})
    assert response.status_code == 200
    assert response.content == data
    assert response.headers["content-type"] == "image/png"
    assert response.headers["x-content-type-options"] == "nosniff"
    disposition = response.headers["content-disposition"]
    assert disposition.startswith('inline; filename="')
    assert unquote(disposition.split("filename*=UTF-8''")[1]) == name
    fallback = disposition.split('filename="')[1].split('";')[0]
    assert fallback.isascii() and '"' not in fallback


def test_thumbnail_is_small_and_typed(api):
    session = new_session(api)
    record = upload(api, session, ("big.jpg", make_jpeg(1200, 900))).json()["accepted"][0]
    response = api.get(f"/api/images/{record['id']}/thumbnail", params={"session_id": session})
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/jpeg"
    from io import BytesIO

    from PIL import Image

    assert max(Image.open(BytesIO(response.content)).size) == 256


def test_another_sessions_image_is_the_same_404_as_a_missing_one(api):
    owner, other = new_session(api), new_session(api)
    record = upload(api, owner, ("a.jpg", make_jpeg())).json()["accepted"][0]
    missing = api.get(f"/api/images/{'0' * 32}", params={"session_id": other})
    for path in (f"/api/images/{record['id']}", f"/api/images/{record['id']}/thumbnail"):
        response = api.get(path, params={"session_id": other})
        assert response.status_code == 404
        assert response.json() == missing.json()
        assert record["filename"] not in response.text
    assert api.delete(f"/api/images/{record['id']}", params={"session_id": other}).status_code == 404
    assert api.get("/api/images/not-an-id", params={"session_id": other}).status_code == 404
    assert len(listed(api, owner)) == 1


def test_delete_image_then_it_is_gone(api):
    session = new_session(api)
    record = upload(api, session, ("a.jpg", make_jpeg())).json()["accepted"][0]
    response = api.delete(f"/api/images/{record['id']}", params={"session_id": session})
    assert response.status_code == 204
    assert listed(api, session) == []
    assert api.get(f"/api/images/{record['id']}", params={"session_id": session}).status_code == 404


def test_clear_session_empties_only_that_session(api):
    mine, theirs = new_session(api), new_session(api)
    upload(api, mine, ("a.jpg", make_jpeg(seed=1)), ("b.jpg", make_jpeg(seed=2)))
    upload(api, theirs, ("c.jpg", make_jpeg(seed=3)))
    assert api.delete("/api/session", params={"session_id": mine}).status_code == 204
    assert listed(api, mine) == []
    assert len(listed(api, theirs)) == 1
    assert workspace.totals().bytes_held > 0


def test_clear_without_session_is_refused(api):
    response = api.delete("/api/session")
    assert response.status_code == 400


def test_zip_as_raw_application_zip_body(api):
    session = new_session(api)
    response = api.post(
        "/api/images/zip",
        params={"session_id": session},
        content=hostile("zip_good.zip"),
        headers={"Content-Type": "application/zip"},
    )
    assert response.status_code == 200
    body = response.json()
    assert len(body["accepted"]) == 3
    assert body["duplicates"][0]["filename"] == "c.jpg"  # same bytes as photos/a.jpg: reported


def test_zip_with_only_non_images_is_415_with_skipped_list(api):
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("notes.txt", "hello")
    response = upload_zip(api, new_session(api), buffer.getvalue())
    assert response.status_code == 415
    assert "no supported images" in response.json()["detail"]


def test_non_multipart_body_is_400(api):
    response = api.post(
        "/api/images", params={"session_id": new_session(api)}, content=b"raw", headers={"Content-Type": "image/jpeg"}
    )
    assert response.status_code == 400
    assert "multipart/form-data" in response.json()["detail"]


def test_multipart_without_files_part_is_400(api):
    response = api.post("/api/images", params={"session_id": new_session(api)}, files={"wrong": ("a.jpg", make_jpeg())})
    assert response.status_code == 400
    assert "'files'" in response.json()["detail"]


def test_zip_with_wrong_content_type_is_400(api):
    response = api.post(
        "/api/images/zip", content=b"x", headers={"Content-Type": "text/plain"}, params={"session_id": new_session(api)}
    )
    assert response.status_code == 400


def test_too_many_files_in_one_request_is_413_and_nothing_stored(api, configure):
    configure(max_files_per_request=2)
    session = new_session(api)
    response = upload(api, session, *[(f"{i}.jpg", make_jpeg(seed=i)) for i in range(3)])
    assert response.status_code == 413
    assert listed(api, session) == []


def _held_for(data: bytes) -> int:
    """Bytes a session holds for one upload: original, thumbnail and record."""
    from core.config import Settings
    from core.ingest import ingest_image
    from core.storage.base import RECORD_OVERHEAD_BYTES

    item = ingest_image(data, "x.jpg", Settings())
    return len(item.data) + len(item.thumbnail) + RECORD_OVERHEAD_BYTES


def test_session_quota_gives_413_and_keeps_what_fits(api, configure):
    configure(session_quota_bytes=_held_for(make_jpeg(seed=1)) + 100)
    session = new_session(api)
    response = upload(api, session, ("a.jpg", make_jpeg(seed=1)), ("b.jpg", make_jpeg(seed=2)))
    assert response.status_code == 200
    body = response.json()
    assert [r["filename"] for r in body["accepted"]] == ["a.jpg"]
    assert body["rejected"][0]["status"] == 413 and "workspace is full" in body["rejected"][0]["detail"]
    other = new_session(api)  # another session has its own quota
    assert upload(api, other, ("b.jpg", make_jpeg(seed=2))).status_code == 200


def test_memory_cap_gives_507(api, configure):
    configure(memory_cap_bytes=_held_for(make_jpeg(seed=1)) + 100)
    first, second = new_session(api), new_session(api)
    assert upload(api, first, ("a.jpg", make_jpeg(seed=1))).status_code == 200
    response = upload(api, second, ("b.jpg", make_jpeg(seed=2)))
    assert response.status_code == 507
    assert "memory" in response.json()["detail"]
    api.delete("/api/session", params={"session_id": first})
    assert upload(api, second, ("b.jpg", make_jpeg(seed=2))).status_code == 200


def test_idle_sessions_expire_with_their_images(api, configure):
    configure(session_idle_seconds=0.2)
    session = new_session(api)
    upload(api, session, ("a.jpg", make_jpeg()))
    assert workspace.expire_idle_sessions(now=time.monotonic() + 0.5) == 1
    assert listed(api, session) == []
    assert workspace.totals().bytes_held == 0


def test_background_sweeper_expires_idle_sessions(configure):
    import httpx

    configure(session_idle_seconds=0.3, sweep_interval_seconds=0.1)
    server = LiveServer()  # its sweeper starts with the short interval
    server.start()
    try:
        with httpx.Client(base_url=server.url) as client:
            session = new_session(client)
            upload(client, session, ("a.jpg", make_jpeg()))
            deadline = time.monotonic() + 10
            while workspace.totals().images and time.monotonic() < deadline:
                time.sleep(0.05)
            assert workspace.totals().images == 0
            assert listed(client, session) == []
    finally:
        server.stop()


def test_health_reports_totals_and_no_ids(api):
    session = new_session(api)
    upload(api, session, ("a.jpg", make_jpeg()))
    body = api.get("/api/health").json()
    assert body["status"] == "ok" and body["storage"] == "memory"
    assert body["images"] >= 1 and body["sessions"] >= 1 and body["bytes_held"] > 0
    assert body["capacity_bytes"] == data_service.settings().memory_cap_bytes
    assert session not in json.dumps(body)


def test_openapi_documents_every_endpoint_with_models(api):
    spec = api.get("/openapi.json").json()
    paths = spec["paths"]
    for path in [
        "/api/sessions",
        "/api/images",
        "/api/images/zip",
        "/api/images/{image_id}",
        "/api/images/{image_id}/thumbnail",
        "/api/session",
        "/api/health",
    ]:
        assert path in paths
    schemas = spec["components"]["schemas"]
    for model in ["UploadResult", "ZipUploadResult", "ImageRecordModel", "Health", "SessionCreated"]:
        assert model in schemas


def test_legacy_fallback_uses_the_shared_folder(api, configure, tmp_path):
    settings = configure()
    response = upload(api, None, ("shared.jpg", make_jpeg()))
    assert response.status_code == 200
    record = response.json()["accepted"][0]
    assert [r["id"] for r in listed(api, None)] == [record["id"]]
    files = sorted(p.name for p in settings.legacy_dir.iterdir())
    assert files == sorted([f"{record['id']}.jpg", f"{record['id']}.json", f"{record['id']}.thumb"])
    assert api.get(f"/api/images/{record['id']}").content == make_jpeg()
    # a session never sees the shared folder, and the shared folder never sees a session
    assert listed(api, new_session(api)) == []
    assert api.delete(f"/api/images/{record['id']}").status_code == 204
    assert sorted(settings.legacy_dir.iterdir()) == []


def test_legacy_zip_upload_and_file_names_never_from_input(api, configure):
    settings = configure()
    response = upload_zip(api, None, hostile("zip_good.zip"))
    assert response.status_code == 200
    stored = [path.name for path in settings.legacy_dir.iterdir()]
    assert len(stored) == 3 * len(response.json()["accepted"]) == 9  # image, record, thumbnail each
    assert not [name for name in stored if "photos" in name or name == "c.jpg"]


def test_legacy_fallback_off_switch_gives_400(api, configure):
    configure(legacy_fallback=False)
    for response in (
        api.get("/api/images"),
        upload(api, None, ("a.jpg", make_jpeg())),
        upload_zip(api, None, hostile("zip_good.zip")),
    ):
        assert response.status_code == 400
        assert "session id is required" in response.json()["detail"]
    assert api.get("/api/health").json()["legacy_fallback"] is False


def test_oversized_file_is_413_mid_stream_without_reading_the_rest(api, live_server, configure):
    configure(max_file_bytes=2 * 1024 * 1024)
    session = new_session(api)
    boundary = "darkroomboundary"
    preamble = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="big.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()
    total = 64 * 1024 * 1024
    chunk = preamble + b"\xff" * (256 * 1024 - len(preamble))
    status, body, sent = raw_post(
        live_server.port,
        f"/api/images?session_id={session}",
        {"Content-Type": f"multipart/form-data; boundary={boundary}"},
        total,
        chunk,
    )
    assert status == 413
    assert "limit per file" in json.loads(body)["detail"]
    assert sent < total / 2  # the server answered long before the body was complete
    assert listed(api, session) == []


def test_declared_body_over_the_quota_is_413_before_reading(api, live_server, configure):
    configure(session_quota_bytes=1024 * 1024)
    session = new_session(api)
    status, body, sent = raw_post(
        live_server.port,
        f"/api/images?session_id={session}",
        {"Content-Type": "multipart/form-data; boundary=x"},
        50 * 1024 * 1024,
        b"\0" * 65536,
    )
    assert status == 413
    assert sent < 10 * 1024 * 1024
