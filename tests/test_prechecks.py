"""The structural pre-checks: every hostile container of issue 9 is refused before a decoder runs, with
the right status and a message that names what is too large; ordinary images of every format pass."""

from __future__ import annotations

import dataclasses
import io
import re
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.config import Settings
from core.errors import CorruptImage, DarkroomError, TooLarge
from core.formats._isobmff import MAX_BMFF_BOXES
from core.formats.gif import MAX_GIF_BLOCKS
from core.formats.jpeg import MAX_JPEG_JUNK_BYTES
from core.formats.tiff import MAX_TIFF_SEGMENTS
from core.ingest import sniff_format
from core.prechecks import check_structure, pixels_at_a_glance
from tests import hostile_builders as hb
from tests.helpers import DATA, HOSTILE, make_jpeg

SETTINGS = Settings()


def check(data: bytes, settings: Settings = SETTINGS) -> None:
    check_structure(data, sniff_format(data), settings)


def refused(data: bytes, settings: Settings = SETTINGS) -> DarkroomError:
    with pytest.raises(DarkroomError) as caught:
        check(data, settings)
    return caught.value


# --- every case of issue 9, built in memory ------------------------------------------------------

HOSTILE_CASES: dict[str, tuple[Callable[[], bytes], type[DarkroomError], str]] = {
    "gif frame grows the canvas": (
        hb.gif_canvas_grow,
        TooLarge,
        "frame 2 of the GIF lies at 19999,19999 (1x1), outside its 10x10 canvas",
    ),
    "gif frame outside a small canvas": (
        lambda: hb.gif_canvas_grow(20, 20),
        CorruptImage,
        "frame 2 of the GIF lies at 20,20 (1x1), outside its 10x10 canvas",
    ),
    "gif of 10000 frames": (hb.gif_many_frames, TooLarge, "the GIF declares more than 1000 frames; the limit is 1000"),
    "gif cut after a descriptor": (
        hb.gif_truncated_after_descriptor,
        CorruptImage,
        "the GIF is cut off right after the header of its frame 2",
    ),
    "apng of 1001 frames": (hb.apng_many_frames, TooLarge, "the PNG (APNG) declares 1001 frames; the limit is 1000"),
    "png of 2 million chunks": (hb.png_many_chunks, TooLarge, "the PNG has more than 10000 chunks"),
    "jpeg of 2000 scans": (hb.jpeg_many_scans, TooLarge, "the JPEG has more than 100 scans; the limit is 100"),
    "jpeg of 6 million APP segments": (
        hb.jpeg_many_app_segments,
        TooLarge,
        "the JPEG has more than 10000 markers; the limit is 10000",
    ),
    "tiff of overlapping IFDs": (hb.tiff_overlapping_ifds, TooLarge, "more than 100000 tag entries in total"),
    "tiff of 1001 pages, the last without size": (
        hb.tiff_ifd_without_size,
        TooLarge,
        "the TIFF has more than 1000 pages; the limit is 1000",
    ),
    "tiff page without size": (
        lambda: hb.tiff_ifd_without_size(3),
        CorruptImage,
        "page 3 of the TIFF has no size",
    ),
    "tiff of 46336x46336 tiles": (
        hb.tiff_huge_tiles,
        TooLarge,
        "each tile of page 1 of the TIFF has too many pixels: 46336x46336",
    ),
    "tiff tiles far larger than the page": (
        lambda: hb.tiff_huge_tiles(tile=2048, size=16),
        TooLarge,
        "each tile of page 1 of the TIFF is 2048x2048, far larger than the 16x16 page",
    ),
    "bmp RLE end-of-line runs": (
        hb.bmp_rle_eol,
        TooLarge,
        "the BMP is RLE8-compressed at 50000x1000, 50.0 megapixels; RLE8 BMPs are read only up to 4 megapixels",
    ),
    "bmp RLE data larger than its pixels": (
        lambda: hb.bmp_rle_eol(100, 100, rows=20_000),
        TooLarge,
        "more than a 100x100 image can need",
    ),
    "webp of 1001 frames": (hb.webp_many_frames, TooLarge, "the WebP declares more than 1000 frames"),
    "webp frame far outside its canvas": (
        hb.webp_frame_outside_canvas,
        TooLarge,
        "frame 2 of the WebP lies at 20000,20000 (8x8), outside its 8x8 canvas",
    ),
    "webp frame outside its canvas": (
        lambda: hb.webp_frame_outside_canvas(8, 0),
        CorruptImage,
        "frame 2 of the WebP lies at 8,0 (8x8), outside its 8x8 canvas",
    ),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_CASES))
