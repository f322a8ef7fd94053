"""The API plus a bare ``request.body()`` endpoint, the baseline bench/upload.py measures against."""

from __future__ import annotations

import sys

import uvicorn
from fastapi import Request

from core.api.app import create_app
from core.api.heads import head_limited_protocol
from core.config import get_settings

app = create_app()


@app.post("/bare")
async def bare(request: Request) -> dict[str, int]:
    """Reads the whole body into RAM and does nothing else: the fastest an upload can be."""
    return {"bytes": len(await request.body())}


if __name__ == "__main__":
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        log_level="warning",
        ws_per_message_deflate=False,
        http=head_limited_protocol(get_settings()),  # as ui.main serves
        proxy_headers=False,
    )
