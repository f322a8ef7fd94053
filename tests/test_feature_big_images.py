"""Features of big images: analysed on a view of DARKROOM_FEATURE_MAX_PIXELS, never decoded whole
where the format allows it, so every image accepted at upload gets its features.

The view of a big image is the BOX resize of its first frame (core.features.decode); these tests
hold every reduced path to that definition, pixel for pixel, and run a big PNG through a real
decode worker whose memory budget a whole decode does not fit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import struct
import zlib
from collections.abc import Iterator

import numpy as np
import pytest
from PIL import Image, ImageFile

from core.config import Settings
from core.errors import CorruptImage, TooLarge
from core.features import REGISTRY
from core.features import decode as feature_decode
from core.features.compute import compute_features
from core.features.views import ImageViews
from core.ingest import make_preview
from core.sandbox import DecodePool
from tests.feature_tolerances import mismatches

MiB = 1024 * 1024
WIDTH, HEIGHT = 301, 203  # odd sizes: strips, bands and view rows never line up
VIEW_PIXELS = (5_000, 20_000)  # views of 86 x 58 and 172 x 116
PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
ORIENTATION = 0x0112


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _filtered(row: np.ndarray, prior: np.ndarray, bpp: int, kind: int) -> np.ndarray:
    """One PNG row under filter ``kind`` (0 None, 1 Sub, 2 Up, 3 Average, 4 Paeth)."""
    raw, up = row.astype(np.int16), prior.astype(np.int16)
    left = np.concatenate([np.zeros(bpp, np.int16), raw[:-bpp]])
    up_left = np.concatenate([np.zeros(bpp, np.int16), up[:-bpp]])
    if kind == 0:
        predicted = np.zeros_like(raw)
    elif kind == 1:
        predicted = left
    elif kind == 2:
        predicted = up
    elif kind == 3:
        predicted = (left + up) // 2
    else:
        estimate = left + up - up_left
        by_left, by_up, by_up_left = abs(estimate - left), abs(estimate - up), abs(estimate - up_left)
        nearest_up = np.where(by_up <= by_up_left, up, up_left)
        predicted = np.where((by_left <= by_up) & (by_left <= by_up_left), left, nearest_up)
    return ((raw - predicted) % 256).astype(np.uint8)


def make_png(depth: int, color_type: int, seed: int = 0, after_pixels: bytes = b"") -> bytes:
    """A WIDTH x HEIGHT PNG of random samples, each row under a random filter (so every filter
    meets a strip boundary), its data split over several IDAT chunks, ``after_pixels`` after them."""
    rng = np.random.default_rng(seed)
    row_bytes = (WIDTH * depth * PNG_CHANNELS[color_type] + 7) // 8
    rows = rng.integers(0, 256, (HEIGHT, row_bytes), dtype=np.uint8)
    padding = row_bytes * 8 - WIDTH * depth * PNG_CHANNELS[color_type]
    rows[:, -1] &= (0xFF << padding) & 0xFF  # padding bits are zero, as writers leave them
    bpp = max(1, depth * PNG_CHANNELS[color_type] // 8)
    stream, prior = bytearray(), np.zeros(row_bytes, np.uint8)
    for row in rows:
        kind = int(rng.integers(0, 5))
        stream += bytes([kind]) + _filtered(row, prior, bpp, kind).tobytes()
        prior = row
    compressed = zlib.compress(bytes(stream))
    header = png_chunk(b"IHDR", struct.pack(">IIBBBBB", WIDTH, HEIGHT, depth, color_type, 0, 0, 0))
    colours = rng.integers(0, 256, 3 << min(depth, 8), dtype=np.uint8).tobytes()
    palette = png_chunk(b"PLTE", colours) if color_type == 3 else b""
    pixels = b"".join(png_chunk(b"IDAT", compressed[i : i + 4096]) for i in range(0, len(compressed), 4096))
    return b"\x89PNG\r\n\x1a\n" + header + palette + pixels + after_pixels + png_chunk(b"IEND", b"")


def saved(image: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def picture() -> Image.Image:
    return Image.fromarray(np.random.default_rng(7).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8))


def whole_resized(data: bytes, view: tuple[int, int]) -> Image.Image:
    """The definition of a big image's view: the whole first frame, BOX-resized."""
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return image.resize(view, Image.Resampling.BOX)


