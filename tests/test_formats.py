"""The format registry (``core.formats``) is the one place a format is known: every registered format
has a sample here, is told apart by its own signature only, round-trips through ingest, is refused
over the pixel cap by its own structure check and is on the page's lists; a format registered at run
time is taken by ingest, the pre-checks and the page at once, and no signature is written elsewhere.

Adding a format: its module under ``core/formats/`` and its sample in ``SAMPLES``."""

from __future__ import annotations

import dataclasses
import io
import re
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path

import pillow_heif
import pytest
from nicegui.testing import User
from PIL import Image

from core import formats
from core.config import Settings
from core.errors import CorruptImage, TooLarge, UnsupportedImage
from core.formats import ImageFormat, check_area
from core.ingest import ingest_image, sniff_format
from core.prechecks import check_structure, pixels_at_a_glance
from ui.dropzone import DropZone

ROOT = Path(__file__).resolve().parent.parent
WIDTH, HEIGHT = 128, 64  # HEVC codes whole 64x64 blocks: a HEIF of another size declares a larger ispe
SETTINGS = Settings()


def _picture() -> Image.Image:
    return Image.radial_gradient("L").resize((WIDTH, HEIGHT)).convert("RGB")


def _pillow(fmt: str, **options: object) -> Callable[[], bytes]:
    def build() -> bytes:
        out = io.BytesIO()
        _picture().save(out, fmt, **options)
        return out.getvalue()

    return build


def _heif() -> bytes:
    out = io.BytesIO()
    pillow_heif.from_pillow(_picture()).save(out, quality=80)
    return out.getvalue()


# One small file per registered format, WIDTH x HEIGHT.
SAMPLES: dict[str, Callable[[], bytes]] = {
    "JPEG": _pillow("JPEG", quality=85),
    "PNG": _pillow("PNG"),
    "GIF": _pillow("GIF"),
    "WEBP": _pillow("WEBP", quality=80),
    "BMP": _pillow("BMP"),
    "TIFF": _pillow("TIFF"),
    "HEIF": _heif,
    "AVIF": _pillow("AVIF", quality=60),
}
NAMES = sorted(SAMPLES)


def test_every_registered_format_has_a_sample_here() -> None:
    assert sorted(formats.IMAGES) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_a_format_is_told_by_its_own_signature_and_no_other(name: str) -> None:
    prefix = SAMPLES[name]()[: formats.SIGNATURE_BYTES]
    assert [fmt.name for fmt in formats.image_formats() if fmt.accept(prefix)] == [name]
    assert not formats.is_archive(prefix)


@pytest.mark.parametrize("name", NAMES)
def test_a_sample_round_trips_through_ingest_with_the_registered_type(name: str) -> None:
    fmt = formats.get(name)
    image = ingest_image(SAMPLES[name](), f"photo{fmt.extensions[0]}", SETTINGS)
    assert (image.format, image.mime, image.width, image.height) == (name, fmt.mime, WIDTH, HEIGHT)
    with Image.open(io.BytesIO(image.thumbnail)) as thumbnail:
        assert thumbnail.size == (WIDTH, HEIGHT)


@pytest.mark.parametrize("name", NAMES)
def test_the_structure_check_refuses_a_sample_over_the_pixel_cap_before_decoding(name: str) -> None:
    capped = dataclasses.replace(SETTINGS, max_pixels=WIDTH * HEIGHT - 1)
    with pytest.raises(TooLarge, match="too many pixels"):
        check_structure(SAMPLES[name](), name, capped)
    check_structure(SAMPLES[name](), name, dataclasses.replace(SETTINGS, max_pixels=WIDTH * HEIGHT))


@pytest.mark.parametrize("name", NAMES)
def test_the_size_at_a_glance_is_the_declared_size_or_unknown(name: str) -> None:
    expected = WIDTH * HEIGHT if formats.get(name).pixels_at_a_glance else None
    assert pixels_at_a_glance(SAMPLES[name](), name) == expected


@pytest.mark.parametrize("name", NAMES)
def test_the_page_offers_every_format_and_previews_what_browsers_decode(name: str) -> None:
    fmt = formats.get(name)
    offered = formats.accept_list().split(",")
    assert all(ext in offered for ext in fmt.extensions)
    assert (fmt.mime in formats.previewable_mimes()) is fmt.previewable
    assert fmt.label in formats.accepted_labels().split(", ")


