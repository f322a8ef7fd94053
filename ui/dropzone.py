"""The page's drop zone: drop or pick files and folders, paste images; a local preview and
progress per file, then the server's verdict.

NiceGUI's ``ui.upload`` posts to a route that parses with ``request.form()`` (every file over
1 MiB goes to a temporary file) and checks its limits only in the browser. This element streams
each file over a WebSocket (``ws_url``, the page's token route) in binary chunks, waiting for the
server's acknowledgements, into the session's RAM; each file is validated and stored as it lands.
When the WebSocket cannot be opened it falls back to one streaming multipart request per drop to
``url``. The server enforces every limit; files over them are held back in the browser too
(``rejected``), so that one of them cannot stop the others.

The upload socket and the local previews (the photo's embedded EXIF thumbnail, else a reduced
decode) run in Web Workers of ``upload_worker.js``, a module attached with ``dependencies=``.

What the page knows of formats (``core.formats``: the picker's accept list, the types the browser
previews itself, the archives' types and extensions, a pasted image's extension), of OS junk
(``core.archive``) and of byte sizes (``core.units``' unit table) comes from Python as props.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nicegui import ui

from core import formats
from core.archive import OS_JUNK_FOLDERS, OS_JUNK_NAMES, OS_JUNK_PREFIXES
from core.ingest import clean_filename
from core.units import BYTE_STEP, BYTE_UNITS

HELD_NAMED = 5  # files named in one notice of files held back (dropzone.js's HELD_NAMED)
MAX_HELD_COUNT = 1_000_000  # a count said by the page is at most this (a drop walks at most 5,000)


@dataclass(frozen=True)
class HeldBack:
    """Files the page did not send for their size: the first few by name and size, and how many."""

    files: list[tuple[str, int]]
    count: int

    @classmethod
    def parse(cls, args: Any) -> HeldBack | None:
        """What the page's ``rejected`` event says, checked (it comes from the browser); None when
        it is not what ``dropzone.js`` sends."""
        if not isinstance(args, dict) or not isinstance(args.get("files"), list):
            return None
        count = args.get("count")
        if isinstance(count, bool) or not isinstance(count, int):
            return None
        files = []
        for entry in args["files"][:HELD_NAMED]:
            name = entry.get("name") if isinstance(entry, dict) else None
            size = entry.get("size") if isinstance(entry, dict) else None
            if isinstance(name, str) and isinstance(size, int) and not isinstance(size, bool) and size >= 0:
                files.append((clean_filename(name[:1000]), size))  # a display name: 200 characters
        count = min(max(count, len(files)), MAX_HELD_COUNT)
        return cls(files, count) if count else None


class DropZone(ui.element, component="dropzone.js", dependencies=["upload_worker.js", "thumbnails.js"]):
    def __init__(
        self,
        url: str,
        *,
        ws_url: str,
        label: str,
        max_image_bytes: int,
        max_archive_bytes: int,
        max_files: int,
    ) -> None:
        super().__init__()
        self._props["url"] = url
        self._props["ws-url"] = ws_url
        self._props["label"] = label
        self._props["accept"] = formats.accept_list()
        self._props["previewable"] = formats.previewable_mimes()
        self._props["archive-mimes"] = formats.archive_mimes()
        self._props["archive-extensions"] = formats.archive_extensions()
        self._props["extensions-by-mime"] = formats.extensions_by_mime()
        self._props["max-image-bytes"] = max_image_bytes
        self._props["max-archive-bytes"] = max_archive_bytes
        self._props["max-files"] = max_files
        self._props["junk-names"] = sorted(OS_JUNK_NAMES)
        self._props["junk-folders"] = list(OS_JUNK_FOLDERS)
        self._props["junk-prefixes"] = list(OS_JUNK_PREFIXES)
        self._props["byte-units"] = list(BYTE_UNITS)
        self._props["byte-step"] = BYTE_STEP

    def on_rejected(self, handler: Callable[[HeldBack], Any]) -> DropZone:
        """``handler(held)`` for the files the page held back for their size, at most every 100 ms."""

        def receive(event: Any) -> Any:
            held = HeldBack.parse(event.args)
            return None if held is None else handler(held)

        self.on("rejected", receive, args=[None])
        return self

    def on_notice(self, handler: Callable[[str], Any]) -> DropZone:
        """``handler(text)`` for what the user should know about a drop (files left out, unreadable)."""
        self.on("notice", lambda event: handler(str(event.args)), args=[None])
        return self

    def on_stopped(self, handler: Callable[[str], Any]) -> DropZone:
        """``handler(detail)`` when the server stopped an upload socket (a limit or a lost connection)."""
        self.on("stopped", lambda event: handler(str(event.args)), args=[None])
        return self
