"""Fuzzing the parsers of untrusted bytes: mutated valid images and ZIPs may only ever raise the
documented errors (``DarkroomError`` subclasses, which the API turns into 4xx), never anything else.

Targets (each bounded by ``FUZZ_EXAMPLES`` examples and a ``FUZZ_SECONDS`` budget of its own, about
40 s in all in CI; raise both for a longer local run; every example counted ran its target, and a
target that ran fewer than ``MIN_EXAMPLES`` in its budget fails):

1. ``sniff_format`` + ``core.prechecks.check_structure`` on mutated images of every format;
1b. the pre-checks agree with Pillow: whatever they let through, Pillow opens at no more pixels and no
   more frames than the limits (ingest relies on this: it no longer counts frames by seeking);
2. ``core.archive.read_central_directory`` + ``iter_members`` on mutated small ZIPs;
3. the same ``mutated_images()`` decoded for real in a decode sandbox worker (``inspect_image``, as
   uploads are): only documented errors come out, and no worker dies (a death would be a decoder
   bug that the sandbox hides from users but that we want to know about).

Mutations are byte flips, "interesting" integers written over length and size fields, truncation,
deletion, splices from another seed, and repeated slices (many chunks, markers, frames). Any input that
once made a target raise something else is kept under ``tests/data/fuzz/`` (``<target>-<what>.bin``)
and replayed by ``test_reproducer_raises_only_documented_errors``.
"""

from __future__ import annotations

import dataclasses
import io
import os
import time
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from core.archive import iter_members, read_central_directory
from core.config import Settings
from core.errors import DarkroomError
from core.ingest import sniff_format
from core.prechecks import check_structure
from core.sandbox import DecodePool
from tests import hostile_builders as hb
from tests import sandbox_tasks
from tests.helpers import DATA, HOSTILE

pytestmark = pytest.mark.fuzz

FUZZ_DIR = DATA / "fuzz"
BUDGET_SECONDS = float(os.environ.get("FUZZ_SECONDS", "6"))
MAX_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "3000"))
MIN_EXAMPLES = min(MAX_EXAMPLES, 50)  # fewer in a whole budget is no fuzzing, however green
FIRST_ROUND_EXAMPLES = 10  # the first round measures a target's pace; later rounds fit the time left
MAX_MUTATED_BYTES = 64 * 1024

DEFAULT = Settings()
# Tight limits reach the limit branches with small inputs.
TIGHT = dataclasses.replace(
    DEFAULT,
    max_pixels=4096,
    max_frames=3,
    max_file_bytes=2048,
    zip_max_entries=4,
    zip_max_total_bytes=4096,
    zip_max_ratio=2.0,
)

FUZZ_SETTINGS = settings(
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)


# --- seeds --------------------------------------------------------------------------------------


def _pillow(fmt: str, size: tuple[int, int] = (12, 10), frames: int = 1, mode: str = "RGB", **params: object) -> bytes:
    images = [
        Image.new(mode, size, (30 * i, 90, 200 - 30 * i)[: len(mode)] if mode != "L" else 40 * i) for i in range(frames)
    ]
    for index, image in enumerate(images):
        image.paste(255 if mode == "L" else (255, 255, 255)[: len(mode)], (index, index, index + 3, index + 2))
    if frames > 1:
        params = {"save_all": True, "append_images": images[1:], "duration": 50, **params}
    out = io.BytesIO()
    images[0].save(out, fmt, **params)
    return out.getvalue()


def _heif() -> bytes:
    import pillow_heif

    pillow_heif.register_heif_opener()
    return _pillow("HEIF", (16, 16))


def image_seeds() -> list[bytes]:
    """Small valid images of every format and small versions of the hostile ones."""
    seeds = [
        _pillow("JPEG"),
        _pillow("JPEG", progressive=True, quality=50),
        _pillow("JPEG", (20, 17), restart_marker_blocks=1),
        _pillow("PNG"),
        _pillow("PNG", frames=3),
        _pillow("GIF", frames=3),
        _pillow("GIF", interlace=True),
        _pillow("WEBP", lossless=True),
        _pillow("WEBP"),
        _pillow("WEBP", frames=3),
        _pillow("BMP"),
        _pillow("BMP", mode="L"),
        _pillow("TIFF", frames=3),
        _pillow("TIFF", compression="tiff_lzw", big_endian=True),
        _pillow("TIFF", mode="L", compression="tiff_adobe_deflate", tiled=True),
        _pillow("AVIF", (16, 16)),
        _heif(),
        hb.gif_canvas_grow(),
        hb.gif_truncated_after_descriptor(),
        hb.gif_many_frames(5, 8),
        hb.apng_many_frames(4, 16),
        hb.png_many_chunks(5),
        hb.jpeg_many_scans(12, 16),
        hb.jpeg_many_app_segments(5),
        hb.tiff_overlapping_ifds(3, 20),
        hb.tiff_ifd_without_size(3),
        hb.tiff_huge_tiles(),
        hb.tiff_float(32, 8),
        hb.bmp_rle_eol(30, 6),
        hb.webp_many_frames(4),
        hb.webp_frame_outside_canvas(),
    ]
    return [seed for seed in seeds if len(seed) <= MAX_MUTATED_BYTES]


