"""Unit tests of the guarded ZIP reader (``core/archive.py``): archives built here byte by byte,
so each test says exactly which header lies, overlaps or is cut, plus every hostile ZIP on file."""

from __future__ import annotations

import dataclasses
import io
import tracemalloc
import zipfile

import pytest

from core.archive import ZipMember, ZipProblem, inflate_bounded, iter_members, read_central_directory
from core.config import MiB, Settings
from core.errors import DarkroomError, TooLarge, UnsafeArchive
from tests.helpers import Raw, build_zip, deflate, hostile, make_jpeg

SETTINGS = Settings()
NO_LARGE_ALLOCATION = 2 * MiB  # tracemalloc peak while reading a bomb: far below what it unpacks to


def stdlib_zip(files: dict[str, bytes], **options: object) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            with archive.open(name, "w", **options) as member:
                member.write(data)
    return out.getvalue()


def read_all(data: bytes, settings: Settings = SETTINGS) -> list[ZipMember | ZipProblem]:
    return list(iter_members(data, settings))


def members(data: bytes, settings: Settings = SETTINGS) -> dict[str, bytes]:
    return {item.name: item.data for item in read_all(data, settings) if isinstance(item, ZipMember)}


PHOTOS = {"photos/a.jpg": make_jpeg(seed=1), "b.jpg": make_jpeg(seed=2)}


# -- what a well-formed archive gives --
def test_members_come_out_byte_for_byte_in_archive_order():
    items = read_all(stdlib_zip(PHOTOS))
    assert [(item.name, item.data) for item in items if isinstance(item, ZipMember)] == list(PHOTOS.items())


def test_hand_built_archive_reads_like_the_standard_library_reads_it():
    data = build_zip([Raw(name, content) for name, content in PHOTOS.items()])
    assert zipfile.ZipFile(io.BytesIO(data)).testzip() is None
    assert members(data) == PHOTOS


# -- ZIP64 --
def test_zip64_sizes_and_offsets_in_extra_fields_are_read():
    data = build_zip([Raw(name, content) for name, content in PHOTOS.items()], zip64=True)
    assert zipfile.ZipFile(io.BytesIO(data)).read("b.jpg") == PHOTOS["b.jpg"]  # the builder is a valid ZIP64
    assert members(data) == PHOTOS


def test_zip64_local_headers_from_the_standard_library_are_read():
    assert members(stdlib_zip(PHOTOS, force_zip64=True)) == PHOTOS


def test_zip64_archive_behind_a_prepended_stub_is_read():
    data = b"MZ" + bytes(5000) + build_zip([Raw(name, content) for name, content in PHOTOS.items()], zip64=True)
    assert members(data) == PHOTOS


def test_zip64_entry_count_is_held_to_the_entry_limit():
    data = build_zip([Raw(f"{i}.jpg", b"x") for i in range(12)], zip64=True)
    with pytest.raises(TooLarge, match="12 entries; the limit is 10"):
        read_central_directory(data, dataclasses.replace(SETTINGS, zip_max_entries=10))


def test_zip64_record_without_its_signature_is_refused():
    data = bytearray(build_zip([Raw("a.jpg", b"x")], zip64=True))
    record_at = data.index(b"PK\x06\x06")
    data[record_at : record_at + 4] = b"XXXX"
    with pytest.raises(UnsafeArchive, match="damaged ZIP64 record"):
        read_all(bytes(data))


# -- prepended stub (self-extractor) --
@pytest.mark.parametrize("stub_size", [1, 4096, 70_000])
def test_archive_behind_a_prepended_stub_is_read(stub_size):
    stub = (b"MZ\x90\x00" * stub_size)[:stub_size]
    assert members(stub + stdlib_zip(PHOTOS)) == PHOTOS


# -- overlapping members --
def test_two_entries_sharing_one_local_header_are_refused():
    content = make_jpeg(seed=3)
    data = build_zip([Raw("a.jpg", content), Raw("b.jpg", content)], header_offsets=[0, 0])
    with pytest.raises(UnsafeArchive, match="overlap"):
        read_all(data)


