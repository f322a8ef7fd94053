"""The entry point: Darkroom's API mounted on NiceGUI's FastAPI app, served by ``ui.run``."""

from __future__ import annotations

import argparse
import os
import sys

from nicegui import app, ui

from core.api.app import install, start_background, stop_background
from core.config import get_settings
from ui import workspace  # noqa: F401  registers the page "/"
from ui.routes import install_routes

install(app)
install_routes(app)
app.on_startup(start_background)
app.on_shutdown(stop_background)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    settings = get_settings()
    parser = argparse.ArgumentParser(prog="darkroom", description="Serve the Darkroom app and API.")
    parser.add_argument("--host", default=settings.host, help=f"address to bind (default {settings.host})")
    parser.add_argument(
        "--port", type=int, default=settings.port, help=f"port (default {settings.port}; PORT is honoured)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    ui.run(
        host=args.host,
        port=args.port,
        title="Darkroom",
        reload=False,
        show=False,
        fastapi_docs=True,
        show_welcome_message=False,
        ws_per_message_deflate=False,  # compression makes image uploads over WebSocket ~18x slower
    )


if __name__ in {"__main__", "__mp_main__"}:
    # Under NiceGUI's user simulation (pytest), sys.argv holds pytest's arguments.
    main([] if os.environ.get("NICEGUI_USER_SIMULATION") else None)
