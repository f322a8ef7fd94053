"""The entry point, ``darkroom``: serves the ASGI root of ``ui.server`` with uvicorn.

Kept light on purpose: the decode sandbox's spawned workers import this module (multiprocessing
re-imports the parent's main module), so NiceGUI and the page load only when serving.
"""

from __future__ import annotations

import argparse
import sys

from core.config import get_settings

# NiceGUI serves its page socket with wsproto; the root keeps that. Compression makes image
# uploads over WebSocket ~18x slower, so it is off.
WEBSOCKET_IMPLEMENTATION = "websockets-sansio"
# On SIGTERM, open requests get this long to finish before the server stops anyway.
GRACEFUL_SHUTDOWN_SECONDS = 10


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
    import uvicorn

    from core.api.heads import head_limited_protocol
    from ui.server import create_root

    args = parse_args(sys.argv[1:] if argv is None else argv)
    uvicorn.run(
        create_root(),
        host=args.host,
        port=args.port,
        log_level="warning",
        http=head_limited_protocol(get_settings()),  # request heads bounded in size and time
        proxy_headers=False,  # core.clients trusts X-Forwarded-For only from DARKROOM_TRUSTED_PROXIES
        ws=WEBSOCKET_IMPLEMENTATION,
        ws_per_message_deflate=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )


if __name__ == "__main__":  # not "__mp_main__": a spawned worker process must not serve
    from nicegui import helpers

    if helpers.is_user_simulation():  # NiceGUI's user fixture runs this file
        from ui.server import install_for_user_simulation

        install_for_user_simulation()
    else:
        main()
