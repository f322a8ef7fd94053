"""The one upload pipeline (``core.uploads``): every way in hands a part to ``prepare_part``, and
the seed's service names stay on ``core.data_service``."""

from __future__ import annotations

import asyncio
import io
import zipfile

from core import data_service, uploads, workspace
from core.ingest import IngestedImage
from tests.helpers import make_jpeg


def _archive(**members: bytes) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


def _prepared(data: bytes, filename: str, archives: bool) -> tuple[list[uploads.Prepared], list[uploads.Skipped]]:
    return asyncio.run(uploads.prepare_part(uploads.Part.arrived(data, filename, archives)))


def test_a_photo_part_becomes_one_prepared_image(configure):
    [image], skipped = _prepared(make_jpeg(), "photo.jpg", archives=True)
    assert isinstance(image, IngestedImage) and image.filename == "photo.jpg" and skipped == []


def test_an_archive_part_becomes_its_images_and_the_entries_it_skipped(configure):
    prepared, skipped = _prepared(_archive(**{"a.jpg": make_jpeg(seed=1), "notes.txt": b"hi"}), "a.zip", True)
    assert [item.filename for item in prepared] == ["a.jpg"] and isinstance(prepared[0], IngestedImage)
    assert [entry.filename for entry in skipped] == ["notes.txt"]


def test_an_archive_refused_whole_is_one_rejection_under_its_name(configure):
    [no_images], skipped = _prepared(_archive(**{"notes.txt": b"hi"}), "text.zip", True)
    assert (no_images.filename, no_images.status, skipped) == ("text.zip", 415, [])
    assert "no supported images" in no_images.detail
    [broken], _ = _prepared(b"PK\x03\x04" + bytes(100), "broken.zip", True)
    assert (broken.filename, broken.status) == ("broken.zip", 422)


def test_a_zip_sent_where_only_photos_are_taken_is_an_unsupported_file(configure):
    part = uploads.Part.arrived(_archive(**{"a.jpg": make_jpeg()}), "a.zip", archives=False)
    assert not part.archive
    [refused], skipped = asyncio.run(uploads.prepare_part(part))
    assert (refused.filename, refused.status, skipped) == ("a.zip", 415, [])


def test_the_seeds_four_service_names_stay_on_data_service():
    assert data_service.save_uploaded_images is uploads.save_uploaded_images
    assert data_service.save_and_extract_zip is uploads.save_and_extract_zip
    assert data_service.load_image is workspace.load_image
    assert data_service.get_all_image_ids is workspace.get_all_image_ids
    assert not hasattr(data_service, "no_such_service")
