"""The multipart reader's limits over real HTTP: every part counts, header blocks are capped,
``filename*`` is ignored, and a body split anywhere reads the same."""

from __future__ import annotations

import httpx

from core.api.multipart import MAX_OTHER_PARTS, MAX_PART_HEADER_BYTES
from core.config import MiB
from tests.helpers import listed, make_jpeg, new_session, raw_post

BOUNDARY = "darkroomboundary"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"


def part(disposition: str, data: bytes = b"", *extra_headers: str) -> bytes:
    headers = "".join(f"{header}\r\n" for header in (f"Content-Disposition: {disposition}", *extra_headers))
    return f"--{BOUNDARY}\r\n{headers}\r\n".encode() + data + b"\r\n"


def body(*parts: bytes) -> bytes:
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def post(api: httpx.Client, session: str, content: bytes | list[bytes]) -> httpx.Response:
    return api.post(
        "/api/images",
        params={"session_id": session},
        headers={"Content-Type": CONTENT_TYPE},
        content=iter(content) if isinstance(content, list) else content,
    )


def test_20_mib_of_tiny_parts_with_another_field_name_is_refused_early_with_413(api, live_server):
    session = new_session(api)
    tiny = part('form-data; name="other"', b"a")
    total = 20 * MiB
    chunk = tiny * (256 * 1024 // len(tiny))
    status, answer, sent = raw_post(
        live_server.port, f"/api/images?session_id={session}", {"Content-Type": CONTENT_TYPE}, total, chunk
    )
    assert status == 413
    assert f"at most {MAX_OTHER_PARTS} form fields" in answer.decode()
    assert "'files'" in answer.decode()
    assert sent < total / 2
    assert listed(api, session) == []


def test_a_few_form_fields_beside_the_files_are_fine(api):
    session = new_session(api)
    fields = [part(f'form-data; name="note{i}"', b"hello") for i in range(MAX_OTHER_PARTS)]
    photo = part('form-data; name="files"; filename="a.jpg"', make_jpeg(seed=1), "Content-Type: image/jpeg")
    response = post(api, session, body(*fields, photo))
    assert response.status_code == 200, response.text
    assert [r["filename"] for r in response.json()["accepted"]] == ["a.jpg"]


def test_one_form_field_too_many_is_413_and_nothing_is_stored(api):
    session = new_session(api)
    photo = part('form-data; name="files"; filename="a.jpg"', make_jpeg(seed=2))
    fields = [part(f'form-data; name="note{i}"', b"hello") for i in range(MAX_OTHER_PARTS + 1)]
    response = post(api, session, body(photo, *fields))
    assert response.status_code == 413
    assert "form fields" in response.json()["detail"] and "nothing was stored" in response.json()["detail"]
    assert listed(api, session) == []


def test_parts_without_a_name_count_too(api):
    session = new_session(api)
    response = post(api, session, body(*[part("form-data", b"x") for _ in range(MAX_OTHER_PARTS + 1)]))
    assert response.status_code == 413


def test_files_over_the_per_request_limit_are_413(api, configure):
    configure(max_files_per_request=3)
    session = new_session(api)
    photos = [part(f'form-data; name="files"; filename="{i}.jpg"', make_jpeg(seed=i)) for i in range(4)]
    response = post(api, session, body(*photos))
    assert response.status_code == 413
    assert "at most 3 files" in response.json()["detail"]
    assert listed(api, session) == []


def test_a_header_block_over_the_cap_is_413_with_a_plain_message(api):
    session = new_session(api)
    padding = [f"X-Padding-{i}: {'p' * 4000}" for i in range(5)]  # each line under the parser's own cap
    photo = part('form-data; name="files"; filename="a.jpg"', make_jpeg(seed=3), *padding)
    response = post(api, session, body(photo))
    assert response.status_code == 413
    assert f"headers are over {MAX_PART_HEADER_BYTES // 1024} KiB" in response.json()["detail"]
    assert listed(api, session) == []


def test_one_endless_header_line_is_refused_without_reading_the_body(api, live_server):
    session = new_session(api)
    head = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; filename="'.encode()
    total = 20 * MiB
    status, answer, sent = raw_post(
        live_server.port,
        f"/api/images?session_id={session}",
        {"Content-Type": CONTENT_TYPE},
        total,
        head + b"a" * (64 * 1024 - len(head)),
    )
    assert status in (400, 413)
    assert "header" in answer.decode() and "<" not in answer.decode()
    assert sent < total / 2


def test_filename_star_is_ignored_and_filename_is_used(api):
    session = new_session(api)
    disposition = 'form-data; name="files"; filename="plain.jpg"; filename*=UTF-8\'\'other%20name.jpg'
    response = post(api, session, body(part(disposition, make_jpeg(seed=4))))
    assert response.status_code == 200, response.text
    assert [r["filename"] for r in response.json()["accepted"]] == ["plain.jpg"]


def test_a_part_with_only_filename_star_is_a_file_without_a_name(api):
    session = new_session(api)
    disposition = "form-data; name=\"files\"; filename*=UTF-8''evil%0D%0A.jpg"
    response = post(api, session, body(part(disposition, make_jpeg(seed=5))))
    assert response.status_code == 200, response.text
    assert "evil" not in response.json()["accepted"][0]["filename"]


def test_a_body_split_at_every_few_bytes_reads_the_same(api):
    session = new_session(api)
    photos = {f"{i}.jpg": make_jpeg(seed=10 + i) for i in range(3)}
    payload = body(*[part(f'form-data; name="files"; filename="{name}"', data) for name, data in photos.items()])
    pieces = [payload[i : i + 7] for i in range(0, len(payload), 7)]
    response = post(api, session, pieces)
    assert response.status_code == 200, response.text
    stored = {r["filename"]: r["id"] for r in listed(api, session)}
    assert set(stored) == set(photos)
    for name, data in photos.items():
        assert api.get(f"/api/images/{stored[name]}", params={"session_id": session}).content == data