@pytest.fixture
def small_strips(monkeypatch: pytest.MonkeyPatch) -> None:
    """Strips of 7 rows, so that a small image crosses dozens of strip and band boundaries."""
    monkeypatch.setattr(feature_decode, "STRIP_PIXELS", WIDTH * 7)


@contextlib.contextmanager
def whole_decodes_refused() -> Iterator[None]:
    """Inside: any decode of an opened WIDTH x HEIGHT file at its full size fails the test."""
    load = ImageFile.ImageFile.load

    def refuse_full_size(image: ImageFile.ImageFile):  # noqa: ANN202
        if image.size == (WIDTH, HEIGHT):
            raise AssertionError(f"the whole {image.format} was decoded")
        return load(image)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ImageFile.ImageFile, "load", refuse_full_size)
        yield


def assert_same_image(actual: Image.Image, expected: Image.Image) -> None:
    assert (actual.mode, actual.size) == (expected.mode, expected.size)
    assert np.array_equal(np.asarray(actual), np.asarray(expected))
    if actual.mode == "P":
        assert actual.getpalette() == expected.getpalette()


PNG_KINDS = [(8, 0), (8, 2), (8, 3), (8, 4), (8, 6), (16, 0), (16, 2), (16, 4), (16, 6)]
PNG_KINDS += [(1, 0), (2, 0), (4, 0), (1, 3), (2, 3), (4, 3)]


@pytest.mark.parametrize("max_pixels", VIEW_PIXELS)
@pytest.mark.parametrize("depth, color_type", PNG_KINDS, ids=[f"{d}bit-type{t}" for d, t in PNG_KINDS])
def test_a_big_png_is_decoded_in_strips_into_exactly_its_resized_view(depth, color_type, max_pixels, small_strips):
    """Every bit depth and colour type, every filter across strip boundaries: the same pixels
    (and palette) as the whole image resized, without ever decoding the whole image."""
    data = make_png(depth, color_type, seed=depth * 10 + color_type)
    expected = whole_resized(data, feature_decode.view_size((WIDTH, HEIGHT), max_pixels))
    with whole_decodes_refused():
        decoded = feature_decode.decode_for_analysis(data, max_pixels)
    assert decoded.full_size == (WIDTH, HEIGHT) and decoded.format == "PNG"
    assert_same_image(decoded.image, expected)


RAW_FILES = {
    "bmp-rgb": lambda: saved(picture(), "BMP"),
    "bmp-palette": lambda: saved(picture().convert("P"), "BMP"),
    "bmp-1bit": lambda: saved(picture().convert("1"), "BMP"),
    "tiff-rgb": lambda: saved(picture(), "TIFF"),
    "tiff-rgba": lambda: saved(picture().convert("RGBA"), "TIFF"),
    "tiff-cmyk": lambda: saved(picture().convert("CMYK"), "TIFF"),
    "tiff-palette": lambda: saved(picture().convert("P"), "TIFF"),
    "tiff-1bit": lambda: saved(picture().convert("1"), "TIFF"),
    "tiff-16bit-gray": lambda: saved(Image.fromarray(np.asarray(picture())[..., 0].astype(np.uint16) * 257), "TIFF"),
}
WHOLE_FILES = {
    "gif": lambda: saved(picture().convert("P"), "GIF"),
    "webp": lambda: saved(picture(), "WEBP", lossless=True),
    "tiff-deflate": lambda: saved(picture(), "TIFF", compression="tiff_adobe_deflate"),
    "png-interlaced": lambda: interlaced_png(np.asarray(picture())),
    "heif": lambda: saved(picture(), "HEIF", quality=90),
    "avif": lambda: saved(picture(), "AVIF", quality=90),  # names a raw tile before it is decoded
}


