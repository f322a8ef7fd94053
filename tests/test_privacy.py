"""Privacy invariants: no upload byte touches a file in memory mode; session ids never in logs."""

from __future__ import annotations

import io
import logging
import zipfile

import httpx
from fastapi import FastAPI, Request

from tests.helpers import LiveServer, big_jpeg, hostile, make_jpeg, new_session, upload


def test_detector_sees_starlettes_spooled_upload(watch_writes):
    """Control: the watch does catch the unnamed O_TMPFILE that request.form() spools into."""
    app = FastAPI()

    @app.post("/form")
    async def form(request: Request) -> dict:
        parsed = await request.form()
        return {"size": len(await parsed["files"].read())}

    server = LiveServer(app)
    server.start()
    try:
        with httpx.Client(base_url=server.url) as client:
            response = client.post("/form", files={"files": ("big.jpg", big_jpeg())})
        assert response.status_code == 200
    finally:
        server.stop()
    assert watch_writes, "the audit hook should have seen the spool file"


def test_no_upload_byte_is_written_to_any_file_in_memory_mode(api, watch_writes):
    session = new_session(api)
    payload = big_jpeg()
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("in/zip.jpg", make_jpeg(1400, 1000, seed=6, quality=100))
    assert upload(api, session, ("big.jpg", payload), ("small.jpg", make_jpeg())).status_code == 200
    assert (
        api.post(
            "/api/images/zip", params={"session_id": session}, files={"file": ("a.zip", archive.getvalue())}
        ).status_code
        == 200
    )
    assert (
        api.post(
            "/api/images/zip",
            params={"session_id": session},
            content=hostile("zip_good.zip"),
            headers={"Content-Type": "application/zip"},
        ).status_code
        == 200
    )
    for record in api.get("/api/images", params={"session_id": session}).json():
        api.get(f"/api/images/{record['id']}", params={"session_id": session})
        api.get(f"/api/images/{record['id']}/thumbnail", params={"session_id": session})
    assert watch_writes == []


def test_websocket_upload_writes_no_file(api, live_server, watch_writes):
    from tests.test_websocket_upload import send_file, ws_connect

    with ws_connect(live_server, new_session(api)) as ws:
        ws.recv(timeout=5)
        assert send_file(ws, "big.jpg", big_jpeg(), chunk=256 * 1024)[-1]["status"] == 200
    assert watch_writes == []


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def test_session_ids_never_appear_in_logs(live_server, configure):
    """Access lines, WebSocket lines and errors of a real server process's loggers: the id that
    was in every URL is nowhere in the output."""
    capture = _Capture()
    loggers = [logging.getLogger(name) for name in ("uvicorn.access", "uvicorn.error", "uvicorn", "core")]
    for logger in loggers:
        logger.addHandler(capture)
    try:
        with httpx.Client(base_url=live_server.url) as client:
            session = new_session(client)
            upload(client, session, ("a.jpg", make_jpeg()))
            client.get("/api/images", params={"session_id": session})
            client.get(f"/api/images/{'0' * 32}", params={"session_id": session})
            client.get("/api/images", headers={"X-Session-Id": session})
            client.get("/api/images", params={"session_id": session.upper()})  # a 400
        from tests.test_websocket_upload import ws_connect

        with ws_connect(live_server, session) as ws:
            ws.recv(timeout=5)
    finally:
        for logger in loggers:
            logger.removeHandler(capture)
    text = "\n".join(capture.lines)
    assert "/api/images" in text  # the access log did run
    assert session not in text and session.upper() not in text


def test_error_messages_never_contain_the_session_id(api):
    session = new_session(api)
    responses = [
        api.get(f"/api/images/{'0' * 32}", params={"session_id": session}),
        api.get("/api/images", params={"session_id": session.upper()}),
        upload(api, session, ("bad.jpg", b"nope")),
        api.post(
            "/api/images/zip",
            params={"session_id": session},
            content=b"PK",
            headers={"Content-Type": "application/zip"},
        ),
    ]
    for response in responses:
        assert response.status_code >= 400
        assert session not in response.text.lower()