def zip_seeds() -> list[bytes]:
    """Small ZIPs: stored, deflated, directories, junk, nested names, ZIP64 records, a prepended stub."""
    png = _pillow("PNG")

    def build(writer: Callable[[zipfile.ZipFile], None], prefix: bytes = b"") -> bytes:
        out = io.BytesIO()
        out.write(prefix)
        with zipfile.ZipFile(out, "w") as archive:
            writer(archive)
        return out.getvalue()

    def plain(archive: zipfile.ZipFile) -> None:
        archive.writestr("a.png", png, zipfile.ZIP_STORED)
        archive.writestr("dir/", b"")
        archive.writestr("dir/b.png", png * 3, zipfile.ZIP_DEFLATED)
        archive.writestr("__MACOSX/._a.png", b"junk")
        archive.writestr("inner.zip", b"PK\x03\x04", zipfile.ZIP_STORED)
        archive.comment = b"comment"

    def zip64(archive: zipfile.ZipFile) -> None:
        with archive.open("big.png", "w", force_zip64=True) as member:
            member.write(png)
        archive.writestr("zeros.bin", bytes(5000), zipfile.ZIP_DEFLATED)

    seeds = [build(plain), build(zip64), build(plain, prefix=b"MZ" + bytes(62))]
    seeds += [path.read_bytes() for path in sorted(HOSTILE.glob("zip_*.zip")) if path.stat().st_size <= 4096]
    return seeds


IMAGE_SEEDS = image_seeds()
ZIP_SEEDS = zip_seeds()


# --- mutations ----------------------------------------------------------------------------------

_INTERESTING = [0, 1, 2, 7, 8, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x10000, 0x7FFFFFFF, 0xFFFFFFFF]


@st.composite
def _mutation(draw: st.DrawFn, data: bytearray, seeds: list[bytes]) -> bytearray:
    length = len(data)
    position = draw(st.one_of(st.integers(0, min(length, 64)), st.integers(0, length)))
    kind = draw(st.sampled_from(["flip", "integer", "truncate", "delete", "splice", "repeat"]))
    if kind == "flip" and length:
        data[min(position, length - 1)] = draw(st.integers(0, 255))
    elif kind == "integer":
        width = draw(st.sampled_from([1, 2, 4]))
        value = draw(st.sampled_from([*_INTERESTING, length, length + 1])) & ((1 << (8 * width)) - 1)
        order = draw(st.sampled_from(["<", ">"]))
        packed = value.to_bytes(width, "little" if order == "<" else "big")
        data[position : position + width] = packed
    elif kind == "truncate":
        del data[position:]
    elif kind == "delete":
        del data[position : position + draw(st.integers(1, 64))]
    elif kind == "splice":
        donor = draw(st.sampled_from(seeds))
        start = draw(st.integers(0, max(0, len(donor) - 1)))
        data[position:position] = donor[start : start + draw(st.integers(1, 256))]
    elif kind == "repeat" and length:
        start = min(position, length - 1)
        piece = bytes(data[start : start + draw(st.integers(1, 32))])
        data[start:start] = piece * draw(st.integers(1, 300))
    return data


@st.composite
def _mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 6))):
        data = draw(_mutation(data, seeds))
        if len(data) > MAX_MUTATED_BYTES:
            del data[MAX_MUTATED_BYTES:]
    return bytes(data)


def mutated_images() -> st.SearchStrategy[bytes]:
    """Mutated small images of every format (also for the sandbox target)."""
    return _mutated(IMAGE_SEEDS)


def mutated_zips() -> st.SearchStrategy[bytes]:
    return _mutated(ZIP_SEEDS)


def fuzz(check: Callable[..., None], **strategies: st.SearchStrategy[Any]) -> int:
    """Run ``check`` on examples drawn from ``strategies`` until ``BUDGET_SECONDS`` or ``MAX_EXAMPLES``
    is spent and return how many ran. Hypothesis has no time limit of its own, so the examples come in
    rounds, each sized to the time left at the pace so far: generation stops with the budget instead of
    running examples that skip the check."""
    ran = 0
    started = time.monotonic()
    while ran < MAX_EXAMPLES:
        elapsed = time.monotonic() - started
        if elapsed >= BUDGET_SECONDS:
            break
        fitting = int((BUDGET_SECONDS - elapsed) / (elapsed / ran)) if ran else FIRST_ROUND_EXAMPLES
        size = max(1, min(fitting, MAX_EXAMPLES - ran))

        @settings(FUZZ_SETTINGS, max_examples=size)
        @given(**strategies)
        def one_round(**example: Any) -> None:
            nonlocal ran
            check(**example)
            ran += 1

        one_round()
    spent = time.monotonic() - started
    print(f"{ran} examples in {spent:.1f} s")  # shown with -rP or -s
    assert ran >= MIN_EXAMPLES, f"only {ran} examples ran in {spent:.1f} s (at least {MIN_EXAMPLES} needed)"
    return ran