def interlaced_png(pixels: np.ndarray) -> bytes:
    """An Adam7-interlaced RGB PNG (Pillow writes none), filter type 0 throughout."""
    passes = [(0, 0, 8, 8), (0, 4, 8, 8), (4, 0, 8, 4), (0, 2, 4, 4), (2, 0, 4, 2), (0, 1, 2, 2), (1, 0, 2, 1)]
    stream = bytearray()
    for top, left, row_step, column_step in passes:
        reduced = pixels[top::row_step, left::column_step]
        for row in reduced:
            stream += b"\x00" + row.tobytes()
    height, width = pixels.shape[:2]
    header = png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 1))
    return b"\x89PNG\r\n\x1a\n" + header + png_chunk(b"IDAT", zlib.compress(bytes(stream))) + png_chunk(b"IEND", b"")


@pytest.mark.parametrize("max_pixels", VIEW_PIXELS)
@pytest.mark.parametrize("kind", sorted(RAW_FILES))
def test_an_uncompressed_bmp_or_tiff_is_read_in_bands_into_exactly_its_resized_view(kind, max_pixels, small_strips):
    data = RAW_FILES[kind]()
    expected = whole_resized(data, feature_decode.view_size((WIDTH, HEIGHT), max_pixels))
    with whole_decodes_refused():
        decoded = feature_decode.decode_for_analysis(data, max_pixels)
    assert_same_image(decoded.image, expected)


@pytest.mark.parametrize("kind", sorted(WHOLE_FILES))
def test_formats_without_a_reduced_decode_get_the_same_resized_view(kind, small_strips):
    """GIF, WebP, compressed TIFF, interlaced PNG, HEIF and AVIF are decoded once, then resized band
    by band."""
    data = WHOLE_FILES[kind]()
    expected = whole_resized(data, feature_decode.view_size((WIDTH, HEIGHT), VIEW_PIXELS[0]))
    assert_same_image(feature_decode.decode_for_analysis(data, VIEW_PIXELS[0]).image, expected)


def test_a_big_jpeg_is_drafted_then_resized(small_strips):
    data = saved(picture(), "JPEG", quality=95)
    view = feature_decode.view_size((WIDTH, HEIGHT), VIEW_PIXELS[0])
    with Image.open(io.BytesIO(data)) as drafted:
        drafted.draft("RGB", view)  # libjpeg at 1/2..1/8 scale
        drafted.load()
        expected = drafted.resize(view, Image.Resampling.BOX)
    with whole_decodes_refused():
        decoded = feature_decode.decode_for_analysis(data, VIEW_PIXELS[0])
    assert_same_image(decoded.image, expected)


def test_images_within_the_cap_are_decoded_whole():
    data = make_png(8, 2)
    decoded = feature_decode.decode_for_analysis(data, WIDTH * HEIGHT)
    assert decoded.image.size == (WIDTH, HEIGHT)
    with Image.open(io.BytesIO(data)) as whole:
        assert np.array_equal(np.asarray(decoded.image), np.asarray(whole))


def exif_orientation(value: int) -> bytes:
    exif = Image.Exif()
    exif[ORIENTATION] = value
    return exif.tobytes()


@pytest.mark.parametrize("where", ["before the pixels", "after the pixels"])
def test_a_big_png_view_is_upright_whatever_chunk_holds_its_orientation(where, small_strips):
    """EXIF may follow a PNG's pixels, where only a whole decode would reach it: the view still
    turns, as the whole image and its preview do."""
    exif = png_chunk(b"eXIf", exif_orientation(6))
    data = make_png(8, 2, after_pixels=exif)
    if where == "before the pixels":
        first_pixels = data.index(b"IDAT") - 4
        data = data[:first_pixels] + exif + data[first_pixels:].replace(exif, b"")
    view = feature_decode.view_size((WIDTH, HEIGHT), VIEW_PIXELS[1])
    expected = whole_resized(data, view).transpose(Image.Transpose.ROTATE_270)
    big = ImageViews(data, VIEW_PIXELS[1])
    assert big.full_size == (HEIGHT, WIDTH)  # upright, as basic reports it
    assert_same_image(big.image, expected)
    assert ImageViews(data).image.size == (HEIGHT, WIDTH)


