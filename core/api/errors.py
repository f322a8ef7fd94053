"""How a ``DarkroomError`` reaches an HTTP client: ``error_response``, the one JSON error body.

The app's exception handler answers with it, and so do the ASGI middlewares that refuse a request
before any route runs (an exception raised there would pass the app's handlers by).
"""

from __future__ import annotations

from fastapi.responses import JSONResponse

from core.errors import DarkroomError


def error_response(exc: DarkroomError) -> JSONResponse:
    """``{"detail": message}`` with the error's status and headers (``Retry-After`` on a 503)."""
    return JSONResponse({"detail": exc.message}, status_code=exc.status_code, headers=exc.headers)
