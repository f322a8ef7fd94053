"""The ASGI root: a plain FastAPI app holding the API and the page's routes, NiceGUI mounted on it.

``ui.run_with`` mounts NiceGUI's app under the root at ``/``. Starlette tries the root's routes
first, so ``/api/*`` and ``/_darkroom/*`` never pass through NiceGUI's middleware (its
``BaseHTTPMiddleware`` layers and GZip), while the page ``/``, its socket and NiceGUI's assets are
served as before. The root's lifespan runs ``start_background`` and ``stop_background`` once, and
NiceGUI's own startup and shutdown around them.
"""

from __future__ import annotations

import importlib

from fastapi import FastAPI
from nicegui import app as nicegui_app
from nicegui import ui
from starlette.routing import Match, Mount
from starlette.types import Scope

from core.api.app import create_app, install, start_background, stop_background
from core.api.data_input import router as api_router
from ui.routes import install_routes

TITLE = "Darkroom"
API_PREFIX = api_router.prefix  # "/api": never handed to NiceGUI


def register_page() -> None:
    """Register the page "/" (imported here: NiceGUI's user fixture unloads page modules after
    every test, and this brings the page back for the next one)."""
    importlib.import_module("ui.workspace")


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
    register_page()
    ui.run_with(root, title=TITLE, show_welcome_message=False, tailwind=False)  # utilities: workspace.css
    leave_api_to_the_api(root)
    return root


def leave_api_to_the_api(root: FastAPI) -> None:
    """Replace the ``Mount`` that ``ui.run_with`` adds for NiceGUI's app by a ``_PageMount``.

    NiceGUI offers no public way to keep its mount off a path, so this adapter relies on one fact of
    ``ui.run_with``: it adds exactly one Starlette ``Mount`` of NiceGUI's app to ``root.router.routes``.
    An upgrade that mounts otherwise makes this raise at startup, and tests/test_lean_api.py with it,
    instead of the page silently answering unknown API paths with HTML."""
    routes = root.router.routes
    mounts = [i for i, route in enumerate(routes) if isinstance(route, Mount) and route.app is nicegui_app]
    if len(mounts) != 1:
        raise RuntimeError(f"expected ui.run_with to add one Mount of NiceGUI's app, found {len(mounts)}")
    mount = routes[mounts[0]]
    assert isinstance(mount, Mount)
    routes[mounts[0]] = _PageMount(mount.path, app=nicegui_app, name=mount.name)


def install_for_user_simulation() -> None:
    """Under NiceGUI's ``user`` test fixture every request goes to NiceGUI's own app, so there the
    API and the page's routes live on that app (the fixture runs this file as ``__main__``)."""
    install(nicegui_app)
    install_routes(nicegui_app)
    register_page()
    nicegui_app.on_startup(start_background)
    nicegui_app.on_shutdown(stop_background)
    ui.run(title=TITLE, reload=False, show=False, show_welcome_message=False, tailwind=False)  # as served