def test_hostile_container_is_refused_with_a_message_naming_the_problem(case):
    build, error_class, message = HOSTILE_CASES[case]
    error = refused(build())
    assert type(error) is error_class, error
    assert message in error.message
    assert not re.search(r"<|object at|0x[0-9a-f]{6}", error.message)  # no internal repr


def test_canvas_grow_past_the_cap_says_how_large_it_would_get():
    error = refused(hb.gif_canvas_grow())
    assert "20000x20000 pixels, too many pixels (400.0 megapixels; the limit is 50 megapixels)" in error.message


@pytest.mark.parametrize("build", [hb.png_blank, hb.tiff_float], ids=["png_blank", "tiff_float"])
def test_costly_images_within_the_caps_pass_the_structure_check(build):
    """These two are bounded by the decode sandbox and the feature pixel cap, not by the container."""
    data = build()
    check(data)
    with Image.open(io.BytesIO(data)) as image:
        assert image.size in ((7071, 7071), (7000, 7000))


# --- limits come from the settings ------------------------------------------------------------


def test_frames_up_to_the_limit_pass_and_one_more_is_refused():
    settings = dataclasses.replace(SETTINGS, max_frames=5)
    check(hb.gif_many_frames(5, 4), settings)
    check(hb.apng_many_frames(5, 4), settings)
    check(hb.webp_many_frames(5), settings)
    check(_tiff_pages(5), settings)
    for data in (hb.gif_many_frames(6, 4), hb.apng_many_frames(6, 4), hb.webp_many_frames(6), _tiff_pages(6)):
        error = refused(data, settings)
        assert isinstance(error, TooLarge) and "the limit is 5" in error.message


def test_pixels_up_to_the_limit_pass_and_one_more_row_is_refused():
    settings = dataclasses.replace(SETTINGS, max_pixels=64 * 48)
    check(make_jpeg(64, 48), settings)
    for fmt in ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF"):
        error = refused(_pillow_image(fmt, (64, 49)), settings)
        assert isinstance(error, TooLarge) and "too many pixels: 64x49" in error.message, (fmt, error)


def test_apng_with_many_frames_may_use_more_chunks_than_the_plain_limit():
    settings = dataclasses.replace(SETTINGS, max_frames=6000)
    check(hb.apng_many_frames(6000, 4), settings)  # 12,000 chunks


# --- each format's own bounds -------------------------------------------------------------------


def test_gif_with_a_million_sub_blocks_is_refused():
    header = hb.gif_canvas_grow()[:19]  # header, screen and colour table
    comment = b"\x21\xfe" + b"\x01x" * (MAX_GIF_BLOCKS + 1) + b"\x00"
    error = refused(header + comment + b";")
    assert isinstance(error, TooLarge) and f"more than {MAX_GIF_BLOCKS} blocks" in error.message


def test_gif_cut_inside_a_frame_is_corrupt():
    data = hb.gif_canvas_grow(0, 0)
    error = refused(data[:-4])
    assert isinstance(error, CorruptImage) and "cut off inside its frame 2" in error.message


def test_gif_without_trailer_passes():
    check(_pillow_image("GIF", (20, 10))[:-1])


def test_jpeg_frame_over_the_cap_is_refused_from_its_sof():
    data = bytearray(make_jpeg(64, 48))
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, 10_000, 10_000)
    error = refused(bytes(data))
    assert isinstance(error, TooLarge) and "the JPEG has too many pixels: 10000x10000" in error.message


def test_jpeg_with_megabytes_of_stray_bytes_before_its_segments_is_refused():
    data = make_jpeg()
    first_segment_end = 4 + struct.unpack_from(">H", data, 4)[0]
    error = refused(data[:first_segment_end] + b"\x00" * (MAX_JPEG_JUNK_BYTES + 1) + data[first_segment_end:])
    assert isinstance(error, TooLarge) and "stray bytes" in error.message


