"""The baseline bench/api.py measures against: a bare FastAPI app serving the same data.

No sessions, no limits, no NiceGUI: the listing and the thumbnail are whatever the bench seeded
(``/seed/...``, not measured), and an upload is parsed by Starlette, decoded and thumbnailed with
Pillow in a worker thread of this process (the old in-process path), then answered with its record.

    python -m bench._bare_api_server PORT
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import sys
from datetime import UTC, datetime
from typing import Any

import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from PIL import Image
from starlette.datastructures import UploadFile

from core.api.heads import head_limited_protocol
from core.config import Settings

THUMBNAIL_SIZE = 256

app = FastAPI()
seeded: dict[str, Any] = {"records": [], "thumbnail": b"", "thumbnail_mime": "image/jpeg"}
uploaded: list[dict[str, object]] = []


@app.post("/seed/records")
async def seed_records(request: Request) -> dict[str, int]:
    seeded["records"] = await request.json()
    return {"records": len(seeded["records"])}


@app.post("/seed/thumbnail")
async def seed_thumbnail(request: Request) -> dict[str, int]:
    seeded["thumbnail"] = await request.body()
    seeded["thumbnail_mime"] = request.headers.get("content-type", "image/jpeg")
    return {"bytes": len(seeded["thumbnail"])}


@app.get("/api/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/api/images")
async def list_images(session_id: str | None = None) -> Response:
    return JSONResponse(seeded["records"])


@app.get("/api/images/{image_id}/thumbnail")
async def thumbnail(image_id: str, session_id: str | None = None) -> Response:
    return Response(seeded["thumbnail"], media_type=seeded["thumbnail_mime"])


def ingest(data: bytes, filename: str) -> dict[str, object]:
    """Decode the whole image, make its thumbnail, describe it (what an upload must at least do)."""
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        width, height, fmt = image.width, image.height, image.format
        image.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
        out = io.BytesIO()
        image.convert("RGB").save(out, "JPEG", quality=85)
    return {
        "id": hashlib.md5(filename.encode()).hexdigest(),  # noqa: S324  an id, not a secret
        "filename": filename,
        "format": fmt,
        "width": width,
        "height": height,
        "size_bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "uploaded_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
    }


@app.post("/api/images")
async def upload(request: Request, session_id: str | None = None) -> Response:
    form = await request.form()
    accepted = []
    for part in form.getlist("files"):
        if isinstance(part, UploadFile):
            accepted.append(await asyncio.to_thread(ingest, await part.read(), part.filename or "upload"))
    uploaded.extend(accepted)
    del uploaded[:-100]  # the bench uploads for seconds on end: keep RAM flat
    return JSONResponse({"accepted": accepted, "rejected": [], "duplicates": [], "detail": None})


if __name__ == "__main__":
    # The same bounded-head protocol as ui.main, so the comparison is of the apps alone.
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        log_level="warning",
        http=head_limited_protocol(Settings()),
        proxy_headers=False,
    )
