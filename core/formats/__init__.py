"""Every file format Darkroom takes, one module per format, in the manner of Pillow's plugins.

Each public module of this package (``jpeg.py``, ``png.py``, ...) defines ``FORMAT``: an
``ImageFormat`` (its signature check ``accept(prefix)``, MIME type, label, extensions, structure check,
whether browsers preview it, decode notes) or, for ZIP, a plain ``Format``. The modules are found and
registered when this package is imported, so adding a format is one new module (and its sample in
``tests/test_formats.py``). Everything else reads this registry:

* ``core.ingest`` sniffs with ``sniff`` and decodes with what the record says;
* ``core.prechecks`` runs the record's structure check and its size at a glance;
* the page's file picker (``accept_list``), its hint (``accepted_labels``) and its local previews
  (``previewable_mimes``, ``archive_mimes``, ``archive_extensions``, ``extensions_by_mime``), passed
  to ``ui/dropzone.js``;
* the folder store's file names (``ImageFormat.extensions``) and every served ``Content-Type``.

Modules whose names start with ``_`` are shared helpers, not formats.
"""

from __future__ import annotations

import importlib
import pkgutil

from core.formats._base import Format, ImageFormat, check_area
from core.formats._refused import other_format_name

__all__ = [
    "IMAGES",
    "ARCHIVES",
    "SIGNATURE_BYTES",
    "Format",
    "ImageFormat",
    "accept_list",
    "accepted_labels",
    "check_area",
    "archive_extensions",
    "archive_mimes",
    "extensions_by_mime",
    "find",
    "get",
    "image_formats",
    "is_archive",
    "prepare_decoders",
    "previewable_mimes",
    "refused_name",
    "register",
    "sniff",
]

SIGNATURE_BYTES = 64  # the prefix every accept() is given: enough for an ftyp box's brands
# What the file picker offers besides the registered extensions: every image type the OS knows,
# so that a file of another format is sent and refused with its name, not hidden from the user.
_PICKER_TYPES = "image/*"

IMAGES: dict[str, ImageFormat] = {}  # by name; listed by rank
ARCHIVES: dict[str, Format] = {}


def register(fmt: Format) -> Format:
    """Add ``fmt`` (an ``ImageFormat``, or an archive ``Format``) to the registry; returns it."""
    if fmt.name in IMAGES or fmt.name in ARCHIVES:
        raise ValueError(f"the format {fmt.name} is registered twice")
    if isinstance(fmt, ImageFormat):
        IMAGES[fmt.name] = fmt
    else:
        ARCHIVES[fmt.name] = fmt
    return fmt


def image_formats() -> list[ImageFormat]:
    """The allowed image formats, in the order people read them (common first)."""
    return sorted(IMAGES.values(), key=lambda fmt: fmt.rank)


def find(name: str) -> ImageFormat | None:
    """The image format stored under ``name`` ("JPEG"), or None."""
    return IMAGES.get(name)


def get(name: str) -> ImageFormat:
    """The image format stored under ``name``; KeyError for a name no module registered."""
    return IMAGES[name]


def sniff(data: bytes) -> ImageFormat | None:
    """The image format whose signature the first bytes of ``data`` carry, or None."""
    prefix = data[:SIGNATURE_BYTES]
    return next((fmt for fmt in image_formats() if fmt.accept(prefix)), None)


def is_archive(data: bytes) -> bool:
    """Whether ``data`` starts like an archive that uploads unpack (a ZIP)."""
    prefix = data[:SIGNATURE_BYTES]
    return any(fmt.accept(prefix) for fmt in _archive_formats())


def refused_name(data: bytes) -> str | None:
    """What a file that is no allowed image is ("ZIP archive", "PDF"), when its first bytes tell."""
    prefix = data[:SIGNATURE_BYTES]
    archive = next((fmt for fmt in _archive_formats() if fmt.accept(prefix)), None)
    return archive.label if archive is not None else other_format_name(prefix)


def accepted_labels() -> str:
    """The allowed formats for people: "JPEG, PNG, GIF, WebP, BMP, TIFF, HEIC/HEIF, AVIF"."""
    return ", ".join(fmt.label for fmt in image_formats())


def accept_list() -> str:
    """The file picker's ``accept`` attribute: image types, every registered extension (not every
    OS maps HEIC or AVIF to an image type) and the archives' types."""
    archives = _archive_formats()
    extensions = [ext for fmt in [*image_formats(), *archives] for ext in fmt.extensions]
    return ",".join([_PICKER_TYPES, *extensions, *(mime for fmt in archives for mime in fmt.mimes)])


def previewable_mimes() -> list[str]:
    """The file types (``File.type``) a browser decodes itself, for the page's local previews."""
    return [mime for fmt in image_formats() if fmt.previewable for mime in fmt.mimes]


def archive_mimes() -> list[str]:
    """The file types (``File.type``) browsers report for an archive."""
    return [mime for fmt in _archive_formats() for mime in fmt.mimes]


def archive_extensions() -> list[str]:
    """The extensions an archive's name ends with (lowercase, with the dot)."""
    return [ext for fmt in _archive_formats() for ext in fmt.extensions]


def _archive_formats() -> list[Format]:
    return sorted(ARCHIVES.values(), key=lambda fmt: fmt.rank)


def extensions_by_mime() -> dict[str, str]:
    """Each image type a browser may report (``File.type``) -> the extension a file of it is named with."""
    return {mime: fmt.extensions[0] for fmt in image_formats() for mime in fmt.mimes}


def prepare_decoders() -> None:
    """Make Pillow able to open every registered format (some need a plugin registered first)."""
    for fmt in image_formats():
        if fmt.prepare_decoder is not None:
            fmt.prepare_decoder()


def _register_modules() -> None:
    for module in pkgutil.iter_modules(__path__):
        if not module.name.startswith("_"):
            register(importlib.import_module(f"{__name__}.{module.name}").FORMAT)


_register_modules()
