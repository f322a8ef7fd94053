"""ZIP: the archive container a drop, a folder's ``.zip`` or ``POST /api/images/zip`` unpacks.

Not an image format: ``core.archive`` reads it (guarded: sizes, ratios, entry counts), and each
member is then an upload of its own. Told apart by the first local header, or by the end record of
an empty archive.
"""

from __future__ import annotations

from core.formats._base import Format

_SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06")


def _accept(prefix: bytes) -> bool:
    return prefix[:4] in _SIGNATURES


FORMAT = Format(
    name="ZIP",
    label="ZIP archive",
    mime="application/zip",
    mime_aliases=("application/x-zip-compressed", "application/x-zip"),  # Windows; older browsers
    extensions=(".zip",),
    accept=_accept,
    rank=100,
)