# --- the targets --------------------------------------------------------------------------------


def image_target(data: bytes, limits: Settings) -> None:
    """What ingest does before any decoder runs."""
    try:
        fmt = sniff_format(data)
        check_structure(data, fmt, limits)
    except DarkroomError:
        pass


def zip_target(data: bytes, limits: Settings) -> None:
    """What the ZIP upload does before handing members to ingest."""
    try:
        read_central_directory(data, limits)
        for _ in iter_members(data, limits):
            pass
    except DarkroomError:
        pass


def test_seeds_are_valid_or_refused_cleanly():
    assert len(IMAGE_SEEDS) >= 25 and len(ZIP_SEEDS) >= 5
    for seed in IMAGE_SEEDS:
        image_target(seed, DEFAULT)
    for seed in ZIP_SEEDS:
        zip_target(seed, DEFAULT)


@pytest.mark.slow  # its whole FUZZ_SECONDS budget
def test_fuzz_image_prechecks_raise_only_documented_errors():
    def check(data: bytes, tight: bool) -> None:
        image_target(data, TIGHT if tight else DEFAULT)

    fuzz(check, data=mutated_images(), tight=st.booleans())


@pytest.mark.slow  # its whole FUZZ_SECONDS budget
def test_fuzz_archive_reader_raises_only_documented_errors():
    def check(data: bytes, tight: bool) -> None:
        zip_target(data, TIGHT if tight else DEFAULT)

    fuzz(check, data=mutated_zips(), tight=st.booleans())


_FRAME_FORMATS = ("GIF", "PNG", "WEBP", "TIFF")


def parity_target(data: bytes, limits: Settings) -> None:
    """Whatever the pre-checks let through, Pillow opens at no more pixels and frames than the limits."""
    try:
        fmt = sniff_format(data)
        check_structure(data, fmt, limits)
    except DarkroomError:
        return
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # measure what Pillow would open, without its own guard
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data), formats=[fmt]) as image:
                width, height = image.size
                frames = getattr(image, "n_frames", 1) if fmt in _FRAME_FORMATS else 1
    except Exception:  # noqa: BLE001  Pillow refusing the file is the decoder's business, not this oracle's
        return
    finally:
        Image.MAX_IMAGE_PIXELS = saved
    assert width * height <= limits.max_pixels, (fmt, width, height, data.hex())
    assert frames <= limits.max_frames, (fmt, frames, data.hex())


@pytest.mark.slow  # its whole FUZZ_SECONDS budget
def test_fuzz_what_the_prechecks_let_through_pillow_opens_within_the_limits():
    fuzz(lambda data: parity_target(data, TIGHT), data=mutated_images())


# --- target 3: the decode sandbox -----------------------------------------------------------------


def sandbox_target(data: bytes, limits: Settings) -> None:
    """What an upload does: every check and the real decode, in a sandbox worker."""
    outcome = _fuzz_pool().submit(sandbox_tasks.inspect_or_name_the_escape, data, limits).result()
    assert not outcome.startswith("escaped"), outcome


_pools: list[DecodePool] = []


def _fuzz_pool() -> DecodePool:
    if not _pools:
        _pools.append(DecodePool(dataclasses.replace(DEFAULT, decode_workers=2)))
    return _pools[0]


@pytest.fixture(scope="module", autouse=True)
def _close_fuzz_pool():
    yield
    while _pools:
        _pools.pop().close(grace_seconds=0)


@pytest.mark.slow  # its whole FUZZ_SECONDS budget
def test_fuzz_decode_in_the_sandbox_raises_only_documented_errors():
    def check(data: bytes, tight: bool) -> None:
        sandbox_target(data, TIGHT if tight else DEFAULT)

    fuzz(check, data=mutated_images(), tight=st.booleans())


# --- kept reproducers ---------------------------------------------------------------------------

_TARGETS: dict[str, Callable[[bytes, Settings], None]] = {
    "image": image_target,
    "zip": zip_target,
    "parity": parity_target,
    "sandbox": sandbox_target,
}


@pytest.mark.parametrize("path", sorted(FUZZ_DIR.glob("*.bin")), ids=lambda p: p.name)
def test_reproducer_raises_only_documented_errors(path: Path):
    target = _TARGETS[path.name.split("-", 1)[0]]
    data = path.read_bytes()
    for limits in (DEFAULT, TIGHT):
        target(data, limits)
