"""Wires the API into a FastAPI app: routers, error handlers, log redaction, the idle sweeper.

``install(app)`` is used by the NiceGUI entry point (``ui/main.py``) on NiceGUI's own FastAPI
app; ``create_app()`` gives a bare API app for tests and benchmarks.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import gc
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from core import data_service, workspace
from core.api import annotations as annotations_api
from core.api import data_input
from core.api import export as export_api
from core.api import features as features_api
from core.api import live as live_api
from core.api.errors import error_response
from core.api.logs import install_log_redaction
from core.api.session_middleware import SessionScope, document_session
from core.clients import ClientScope
from core.errors import BadRequest, DarkroomError, InternalError
from core.sandbox import shutdown_decode_pool

log = logging.getLogger(__name__)
LONG_WORK_THREADS = 64


async def _darkroom_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DarkroomError)
    return error_response(exc)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = "; ".join(
        f"{'.'.join(str(p) for p in error.get('loc', ()) if p != 'body')}: {error.get('msg', 'invalid')}"
        for error in exc.errors()
    )
    return error_response(BadRequest(f"malformed request: {problems}"))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    error = DarkroomError(str(exc.detail))
    error.status_code = exc.status_code  # Starlette's own 404 and 405, in Darkroom's shape
    return error_response(error, exc.headers)


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(InternalError("internal error; the request was not completed"))


async def sweep_idle_sessions_forever() -> None:
    """Delete idle sessions every ``sweep_interval_seconds``."""
    while True:
        await asyncio.sleep(data_service.settings().sweep_interval_seconds)
        try:
            await data_service.in_store_thread(workspace.expire_idle_sessions)
        except Exception:  # the sweeper must outlive one bad round
            log.exception("idle-session sweep failed")


# One sweeper per server loop (tests may run several servers in one process).
_sweepers: dict[asyncio.AbstractEventLoop, asyncio.Task[None]] = {}
_warmups: dict[asyncio.AbstractEventLoop, asyncio.Task[int]] = {}


async def start_background() -> None:
    """Start what runs beside the requests (call on startup, inside the server's loop)."""
    install_log_redaction()  # uvicorn configures its loggers after the app is imported
    await asyncio.to_thread(data_service.open_stores)  # a refused store (Redis with persistence) stops the start
    loop = asyncio.get_running_loop()
    # Long work (archives being unpacked, feature runs) waits in threads on the decode workers: enough
    # of them that one client's uploads cannot hold every thread (the default is cores + 4).
    loop.set_default_executor(concurrent.futures.ThreadPoolExecutor(LONG_WORK_THREADS, "darkroom-work"))
    if loop not in _sweepers or _sweepers[loop].done():
        _sweepers[loop] = asyncio.create_task(sweep_idle_sessions_forever())
    # Everything imported so far (FastAPI, NiceGUI, NumPy...) lives as long as the process: keep it
    # out of the cyclic collector's full passes, which otherwise stall requests for tens of ms.
    gc.freeze()
    # Start the decode workers now, not on the first upload (spawning them takes about a second).
    _warmups[loop] = asyncio.create_task(asyncio.to_thread(data_service.sandbox().call, len, b""))


async def stop_background() -> None:
    warmup = _warmups.pop(asyncio.get_running_loop(), None)
    if warmup is not None and not warmup.done():
        warmup.cancel()
    await asyncio.to_thread(shutdown_decode_pool)  # running decodes get a short grace period
    task = _sweepers.pop(asyncio.get_running_loop(), None)
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def install(app: FastAPI) -> None:
    """Add Darkroom's routers and error handlers to ``app``. The caller hooks
    ``start_background``/``stop_background`` into the app's lifecycle."""
    app.include_router(export_api.router)  # before data_input: /api/images/{image_id} would take /archive
    app.include_router(data_input.router)
    app.include_router(features_api.router)
    app.include_router(annotations_api.router)
    app.include_router(live_api.router)
    app.add_exception_handler(DarkroomError, _darkroom_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
    app.add_middleware(SessionScope)
    app.add_middleware(ClientScope)  # outermost: every route, the page's and NiceGUI's too, knows its client
    document_session(app)
    install_log_redaction()


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    await start_background()
    try:
        yield
    finally:
        await stop_background()


def create_app() -> FastAPI:
    """A bare FastAPI app with the whole API and no UI."""
    app = FastAPI(
        title="Darkroom API",
        version="0.1.0",
        description="Private, per-session image workspaces over HTTP and WebSocket.",
        lifespan=_lifespan,
    )
    install(app)
    return app