def test_the_lists_read_as_the_page_and_the_messages_always_said() -> None:
    assert formats.accepted_labels() == "JPEG, PNG, GIF, WebP, BMP, TIFF, HEIC/HEIF, AVIF"
    assert formats.previewable_mimes() == [
        "image/jpeg",
        "image/png",
        "image/gif",
        "image/webp",
        "image/bmp",
        "image/x-ms-bmp",
        "image/avif",
    ]
    offered = formats.accept_list().split(",")
    assert offered[0] == "image/*"
    assert {".heic", ".heif", ".avif", ".tif", ".tiff", ".zip", "application/zip"} <= set(offered)


def test_a_zip_is_the_archive_container_not_an_image() -> None:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("a.jpg", SAMPLES["JPEG"]())
    empty = io.BytesIO()
    zipfile.ZipFile(empty, "w").close()
    assert formats.is_archive(archive.getvalue()) and formats.is_archive(empty.getvalue())
    assert formats.sniff(archive.getvalue()) is None
    assert ".zip" in formats.archive_extensions() and "application/zip" in formats.archive_mimes()


# --- a format registered at run time: QOI, which Pillow reads and writes -------------------------


def _qoi_check(data: bytes, settings: Settings) -> None:
    if len(data) < 14:
        raise CorruptImage("the QOI is cut off inside its header")
    width, height = struct.unpack_from(">II", data, 4)
    check_area("the QOI", width, height, settings)


QOI = ImageFormat(
    name="QOI",
    label="QOI",
    mime="image/qoi",
    extensions=(".qoi",),
    accept=lambda prefix: prefix[:4] == b"qoif",
    check_structure=_qoi_check,
    pixels_at_a_glance=lambda data: int.from_bytes(data[4:8], "big") * int.from_bytes(data[8:12], "big"),
    rank=90,
)


@pytest.fixture
def qoi(monkeypatch: pytest.MonkeyPatch) -> ImageFormat:
    """QOI on the allow-list for one test (the registry is restored after it)."""
    monkeypatch.setitem(formats.IMAGES, QOI.name, QOI)
    return QOI


def test_before_it_is_registered_a_qoi_file_is_refused_by_name() -> None:
    with pytest.raises(UnsupportedImage, match=r"^QOI is not supported \(JPEG, .*, AVIF are\)$"):
        sniff_format(_pillow("QOI")())


def test_a_format_registered_at_run_time_is_taken_by_ingest_and_the_prechecks(qoi: ImageFormat) -> None:
    data = _pillow("QOI")()
    assert sniff_format(data) == "QOI"
    image = ingest_image(data, "photo.qoi", SETTINGS)
    assert (image.format, image.mime, image.width, image.height) == ("QOI", "image/qoi", WIDTH, HEIGHT)
    assert pixels_at_a_glance(data, "QOI") == WIDTH * HEIGHT
    huge = data[:4] + struct.pack(">II", 100_000, 100_000) + data[12:]
    with pytest.raises(TooLarge, match="the QOI has too many pixels: 100000x100000"):
        ingest_image(huge, "huge.qoi", SETTINGS)  # refused by its structure check, never decoded
    with pytest.raises(UnsupportedImage, match=r"PDF is not supported \(.*, AVIF, QOI are\)"):
        sniff_format(b"%PDF-1.7")


async def test_a_format_registered_at_run_time_is_on_the_pages_lists(qoi: ImageFormat, user: User) -> None:
    await user.open("/")
    await user.should_see("Script access")
    zone = next(iter(user.find(DropZone).elements))
    assert ".qoi" in zone.props["accept"].split(",")
    assert "image/qoi" not in zone.props["previewable"]  # browsers do not decode QOI
    assert zone.props["previewable"] == formats.previewable_mimes()
    assert zone.props["archive-mimes"] == formats.archive_mimes()
    assert formats.accepted_labels().endswith(", AVIF, QOI")


# --- signatures live in core/formats only ---------------------------------------------------------

# The signatures issue 18 names, as they are written in Python or JavaScript source.
SIGNATURES = re.compile(r"""\\x89PNG|GIF8|\\xff\\xd8|["']RIFF["']|II\*(\\0|\\x00)|ftyp""", re.IGNORECASE)


def test_format_signatures_are_written_only_under_core_formats() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{number}"
        for folder in ("core", "ui")
        for path in sorted((ROOT / folder).rglob("*"))
        if path.suffix in (".py", ".js") and (ROOT / "core" / "formats") not in path.parents
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if SIGNATURES.search(line)
    ]
    assert offenders == []