def test_jpeg_scan_data_full_of_stuffed_and_restart_bytes_is_walked_as_data():
    data = make_jpeg()
    scan_end = data.rindex(b"\xff\xd9")
    padded = data[:scan_end] + b"\xff\x00\xff\xd0" * 100_000 + data[scan_end:]
    check(padded)


def test_jpeg_restart_markers_with_fill_bytes_inside_a_scan_are_not_stray_bytes():
    noise = np.random.default_rng(0).integers(0, 256, size=(1000, 1400, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(noise, "RGB").save(out, "JPEG", quality=100, restart_marker_blocks=1)
    data = out.getvalue()
    filled = data.replace(b"\xff\xd0", b"\xff\xff\xd0", 500)
    assert len(filled) - filled.index(b"\xff\xda") > MAX_JPEG_JUNK_BYTES
    check(filled)


def test_jpeg_segment_with_impossible_length_is_corrupt():
    data = make_jpeg()
    error = refused(data[:2] + b"\xff\xe1\x00\x01" + data[2:])
    assert isinstance(error, CorruptImage) and "impossible length 1" in error.message


def test_png_without_ihdr_is_corrupt():
    error = refused(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    assert isinstance(error, CorruptImage) and "IHDR" in error.message


def test_apng_frame_outside_its_canvas_is_corrupt():
    data = bytearray(_pillow_image("PNG", (16, 16), frames=2))
    fctl = data.index(b"fcTL", data.index(b"fcTL") + 4)
    struct.pack_into(">II", data, fctl + 16, 12, 0)  # x_offset 12 on a 16-pixel canvas
    struct.pack_into(">I", data, fctl + 30, zlib.crc32(bytes(data[fctl : fctl + 30])))
    error = refused(bytes(data))
    assert isinstance(error, CorruptImage) and "frame 2 of the PNG (APNG) lies at 12,0" in error.message


def test_apng_default_image_outside_the_animation_counts_as_a_frame_as_in_pillow():
    data = _pillow_image("PNG", (16, 16), frames=3, default_image=True)
    with Image.open(io.BytesIO(data)) as image:
        assert image.n_frames == 3  # acTL says 2: the default image is one more
    check(data, dataclasses.replace(SETTINGS, max_frames=3))
    error = refused(data, dataclasses.replace(SETTINGS, max_frames=2))
    assert isinstance(error, TooLarge) and "declares 2 frames and a separate default image" in error.message


def test_jpeg_extension_markers_carry_no_length_as_pillow_reads_them():
    data = bytearray(make_jpeg(64, 48))
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, 10_000, 10_000)
    hidden = bytes(data[:sof]) + b"\xff\xc8" + bytes(data[sof:])  # a length here would skip the SOF
    error = refused(hidden)
    assert isinstance(error, TooLarge) and "10000x10000" in error.message


def test_jpeg_end_marker_before_the_first_scan_does_not_end_the_walk_as_in_pillow():
    data = bytearray(make_jpeg(64, 48))
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, 10_000, 10_000)
    error = refused(b"\xff\xd8\xff\xd9" + bytes(data[2:]))
    assert isinstance(error, TooLarge) and "10000x10000" in error.message


def test_tiff_page_chain_that_loops_ends_at_the_loop_as_in_pillow():
    data = bytearray(_tiff_pages(2))
    (first,) = struct.unpack_from("<I", data, 4)
    (count,) = struct.unpack_from("<H", data, first)
    (second,) = struct.unpack_from("<I", data, first + 2 + 12 * count)
    (count2,) = struct.unpack_from("<H", data, second)
    struct.pack_into("<I", data, second + 2 + 12 * count2, first)
    check(bytes(data))
    with Image.open(io.BytesIO(bytes(data))) as image:
        assert image.n_frames == 2


def test_tiff_page_outside_the_file_is_corrupt():
    data = bytearray(_tiff_pages(1))
    struct.pack_into("<I", data, 4, len(data) + 100)
    error = refused(bytes(data))
    assert isinstance(error, CorruptImage) and "page 1 of the TIFF lies outside the file" in error.message


def test_tiff_page_cut_inside_its_entries_is_corrupt():
    data = _tiff_pages(1)
    (first,) = struct.unpack_from("<I", data, 4)
    error = refused(data[: first + 20])
    assert isinstance(error, CorruptImage) and "page 1 of the TIFF is cut off" in error.message


def test_tiff_declaring_millions_of_strips_is_refused():
    entries = [(256, 4, 1, 16), (257, 4, 1, 16), (273, 4, MAX_TIFF_SEGMENTS + 1, 8), (279, 4, 1, 1)]
    error = refused(_one_page_tiff(entries))
    assert isinstance(error, TooLarge) and f"more than {MAX_TIFF_SEGMENTS} strips or tiles" in error.message


def _one_page_tiff(entries: list[tuple[int, int, int, int]], tail: bytes = b"") -> bytes:
    ifd = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHII", *e) for e in entries) + b"\0\0\0\0"
    return b"II*\x00" + struct.pack("<I", 8) + ifd + tail


def test_tiff_size_stored_out_of_line_is_read_from_its_offset():
    values_at = 8 + 2 + 12 * 3 + 4
    data = _one_page_tiff([(256, 4, 2, values_at), (257, 4, 1, 10), (273, 4, 1, 8)], struct.pack("<II", 100_000_000, 1))
    error = refused(data)
    assert isinstance(error, TooLarge) and "page 1 of the TIFF has too many pixels: 100000000x10" in error.message


def test_tiff_size_of_a_non_integer_type_is_corrupt():
    data = _one_page_tiff([(256, 5, 1, 8), (257, 4, 1, 10), (273, 4, 1, 8)])
    error = refused(data)
    assert isinstance(error, CorruptImage) and "not an integer" in error.message


def test_bmp_with_unknown_header_size_is_corrupt():
    data = bytearray(_pillow_image("BMP", (8, 8)))
    struct.pack_into("<I", data, 14, 77)
    error = refused(bytes(data))
    assert isinstance(error, CorruptImage) and "unknown size of 77 bytes" in error.message


@pytest.mark.parametrize(("raw_height", "read_as"), [(0xFFFFFFF0, 16), (0xFEFFFFFF, 0xFEFFFFFF)])
def test_bmp_height_is_read_as_pillow_reads_it(raw_height, read_as, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # only Pillow's reading of the header is compared
    data = bytearray(_pillow_image("BMP", (1, 16)))
    struct.pack_into("<I", data, 22, raw_height)
    if read_as <= SETTINGS.max_pixels:
        check(bytes(data))
    else:
        error = refused(bytes(data))
        assert isinstance(error, TooLarge) and f"1x{read_as}" in error.message
    with Image.open(io.BytesIO(bytes(data))) as image:
        assert image.size == (1, read_as)


def test_small_rle_bmp_passes_and_decodes():
    data = hb.bmp_rle_eol(100, 100)
    check(data)
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        assert image.size == (100, 100)


@pytest.mark.parametrize("fmt", ["HEIF", "AVIF"])
def test_bmff_image_size_is_read_from_ispe(fmt):
    data = _bmff_image(fmt)
    check_structure(data, fmt, SETTINGS)
    huge = bytearray(data)
    ispe = huge.index(b"ispe")
    struct.pack_into(">II", huge, ispe + 8, 100_000, 100_000)
    with pytest.raises(TooLarge, match=f"an image in the {fmt} has too many pixels: 100000x100000"):
        check_structure(bytes(huge), fmt, SETTINGS)


def test_bmff_clean_aperture_is_checked_as_libheif_reports_it():
    data = bytearray(_bmff_image("HEIF"))
    clap = data.index(b"clap")
    struct.pack_into(">II", data, clap + 12, 100_000, 1)  # clean aperture height 100000
    with pytest.raises(TooLarge, match="the clean aperture of an image in the HEIF has too many pixels"):
        check_structure(bytes(data), "HEIF", dataclasses.replace(SETTINGS, max_pixels=10_000))


def test_bmff_boxes_before_a_truncated_box_are_still_checked():
    data = bytearray(_bmff_image("HEIF"))
    ispe = data.index(b"ispe")
    struct.pack_into(">II", data, ispe + 8, 100_000, 100_000)
    with pytest.raises(TooLarge, match="100000x100000"):
        check_structure(bytes(data[:-10]), "HEIF", SETTINGS)  # the trailing mdat box is cut off


def test_webp_frames_inside_an_overlong_anmf_are_counted_as_libwebp_counts_them():
    data = bytearray(hb.webp_many_frames(4))
    first_anmf = data.index(b"ANMF")
    struct.pack_into("<I", data, first_anmf + 4, len(data) - first_anmf - 8)  # swallows the other three
    settings = dataclasses.replace(SETTINGS, max_frames=3)
    error = refused(bytes(data), settings)
    assert isinstance(error, TooLarge) and "more than 3 frames" in error.message


def test_gif_extension_starting_with_an_empty_sub_block_is_read_as_pillow_reads_it():
    """Pillow reads one more sub-block chain after such an extension; frames must not hide behind it."""
    frame = hb._GIF_GCE + hb._gif_frame(0, 0, 1, 1)
    data = hb._gif_header(2, 2) + frame + b"\x21\x01\x00" + b"\x03\x21\xfe\x05\x00" + frame * 3 + b";"
    with Image.open(io.BytesIO(data)) as image:
        frames = image.n_frames
    check(data, dataclasses.replace(SETTINGS, max_frames=frames))
    error = refused(data, dataclasses.replace(SETTINGS, max_frames=frames - 1))
    assert isinstance(error, TooLarge) and "frames" in error.message


def test_bmff_box_walk_is_bounded():
    free_boxes = struct.pack(">I4s", 8, b"free") * (MAX_BMFF_BOXES + 1)
    with pytest.raises(TooLarge, match=f"more than {MAX_BMFF_BOXES} boxes"):
        check_structure(_bmff_image("HEIF") + free_boxes, "HEIF", SETTINGS)


def test_formats_without_a_checker_pass_untouched():
    check_structure(b"anything", "ICO", SETTINGS)


# --- ordinary images pass ----------------------------------------------------------------------

REAL_FILES = sorted(
    [*(DATA / "features" / "images").glob("*.png"), *(DATA / "features" / "edge_cases").glob("*.png")]
    + [HOSTILE / name for name in ("ok_photo.jpg", "ok_photo.png", "ok_photo.webp", "exif_orientation_6.jpg")]
)


@pytest.mark.parametrize("path", REAL_FILES, ids=lambda p: p.name)
def test_real_image_passes(path: Path):
    check(path.read_bytes())


PILLOW_VARIANTS = {
    "jpeg progressive": lambda: _pillow_image("JPEG", (300, 200), progressive=True),
    "jpeg optimized with exif": lambda: _pillow_image("JPEG", (300, 200), optimize=True, exif=_exif()),
    "jpeg cmyk": lambda: _pillow_image("JPEG", (40, 30), mode="CMYK"),
    "jpeg restart markers": lambda: _pillow_image("JPEG", (300, 200), restart_marker_blocks=1),
    "png rgba": lambda: _pillow_image("PNG", (40, 30), mode="RGBA"),
    "png 16-bit": lambda: _pillow_image("PNG", (40, 30), mode="I;16"),
    "apng of 3 frames": lambda: _pillow_image("PNG", (40, 30), frames=3),
    "gif animated": lambda: _pillow_image("GIF", (40, 30), frames=4),
    "gif interlaced": lambda: _pillow_image("GIF", (40, 30), interlace=True),
    "webp lossy": lambda: _pillow_image("WEBP", (40, 30)),
    "webp lossless rgba": lambda: _pillow_image("WEBP", (40, 30), mode="RGBA", lossless=True),
    "webp animated": lambda: _pillow_image("WEBP", (40, 30), frames=3),
    "bmp rgb": lambda: _pillow_image("BMP", (41, 30)),
    "bmp palette": lambda: _pillow_image("BMP", (41, 30), mode="P"),
    "bmp 1-bit": lambda: _pillow_image("BMP", (41, 30), mode="1"),
    "tiff of 3 pages": lambda: _tiff_pages(3),
    "tiff big-endian lzw": lambda: _pillow_image("TIFF", (40, 30), compression="tiff_lzw", big_endian=True),
    "tiff deflate rgba": lambda: _pillow_image("TIFF", (40, 30), mode="RGBA", compression="tiff_adobe_deflate"),
    "tiff jpeg": lambda: _pillow_image("TIFF", (40, 30), compression="jpeg"),
    "tiff float": lambda: _pillow_image("TIFF", (40, 30), mode="F"),
}


@pytest.mark.parametrize("variant", sorted(PILLOW_VARIANTS))
def test_pillow_written_image_passes(variant):
    data = PILLOW_VARIANTS[variant]()
    check(data)
    with Image.open(io.BytesIO(data)) as image:  # the variant is what it claims to be
        image.load()


# --- helpers ------------------------------------------------------------------------------------


def _pillow_image(fmt: str, size: tuple[int, int], mode: str = "RGB", frames: int = 1, **params: object) -> bytes:
    def frame(index: int) -> Image.Image:
        image = Image.linear_gradient("L").resize(size).convert("RGB")
        image.paste((255 - 60 * index, 60 * index, 0), (index, index, index + size[0] // 3, index + size[1] // 3))
        if mode == "I;16":
            return image.convert("I").point(lambda v: v * 256).convert("I;16")
        return image.convert(mode)

    out = io.BytesIO()
    images = [frame(i) for i in range(frames)]
    if frames > 1:
        params = {"save_all": True, "append_images": images[1:], "duration": 100, **params}
    images[0].save(out, fmt, **params)
    return out.getvalue()


def _tiff_pages(pages: int) -> bytes:
    out = io.BytesIO()
    images = [Image.new("L", (8 + i, 8), 40 * i) for i in range(pages)]
    images[0].save(out, "TIFF", save_all=True, append_images=images[1:])
    return out.getvalue()


def _exif() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "Camera maker"
    return exif.tobytes()


def _bmff_image(fmt: str) -> bytes:
    if fmt == "HEIF":
        import pillow_heif

        pillow_heif.register_heif_opener()
    out = io.BytesIO()
    Image.new("RGB", (64, 48), (10, 20, 30)).save(out, fmt)
    return out.getvalue()


# -- size at a glance (the decode scheduler's hint) --


def _saved(fmt: str, size: tuple[int, int], mode: str = "RGB", **options: object) -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, "red").save(out, fmt, **options)
    return out.getvalue()


@pytest.mark.parametrize(
    ("fmt", "mode", "options"),
    [
        ("PNG", "RGB", {}),
        ("GIF", "P", {}),
        ("BMP", "RGB", {}),
        ("JPEG", "RGB", {}),
        ("JPEG", "RGB", {"exif": Image.Exif().tobytes(), "progressive": True}),
        ("WEBP", "RGB", {"quality": 50}),  # VP8
        ("WEBP", "RGB", {"lossless": True}),  # VP8L
        ("WEBP", "RGBA", {"quality": 50}),  # VP8X
    ],
)
def test_pixels_at_a_glance_reads_the_declared_size(fmt, mode, options):
    data = _saved(fmt, (123, 45), mode, **options)
    assert pixels_at_a_glance(data, sniff_format(data)) == 123 * 45


def test_pixels_at_a_glance_gives_none_where_the_header_does_not_tell_cheaply():
    tiff = _saved("TIFF", (10, 10))
    assert pixels_at_a_glance(tiff, "TIFF") is None
    png = _saved("PNG", (10, 10))
    assert pixels_at_a_glance(png[:18], "PNG") is None  # cut inside IHDR
    jpeg = _saved("JPEG", (10, 10))
    assert pixels_at_a_glance(jpeg[:30], "JPEG") is None  # cut before the frame header
    assert pixels_at_a_glance(b"\xff\xd8" + b"\xff\xfe\x00\x02" * 1000, "JPEG") is None  # segments only


def test_pixels_at_a_glance_reads_a_declared_50_megapixel_png_without_decoding():
    data = _png_header(10_000, 5_000)
    assert pixels_at_a_glance(data, "PNG") == 50_000_000


def _png_header(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr
    return b"\x89PNG\r\n\x1a\n" + chunk + struct.pack(">I", zlib.crc32(chunk[4:]))
