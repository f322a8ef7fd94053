"""The page's drop zone: drag and drop or pick, progress and the server's verdict per file.

NiceGUI's ``ui.upload`` posts to a route that parses with ``request.form()`` (every file over
1 MiB goes to a temporary file) and checks its limits only in the browser. This element sends
all files of a drop in one streaming multipart request to ``ui.routes``' upload route, which
stores each file in the session's RAM as soon as it has arrived and passed, with the limits
enforced on the server. Files over the limits are held back in the browser too (``rejected``),
so that one of them cannot stop the others.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nicegui import ui


class DropZone(ui.element, component="dropzone.js"):
    def __init__(self, url: str, *, label: str, accept: str, max_image_bytes: int, max_archive_bytes: int) -> None:
        super().__init__()
        self._props["url"] = url
        self._props["label"] = label
        self._props["accept"] = accept
        self._props["max-image-bytes"] = max_image_bytes
        self._props["max-archive-bytes"] = max_archive_bytes

    def on_rejected(self, handler: Callable[[list[dict[str, Any]]], Any]) -> DropZone:
        """``handler(files)`` with the name and size of each file held back for its size."""
        self.on("rejected", lambda event: handler(event.args), args=[None])
        return self
