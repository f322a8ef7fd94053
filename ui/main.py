"""The entry point: a plain FastAPI app is the ASGI root, NiceGUI is mounted on it.

The root holds the API (``core.api.app.create_app``) and the page's own routes (``ui.routes``);
``ui.run_with`` mounts NiceGUI's app under it at ``/``. Starlette tries the root's routes first, so
``/api/*`` and ``/_darkroom/*`` never pass through NiceGUI's middleware (its ``BaseHTTPMiddleware``
layers and GZip), while the page ``/``, its socket and NiceGUI's assets are served as before.
``darkroom`` serves the root with uvicorn; the root's lifespan runs ``start_background`` and
``stop_background`` once, and NiceGUI's own startup and shutdown around them.
"""

from __future__ import annotations

import argparse
import sys

import uvicorn
from fastapi import FastAPI
from nicegui import app as nicegui_app
from nicegui import helpers, ui
from starlette.routing import Match, Mount
from starlette.types import Scope

from core.api.app import create_app, install, start_background, stop_background
from core.api.data_input import router as api_router
from core.config import get_settings
from ui import workspace  # noqa: F401  registers the page "/"
from ui.routes import install_routes

TITLE = "Darkroom"
API_PREFIX = api_router.prefix  # "/api": never handed to NiceGUI
# NiceGUI serves its page socket with wsproto; the root keeps that. Compression makes image
# uploads over WebSocket ~18x slower, so it is off.
WEBSOCKET_IMPLEMENTATION = "wsproto"
# On SIGTERM, open requests get this long to finish before the server stops anyway.
GRACEFUL_SHUTDOWN_SECONDS = 10


class _PageMount(Mount):
    """NiceGUI's mount at ``/``, leaving ``/api`` to the API: an unknown API path or method gets the
    API's JSON 404 or 405, never the page's HTML "page not found"."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        path = scope.get("path", "")
        if path == API_PREFIX or path.startswith(API_PREFIX + "/"):
            return Match.NONE, {}
        return super().matches(scope)


def create_root() -> FastAPI:
    """The ASGI root: the API and the page's routes on a plain FastAPI app, NiceGUI mounted at
    ``/``. NiceGUI's app is one per process: call this once."""
    root = create_app()  # its lifespan runs start_background / stop_background
    install_routes(root)
    ui.run_with(root, title=TITLE, show_welcome_message=False)
    routes = root.router.routes
    index = next(i for i, route in enumerate(routes) if isinstance(route, Mount) and route.app is nicegui_app)
    routes[index] = _PageMount(routes[index].path, app=nicegui_app, name=routes[index].name)
    return root


def install_for_user_simulation() -> None:
    """Under NiceGUI's ``user`` test fixture every request goes to NiceGUI's own app, so there the
    API and the page's routes live on that app (the fixture runs this file as ``__main__``)."""
    install(nicegui_app)
    install_routes(nicegui_app)
    nicegui_app.on_startup(start_background)
    nicegui_app.on_shutdown(stop_background)
    ui.run(title=TITLE, reload=False, show=False, show_welcome_message=False)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    settings = get_settings()
    parser = argparse.ArgumentParser(prog="darkroom", description="Serve the Darkroom app and API.")
    parser.add_argument("--host", default=settings.host, help=f"address to bind (default {settings.host})")
    parser.add_argument(
        "--port", type=int, default=settings.port, help=f"port (default {settings.port}; PORT is honoured)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """The ``darkroom`` command: serve the page and the API in this process until SIGTERM/SIGINT."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    uvicorn.run(
        create_root(),
        host=args.host,
        port=args.port,
        log_level="warning",
        ws=WEBSOCKET_IMPLEMENTATION,
        ws_per_message_deflate=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )


if __name__ == "__main__":  # not "__mp_main__": a spawned worker process must not serve
    if helpers.is_user_simulation():
        install_for_user_simulation()
    else:
        main()