def test_entry_pointing_into_another_members_data_is_refused():
    first = Raw("a.jpg", make_jpeg(seed=4))
    # The second entry's header starts 10 bytes into the first member's compressed data.
    inside_first = 30 + len(first.name) + 10
    data = build_zip([first, Raw("b.jpg", b"PK\x03\x04")], header_offsets=[0, inside_first])
    with pytest.raises(UnsafeArchive):
        read_all(data)


def test_entry_pointing_past_the_members_is_refused():
    data = build_zip([Raw("a.jpg", b"abc")], header_offsets=[10_000])
    with pytest.raises(UnsafeArchive, match="outside the archive"):
        read_all(data)


# -- sizes that lie --
def test_members_that_declare_1000_bytes_and_inflate_to_25_mib_are_refused_at_the_first():
    bomb = deflate(bytes(25 * MiB))  # about 25 KiB, reused by every member
    data = build_zip([Raw(f"{i:03}.jpg", payload=bomb, declared_size=1000, crc=0) for i in range(300)])
    items: list[ZipMember | ZipProblem] = []
    tracemalloc.start()
    try:
        with pytest.raises(TooLarge, match="'000.jpg' unpacks to more than the 1000 bytes its header declares"):
            items.extend(iter_members(data, SETTINGS))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert items == []
    assert peak < NO_LARGE_ALLOCATION


def test_inflation_stops_one_byte_past_the_limit():
    bomb = deflate(bytes(25 * MiB))
    out, ended = inflate_bounded(bomb, 1000)
    assert len(out) == 1001 and not ended
    out, ended = inflate_bounded(bomb, 25 * MiB)
    assert len(out) == 25 * MiB and ended


def test_a_lie_over_the_ratio_floor_is_refused_as_a_bomb():
    bomb = deflate(bytes(8 * MiB))
    data = build_zip([Raw("big.jpg", payload=bomb, declared_size=2 * MiB, crc=0)])
    settings = dataclasses.replace(SETTINGS, zip_max_ratio=1000.0)
    with pytest.raises(TooLarge, match="'big.jpg' unpacks to more than"):
        read_all(data, settings)


def test_member_declared_over_the_file_limit_is_refused_without_inflating_it():
    big = bytes(10 * MiB)
    data = build_zip([Raw("big.jpg", big), Raw("small.jpg", b"small")])
    settings = dataclasses.replace(SETTINGS, max_file_bytes=MiB, zip_max_ratio=10_000.0)
    tracemalloc.start()
    try:
        items = read_all(data, settings)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert items == [
        ZipProblem("big.jpg", "the file is over the 1 MiB limit", 413),
        ZipMember("small.jpg", b"small"),
    ]
    assert peak < NO_LARGE_ALLOCATION


def test_members_declared_over_the_file_limit_count_toward_the_unpacked_total():
    data = build_zip([Raw(f"{i}.jpg", bytes(3 * MiB)) for i in range(4)])
    settings = dataclasses.replace(SETTINGS, max_file_bytes=MiB, zip_max_total_bytes=10 * MiB, zip_max_ratio=1e6)
    with pytest.raises(TooLarge, match="would unpack to 12 MiB; the limit is 10 MiB"):
        read_all(data, settings)


def test_declared_ratio_applies_to_members_over_the_file_limit():
    data = build_zip([Raw("big.jpg", bytes(30 * MiB))])
    with pytest.raises(TooLarge, match="compressed more than 100:1"):
        read_all(data, dataclasses.replace(SETTINGS, zip_max_total_bytes=100 * MiB))


def test_member_shorter_than_declared_is_reported_damaged_and_the_rest_is_read():
    data = build_zip([Raw("short.jpg", b"abc", declared_size=5000), Raw("ok.jpg", b"fine")])
    items = read_all(data)
    assert isinstance(items[0], ZipProblem) and items[0].status == 422 and "damaged" in items[0].reason
    assert items[1] == ZipMember("ok.jpg", b"fine")


def test_wrong_checksum_is_reported_damaged():
    [item] = read_all(build_zip([Raw("a.jpg", b"content", crc=1234)]))
    assert isinstance(item, ZipProblem) and item.status == 422


