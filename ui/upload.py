"""``ui.upload``'s browser side (Quasar's QUploader: drag and drop, picking, progress per file)
with Darkroom's server side.

The stock element registers a route that parses with ``request.form()`` and writes every file
over 1 MiB to a temporary file, with size limits checked only in the browser. This element drops
that route and points the uploader at ``ui.routes``' upload route, which streams each file into
the session store with the limits enforced on the server.
"""

from __future__ import annotations

from typing import Any

from nicegui import app, ui


class RamUpload(ui.upload):
    """All chosen files go in one streaming request (like ``POST /api/images``); QUploader still
    shows each file's progress as its bytes go out, and the server stores each file as soon as it
    has arrived and passed, so the gallery fills while the rest is still uploading. Files over the
    limits are held back in the browser (``on_rejected``) so that one of them cannot stop the
    others; the server enforces the same limits regardless."""

    def __init__(self, url: str, max_image_bytes: int, max_archive_bytes: int, **kwargs: Any) -> None:
        super().__init__(max_file_size=max(max_image_bytes, max_archive_bytes), **kwargs)
        app.remove_route(self._registered_url)  # the stock route spools to disk; it must not exist
        self._props["url"] = url
        self._props["field-name"] = "files"  # every file in a part named like the API's
        self._props["batch"] = True
        self._props[":filter"] = (
            "files => files.filter(f => f.size <= "
            f"(/\\.zip$/i.test(f.name) || /zip/.test(f.type) ? {max_archive_bytes} : {max_image_bytes}))"
        )
