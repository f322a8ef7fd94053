"""The page's own HTTP routes: the RAM-only upload behind the drop zone, thumbnails and previews.

Each is addressed by the page's resource token (``ui.session``), never by the session id, and
answers 404 once the page is gone. Bytes go from the request stream into the session store and
back out of RAM: nothing here touches the disk.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from core import data_service
from core.api.data_input import receive_files
from core.api.models import UploadResult
from core.errors import DarkroomError, NotFound
from core.sessions import session_scope
from ui.session import client_for_token, session_for_token

UPLOAD_PATH = "/_darkroom/upload/{token}"
THUMBNAIL_PATH = "/_darkroom/thumbnail/{token}/{image_id}"
PREVIEW_PATH = "/_darkroom/preview/{token}/{image_id}"
ORIGINAL_PATH = "/_darkroom/original/{token}/{image_id}"
ARCHIVE_PATH = "/_darkroom/archive/{token}"
WS_UPLOAD_PATH = "/_darkroom/ws/upload/{token}"
PREVIEW_SIZE = 1280

# client id -> what shows that page the outcome of its uploads (set by the workspace page)
upload_listeners: dict[str, Callable[[data_service.UploadReport | None, DarkroomError | None], None]] = {}


def _session(token: str) -> str:
    session_id = session_for_token(token)
    if session_id is None:
        raise NotFound("this page is no longer open; reload it to get your workspace back")
    return session_id


def _image(body: bytes, mime: str) -> Response:
    # The URL names a fixed image of a page that lives at most as long as the tab.
    headers = {"X-Content-Type-Options": "nosniff", "Cache-Control": "private, max-age=3600"}
    return Response(body, media_type=mime, headers=headers)


def install_routes(app: FastAPI) -> None:
    @app.post(UPLOAD_PATH, include_in_schema=False)
    async def upload(token: str, request: Request) -> JSONResponse:
        """The drop zone's target: photos and ZIP archives, streamed into the page's session with
        the API's limits (NiceGUI's stock route would spool files over 1 MiB to disk)."""
        with session_scope(_session(token)):
            client_id = client_for_token(token)
            listener = upload_listeners.get(client_id) if client_id else None
            try:
                report = await receive_files(request, archives=True, progressive=True)
            except DarkroomError as exc:
                if listener:
                    listener(None, exc)
                raise
        if listener:
            listener(report, None)
        return JSONResponse(UploadResult.of(report).model_dump(), status_code=report.status_code)

    @app.get(THUMBNAIL_PATH, include_in_schema=False)
    async def thumbnail(token: str, image_id: str) -> Response:
        with session_scope(_session(token)):
            record, body = await asyncio.to_thread(data_service.load_thumbnail, image_id)
        return _image(body, record.thumbnail_mime)

    @app.get(PREVIEW_PATH, include_in_schema=False)
    async def preview(token: str, image_id: str) -> Response:
        with session_scope(_session(token)):
            body, mime = await asyncio.to_thread(data_service.load_preview, image_id, PREVIEW_SIZE)
        return _image(body, mime)