def test_a_damaged_big_png_is_refused_as_a_small_one_is():
    data = make_png(8, 2)
    cut = data[: len(data) // 2]
    for max_pixels in (None, VIEW_PIXELS[0]):
        with pytest.raises(CorruptImage):
            ImageViews(cut, max_pixels)


# -- a real decode worker, with a memory budget a whole decode does not fit --

BIG_WIDTH, BIG_HEIGHT = 7746, 5164  # 40 megapixels: legal at upload (DARKROOM_MAX_PIXELS is 50)
BAND_ROWS = 64


def big_rgba_png() -> bytes:
    """A 40-megapixel RGBA PNG of gradients, stripes and bands that compresses to about 1 MB:
    each band of rows starts unfiltered and repeats through PNG's Up filter."""
    columns = np.arange(BIG_WIDTH)
    line = 1 + BIG_WIDTH * 4
    deflate = zlib.compressobj(1)
    parts = []
    for top in range(0, BIG_HEIGHT, BAND_ROWS):
        band = top // BAND_ROWS
        row = np.empty((BIG_WIDTH, 4), np.uint8)
        row[:, 0] = columns * 255 // (BIG_WIDTH - 1)
        row[:, 1] = band * 255 // (BIG_HEIGHT // BAND_ROWS)
        row[:, 2] = ((columns // 97 + band) % 2) * 200
        row[:, 3] = 255 - columns * 128 // BIG_WIDTH
        repeats = bytearray(line * (min(BAND_ROWS, BIG_HEIGHT - top) - 1))
        repeats[::line] = b"\x02" * (len(repeats) // line)
        parts += [deflate.compress(b"\x00" + row.tobytes()), deflate.compress(bytes(repeats))]
    parts.append(deflate.flush())
    header = png_chunk(b"IHDR", struct.pack(">IIBBBBB", BIG_WIDTH, BIG_HEIGHT, 8, 6, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + header + png_chunk(b"IDAT", b"".join(parts)) + png_chunk(b"IEND", b"")


@pytest.fixture
def small_budget_pool() -> Iterator[DecodePool]:
    """One decode worker with 192 MiB above its libraries: less than this PNG decoded whole."""
    pool = DecodePool(dataclasses.replace(Settings(), decode_workers=1, decode_memory_bytes=192 * MiB))
    yield pool
    pool.close()


@pytest.mark.slow
def test_a_big_png_gets_its_features_in_a_worker_too_small_to_decode_it_whole(small_budget_pool):
    data = big_rgba_png()
    feature_max_pixels = 1_000_000
    groups = [name for name in REGISTRY if name != "hog"]  # HOG's vector is 8,100 floats: not needed here
    big = small_budget_pool.call(compute_features, data, groups, feature_max_pixels)
    with pytest.raises(TooLarge):  # the whole 40 MP picture does not fit (as the old feature path did not)
        small_budget_pool.call(make_preview, data, 256)

    # the same picture made at the view's size gives the same numbers
    view = feature_decode.view_size((BIG_WIDTH, BIG_HEIGHT), feature_max_pixels)
    small = compute_features(saved(whole_resized(data, view), "PNG"), groups)
    assert big["basic"]["width"] == BIG_WIDTH and big["basic"]["height"] == BIG_HEIGHT
    assert big["basic"]["megapixels"] == pytest.approx(40.0, abs=0.01)
    del big["basic"], small["basic"]  # the stored size and bytes, by design
    assert mismatches(small, big) == []