def test_stored_member_whose_sizes_disagree_is_reported_damaged():
    data = build_zip([Raw("a.jpg", b"0123456789", method=zipfile.ZIP_STORED, declared_size=4)])
    [item] = read_all(data)
    assert isinstance(item, ZipProblem) and item.status == 422


# -- truncated and damaged --
def test_every_truncation_of_an_archive_is_refused_cleanly():
    data = stdlib_zip(PHOTOS)
    for cut in range(0, len(data) - 1, 7):
        with pytest.raises(UnsafeArchive, match="not a valid ZIP archive"):
            read_all(data[:cut])


def test_cut_deflate_stream_is_reported_damaged():
    content = make_jpeg(seed=5)
    data = build_zip([Raw("cut.jpg", content, payload=deflate(content)[:-40]), Raw("ok.jpg", b"fine")])
    items = read_all(data)
    assert isinstance(items[0], ZipProblem) and items[0].status == 422
    assert items[1] == ZipMember("ok.jpg", b"fine")


def test_garbage_deflate_data_is_reported_damaged():
    [item] = read_all(build_zip([Raw("a.jpg", b"x" * 100, payload=b"\xff" * 64)]))
    assert isinstance(item, ZipProblem) and item.status == 422 and "damaged" in item.reason


def test_flipped_bytes_give_only_errors_a_user_can_read():
    data = stdlib_zip(PHOTOS)
    for position in range(0, len(data), 3):
        damaged = bytearray(data)
        damaged[position] ^= 0xFF
        try:
            read_all(bytes(damaged))
        except DarkroomError as exc:
            assert exc.status_code in (413, 422) and "<" not in exc.message


# -- the hostile archives on file (tests/data/hostile/EXPECTED.md) --
REFUSED_WHOLE = {
    "zip_slip.zip": (UnsafeArchive, "unsafe path"),
    "zip_absolute_path.zip": (UnsafeArchive, "unsafe path"),
    "zip_symlink.zip": (UnsafeArchive, "symbolic link"),
    "zip_encrypted.zip": (UnsafeArchive, "encrypted"),
    "zip_duplicate_names.zip": (UnsafeArchive, "appears twice"),
    "zip_bomb_bzip2_1GiB.zip": (UnsafeArchive, "only stored and deflate"),
    "zip_bomb_deflate_500MiB.zip": (TooLarge, "would unpack to 500 MiB"),
    "zip_10000_entries.zip": (TooLarge, "10000 entries"),
    "not_a_zip.zip": (UnsafeArchive, "not a valid ZIP"),
    "zip_truncated.zip": (UnsafeArchive, "not a valid ZIP"),
}


@pytest.mark.parametrize("name", sorted(REFUSED_WHOLE))
def test_hostile_archive_is_refused_whole_before_anything_is_inflated(name):
    error, words = REFUSED_WHOLE[name]
    tracemalloc.start()
    try:
        with pytest.raises(error, match=words):
            read_all(hostile(name))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < NO_LARGE_ALLOCATION + 2 * len(hostile(name))


TAKEN = {
    "zip_good.zip": ["photos/a.jpg", "photos/b.png", "c.jpg"],
    "zip_junk.zip": ["photos/IMG_0001.jpg"],
    "zip_non_image.zip": ["a.jpg", "run.sh", "fake.jpg"],  # ingest tells images apart, not the archive
    "zip_nested.zip": ["b.jpg"],
    "zip_weird_names.zip": None,  # two members, names as stored
    "zip_non_utf8_names.zip": None,
    "zip_bad_utf8_flagged.zip": None,
}


@pytest.mark.parametrize("name", sorted(TAKEN))
def test_hostile_archive_that_is_acceptable_yields_its_members(name):
    items = read_all(hostile(name))
    taken = [item.name for item in items if isinstance(item, ZipMember)]
    if TAKEN[name] is not None:
        assert taken == TAKEN[name]
    else:
        assert taken
    if name == "zip_nested.zip":
        assert ZipProblem("more_photos.zip", "nested archives are not opened") in items
