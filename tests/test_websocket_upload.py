"""WS /api/ws/upload: the streaming upload for scripts, limits enforced mid-stream."""

from __future__ import annotations

import io
import json
import time
import zipfile

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.helpers import hostile, listed, make_jpeg, new_session, send_file, ws_connect


def test_websocket_upload_stores_files_with_progress_and_results(api, live_server):
    session = new_session(api)
    photo = make_jpeg(800, 600, seed=1)
    with ws_connect(live_server, session) as ws:
        ready = json.loads(ws.recv(timeout=5))
        assert ready["type"] == "ready" and ready["max_file_bytes"] > 0
        messages = send_file(ws, "one.jpg", photo, chunk=len(photo) // 3 + 1)
        progress = [m for m in messages if m["type"] == "progress"]
        assert [p["received"] for p in progress][-1] == len(photo)
        assert all(p["size"] == len(photo) for p in progress)
        result = messages[-1]
        assert result["status"] == 200 and result["image"]["filename"] == "one.jpg"
        assert "thumbnail" not in result  # only the page's socket sends thumbnails; a script's protocol is text
        assert send_file(ws, "two.png", hostile("ok_photo.png"))[-1]["status"] == 200
        ws.send(json.dumps({"type": "done"}))
        summary = json.loads(ws.recv(timeout=5))
        assert summary == {"type": "summary", "accepted": 2, "rejected": 0, "duplicates": 0}
    assert [r["filename"] for r in listed(api, session)] == ["one.jpg", "two.png"]


def test_websocket_rejects_bad_files_per_file_and_keeps_going(api, live_server):
    session = new_session(api)
    with ws_connect(live_server, session) as ws:
        ws.recv(timeout=5)
        bad = send_file(ws, "t.jpg", hostile("truncated.jpg"))[-1]
        assert bad["status"] == 422 and "truncated" in bad["detail"]
        good = send_file(ws, "a.jpg", make_jpeg())[-1]
        assert good["status"] == 200
        again = send_file(ws, "a.jpg", make_jpeg())[-1]
        assert again["status"] == 200 and again["image"] is None and again["duplicate_of"]["filename"] == "a.jpg"
    assert len(listed(api, session)) == 1


def test_declared_size_over_limit_is_refused_before_sending(api, live_server, configure):
    configure(max_file_bytes=1024 * 1024, zip_max_archive_bytes=2 * 1024 * 1024)  # over both: no ZIP either
    session = new_session(api)
    with ws_connect(live_server, session) as ws:
        ws.recv(timeout=5)
        ws.send(json.dumps({"filename": "huge.jpg", "size": 5 * 1024 * 1024}))
        result = json.loads(ws.recv(timeout=5))
        assert result["type"] == "result" and result["status"] == 413
        assert send_file(ws, "ok.jpg", make_jpeg())[-1]["status"] == 200  # the socket stays usable


def test_more_bytes_than_declared_closes_mid_stream_and_stores_nothing(api, live_server):
    session = new_session(api)
    with ws_connect(live_server, session) as ws:
        ws.recv(timeout=5)
        ws.send(json.dumps({"filename": "liar.jpg", "size": 1000}))
        ws.send(b"\xff" * 800)
        assert json.loads(ws.recv(timeout=5))["type"] == "progress"
        ws.send(b"\xff" * 800)
        error = json.loads(ws.recv(timeout=5))
        assert error["type"] == "error" and error["status"] == 413
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
        assert closed.value.rcvd.code == 1009
    assert listed(api, session) == []


def test_quota_breach_over_websocket_is_413(api, live_server, configure):
    configure(session_quota_bytes=20 * 1024)
    session = new_session(api)
    with ws_connect(live_server, session) as ws:
        ws.recv(timeout=5)
        result = send_file(ws, "big.jpg", make_jpeg(400, 300, seed=9))[-1]
        assert result["status"] == 413 and "workspace is full" in result["detail"]
    assert listed(api, session) == []


def test_binary_before_header_is_a_protocol_error(api, live_server):
    with ws_connect(live_server, new_session(api)) as ws:
        ws.recv(timeout=5)
        ws.send(b"orphan bytes")
        error = json.loads(ws.recv(timeout=5))
        assert error["status"] == 400 and "without a header" in error["detail"]


def test_malformed_session_id_is_refused_at_handshake(live_server):
    with pytest.raises(InvalidStatus) as refused:
        ws_connect(live_server, "NOT-A-SESSION")
    assert 400 <= refused.value.response.status_code < 500


def test_websocket_without_session_uses_legacy_folder(api, live_server):
    with ws_connect(live_server) as ws:
        ws.recv(timeout=5)
        assert send_file(ws, "shared.jpg", make_jpeg())[-1]["status"] == 200
    assert [r["filename"] for r in listed(api, None)] == ["shared.jpg"]


def test_websocket_upload_is_isolated_per_session(api, live_server):
    mine, theirs = new_session(api), new_session(api)
    with ws_connect(live_server, mine) as ws:
        ws.recv(timeout=5)
        send_file(ws, "mine.jpg", make_jpeg())
    assert listed(api, theirs) == []


def test_server_does_not_negotiate_compression(api, live_server):
    from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

    with connect(
        f"{live_server.ws_url}/api/ws/upload?session_id={new_session(api)}",
        extensions=[ClientPerMessageDeflateFactory()],
    ) as ws:
        assert "permessage-deflate" not in (ws.response.headers.get("Sec-WebSocket-Extensions") or "")


def test_a_script_uploading_over_the_websocket_is_listed_in_presence(api, live_server):
    session = new_session(api)
    with ws_connect(live_server, session) as ws:
        ws.recv(timeout=5)
        members = api.get("/api/presence", params={"session_id": session}).json()["members"]
        assert [member["kind"] for member in members] == ["script"]
        assert api.get("/api/presence", params={"session_id": new_session(api)}).json() == {"members": []}


def test_a_sessions_sockets_together_stay_inside_its_quota_and_give_back_what_they_held(api, live_server, configure):
    from core.api.ws_upload import in_flight

    configure(session_quota_bytes=8 * 1024 * 1024)
    session = new_session(api)
    with ws_connect(live_server, session) as first, ws_connect(live_server, session) as second:
        first.recv(timeout=5)
        second.recv(timeout=5)
        first.send(json.dumps({"filename": "a.jpg", "size": 6 * 1024 * 1024}))
        first.send(b"x" * 1024)  # and then stalls
        second.send(json.dumps({"filename": "b.jpg", "size": 6 * 1024 * 1024}))
        refused = json.loads(second.recv(timeout=5))
        while refused["type"] == "progress":
            refused = json.loads(second.recv(timeout=5))
        assert refused["type"] == "result" and refused["status"] == 413 and "do not send it" in refused["detail"]
    for _ in range(100):
        if in_flight.total == 0:
            break
        time.sleep(0.05)
    assert in_flight.total == 0


def test_each_result_names_the_file_it_answers_and_whether_it_came_from_an_archive(api, archive_socket, configure):
    configure(max_file_bytes=1024 * 1024, zip_max_archive_bytes=1024 * 1024)
    session = new_session(api)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("b.jpg", make_jpeg(seed=2))
        zf.writestr("a.jpg", make_jpeg(seed=3))  # the name of the loose file before it: told apart by index
    messages = []
    with connect(f"{archive_socket.ws_url}/ws/{session}", compression=None) as ws:
        ws.recv(timeout=5)
        for name, data in [("a.jpg", make_jpeg(seed=1)), ("photos.zip", archive.getvalue())]:
            ws.send(json.dumps({"filename": name, "size": len(data)}))
            ws.send(data)
        ws.send(json.dumps({"filename": "huge.jpg", "size": 5 * 1024 * 1024}))  # refused from its header
        ws.send(json.dumps({"filename": "d.jpg", "size": len(make_jpeg(seed=4))}))
        ws.send(make_jpeg(seed=4))
        ws.send(json.dumps({"type": "done"}))
        while (message := json.loads(ws.recv(timeout=20)))["type"] != "summary":
            messages.append(message)
    results = sorted((m["file"], m["member"], m["filename"], m["status"]) for m in messages if m["type"] == "result")
    assert results == [
        (0, False, "a.jpg", 200),
        (1, True, "a.jpg", 200),
        (1, True, "b.jpg", 200),
        (2, False, "huge.jpg", 413),
        (3, False, "d.jpg", 200),
    ]
