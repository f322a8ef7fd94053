"""The page's own routes: the RAM-only uploads behind the drop zone (WebSocket, and HTTP as the
fallback), thumbnails, previews, originals and the *Download all* archive.

Each is addressed by the page's resource token (``ui.session``), never by the session id, and
answers 404 once the page is gone. ``PageSession``, an ASGI middleware, is these routes' one session
setter: it finds the session behind the token and holds it for the whole request (a streamed
archive included), as ``SessionScope`` does for the API. Bytes go from the request stream into the session store and
back out of RAM: nothing here touches the disk.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from fastapi import FastAPI, Request, Response, WebSocket
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from core import data_service, formats, uploads, workspace
from core.api.data_input import content_disposition, receive_files, upload_response
from core.api.errors import refuse
from core.api.export import archive_response
from core.api.models import UploadResult
from core.api.origin import check_same_site
from core.api.session_middleware import route_path
from core.api.ws_upload import serve_upload_socket
from core.errors import BadRequest, DarkroomError, NotFound
from core.sessions import session_scope
from ui.session import client_for_token, session_for_token

PAGE_PREFIX = "/_darkroom/"
UPLOAD_PATH = "/_darkroom/upload/{token}"
THUMBNAIL_PATH = "/_darkroom/thumbnail/{token}/{image_id}"
PREVIEW_PATH = "/_darkroom/preview/{token}/{image_id}"
ORIGINAL_PATH = "/_darkroom/original/{token}/{image_id}"
ARCHIVE_PATH = "/_darkroom/archive/{token}"
WS_UPLOAD_PATH = "/_darkroom/ws/upload/{token}"
PREVIEW_SIZE = 1280
# The longest sides a preview is made at (``?size=`` is rounded up to one, the largest at most): a
# page asks for its screen's size, and each image caches at most these few previews in its session.
PREVIEW_SIZES = (640, 960, 1280, 1600, 2048)

# client id -> what shows that page the outcome of its uploads (set by the workspace page)
upload_listeners: dict[str, Callable[[uploads.UploadReport | None, DarkroomError | None], None]] = {}


PAGE_GONE = "this page is no longer open; reload it to get your workspace back"


def token_in(path: str) -> str | None:
    """The page token of a path under ``PAGE_PREFIX``: ``<kind>/<token>[/...]``, or
    ``ws/upload/<token>`` for the socket."""
    parts = path[len(PAGE_PREFIX) :].split("/", 3)
    if parts[0] == "ws":
        parts = parts[1:]
    return parts[1] if len(parts) > 1 and parts[1] else None


class PageSession:
    """ASGI middleware: every HTTP request and WebSocket under ``PAGE_PREFIX`` runs in the session of
    the page behind its token, entered once around the whole request. A write sent by another
    site's page gets 403 before the token is even looked at, and a token whose page is gone 404
    (a socket: close 1008 for either), before any route runs."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path = route_path(scope)
        if not path.startswith(PAGE_PREFIX):
            await self.app(scope, receive, send)
            return
        try:
            check_same_site(HTTPConnection(scope))
            token = token_in(path)
            session_id = session_for_token(token) if token else None
            if session_id is None:
                raise NotFound(PAGE_GONE)
        except DarkroomError as exc:
            await refuse(exc, scope, receive, send)
            return
        with session_scope(session_id):
            await self.app(scope, receive, send)


def _report_to(token: str) -> Callable[[uploads.UploadReport], None] | None:
    """What shows the page behind ``token`` each file's outcome (refusals, duplicates, skips)."""
    client_id = client_for_token(token)
    listener = upload_listeners.get(client_id) if client_id else None
    return (lambda report: listener(report, None)) if listener else None


def fit_preview_size(raw: object) -> int:
    """The smallest of ``PREVIEW_SIZES`` at least ``raw`` pixels (a whole number, as text or int),
    the largest for more. Raises BadRequest for anything else."""
    text = str(raw)
    if not (isinstance(raw, int | str) and text.isdecimal() and 0 < len(text) <= 6 and int(text) > 0):
        raise BadRequest("'size' must be a whole number of pixels")
    wanted = int(text)
    return next((fitted for fitted in PREVIEW_SIZES if fitted >= wanted), PREVIEW_SIZES[-1])


def _image(body: bytes, mime: str) -> Response:
    # The URL names a fixed image of a page that lives at most as long as the tab.
    headers = {"X-Content-Type-Options": "nosniff", "Cache-Control": "private, max-age=3600"}
    return Response(body, media_type=mime, headers=headers)


def install_routes(app: FastAPI) -> None:
    app.add_middleware(PageSession)

    @app.post(UPLOAD_PATH, include_in_schema=False)
    async def upload(token: str, request: Request) -> JSONResponse:
        """The drop zone's target: photos and ZIP archives, streamed into the page's session with
        the API's limits and shares (NiceGUI's stock route would spool files over 1 MiB to disk):
        one of the address's upload slots, the budget for bytes in flight, the minimum rate."""
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
        # ``parts``: each part's name as the server keeps it, in the order sent, so that the drop
        # zone ties every outcome to its file without cleaning names itself
        return upload_response({**UploadResult.body(report), "parts": report.parts}, report)

    @app.get(THUMBNAIL_PATH, include_in_schema=False)
    async def thumbnail(token: str, image_id: str) -> Response:
        record, body = await data_service.run_store(workspace.load_thumbnail, image_id)
        return _image(body, record.thumbnail_mime)

    @app.get(PREVIEW_PATH, include_in_schema=False)
    async def preview(token: str, image_id: str, size: str | None = None) -> Response:
        """The upright preview, 1280 px or ``?size=`` (the culling view's screen) rounded up to
        one of ``PREVIEW_SIZES``."""
        fitted = PREVIEW_SIZE if size is None else fit_preview_size(size)
        body, mime = await asyncio.to_thread(workspace.load_preview, image_id, fitted)
        return _image(body, mime)

    @app.websocket(WS_UPLOAD_PATH)
    async def upload_socket(websocket: WebSocket, token: str) -> None:
        """The drop zone's stream: per file a JSON header, then binary chunks (the protocol of
        ``/api/ws/upload``, ZIP archives unpacked too), each file stored as soon as it passes."""
        await serve_upload_socket(websocket, archives=True, on_report=_report_to(token), thumbnails=True)

    @app.get(ORIGINAL_PATH, include_in_schema=False)
    async def original(token: str, image_id: str) -> Response:
        """The detail's download button: the original bytes, as uploaded."""
        record, body = await data_service.run_store(workspace.load_image, image_id)
        headers = {
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "private, no-store",
            "Content-Disposition": content_disposition(record.filename.rsplit("/", 1)[-1], "attachment"),
        }
        return Response(body, media_type=formats.get(record.format).mime, headers=headers)

    @app.get(ARCHIVE_PATH, include_in_schema=False)
    async def archive(token: str) -> StreamingResponse:
        """*Download all*: the session's originals as one ZIP, streamed from RAM."""
        return await archive_response()
