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
    def __init__(self, url: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        app.remove_route(self._registered_url)  # the stock route spools to disk; it must not exist
        self._props["url"] = url
        self._props["field-name"] = "files"  # every file in a part named like the API's
        self._props.set_bool("batch", False)  # one request per file: progress and errors per file
