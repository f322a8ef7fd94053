"""The entry point: Darkroom's API mounted on NiceGUI's FastAPI app, served by ``ui.run``."""

from __future__ import annotations

import argparse
import sys

from nicegui import app, ui

from core.api.app import install, start_background, stop_background
from core.config import get_settings

install(app)
app.on_startup(start_background)
app.on_shutdown(stop_background)


@ui.page("/")
def index() -> None:
    """Placeholder workspace page; the full workspace is built on the same API."""
    ui.label("Darkroom").classes("text-2xl font-bold")
    ui.label("A private image workspace. Images live only in this server's memory and vanish on restart.")
    ui.link("API documentation", "/docs")


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
    main()
