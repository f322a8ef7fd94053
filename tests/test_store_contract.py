"""The ImageStore contract, run against every store (Cosmic Python style: one suite, many adapters):
memory, disk (a folder per session), SQL on SQLite and on a real PostgreSQL, a real throw-away Redis,
and the legacy folder.

Namespace isolation, the global cap and expiry are part of the contract only for session stores;
the legacy folder is one shared namespace by design, so those tests run on the session stores."""

from __future__ import annotations

import time

import pytest

from core.config import Settings
from core.errors import CapacityExceeded, NotFound, QuotaExceeded
from core.ingest import ingest_image
from core.storage.disk import FolderStore
from core.storage.memory import RECORD_OVERHEAD_BYTES
from tests.helpers import SESSION_STORES, A, B, StoreFactory, image, store_factory


@pytest.fixture(params=[*SESSION_STORES, "legacy-folder"])
def make_store(request, tmp_path) -> StoreFactory:
    return store_factory(request.param, request, tmp_path)


@pytest.fixture(params=SESSION_STORES)
def make_session_store(request, tmp_path) -> StoreFactory:
    return store_factory(request.param, request, tmp_path)


def test_added_image_is_listed_and_readable(make_store):
    store = make_store()
    item = image(1)
    outcome = store.add(A, item)
    assert not outcome.duplicate
    assert store.list(A) == [outcome.record]
    assert store.get(A, outcome.record.id) == outcome.record
    assert store.read(A, outcome.record.id) == item.data
    assert store.read_thumbnail(A, outcome.record.id) == item.thumbnail
    assert outcome.record.sha256 == item.sha256 and outcome.record.size_bytes == len(item.data)


def test_list_keeps_upload_order(make_store):
    store = make_store()
    ids = [store.add(A, image(seed)).record.id for seed in range(5)]
    assert [r.id for r in store.list(A)] == ids


def test_same_bytes_same_name_is_a_duplicate_and_not_stored(make_store):
    store = make_store()
    first = store.add(A, image(1)).record
    again = store.add(A, image(1))
    assert again.duplicate and again.record == first
    assert len(store.list(A)) == 1


def test_same_bytes_new_name_gets_a_record_sharing_the_bytes(make_store):
    store = make_store()
    first = store.add(A, image(1, "a.jpg")).record
    second = store.add(A, image(1, "copy.jpg"))
    assert not second.duplicate and second.same_bytes_as == first
    assert [r.filename for r in store.list(A)] == ["a.jpg", "copy.jpg"]
    store.delete(A, first.id)
    assert store.read(A, second.record.id) == image(1).data


def test_unknown_image_is_not_found(make_store):
    store = make_store()
    with pytest.raises(NotFound):
        store.get(A, "0" * 32)
    with pytest.raises(NotFound):
        store.read(A, "0" * 32)


def test_delete_removes_image_and_its_cache(make_store):
    store = make_store()
    record = store.add(A, image(1)).record
    store.cache_put(A, record.id, "features", {"x": 1}, 100)
    assert store.cache_get(A, record.id, "features") == {"x": 1}
    store.delete(A, record.id)
    assert store.list(A) == []
    with pytest.raises(NotFound):
        store.cache_get(A, record.id, "features")
    with pytest.raises(NotFound):
        store.delete(A, record.id)


def test_clear_removes_everything(make_store):
    store = make_store()
    for seed in range(3):
        store.add(A, image(seed))
    assert store.clear(A) == 3
    assert store.list(A) == []
    assert store.clear(A) == 0


def test_quota_refuses_the_image_that_does_not_fit_and_keeps_the_rest(make_store):
    first, second = image(1), image(2)
    store = make_store(quota=len(first.data) + len(first.thumbnail) + RECORD_OVERHEAD_BYTES + 10)
    store.add(A, first)
    with pytest.raises(QuotaExceeded) as error:
        store.add(A, second)
    assert error.value.status_code == 413
    assert len(store.list(A)) == 1


def test_session_store_keeps_namespaces_apart(make_session_store):
    store = make_session_store()
    record = store.add(A, image(1)).record
    assert store.list(B) == []
    with pytest.raises(NotFound):
        store.read(B, record.id)
    with pytest.raises(NotFound):
        store.delete(B, record.id)
    store.clear(B)
    assert store.list(A) == [record]


def test_same_bytes_in_two_sessions_are_two_private_copies(make_session_store):
    store = make_session_store()
    in_a = store.add(A, image(1))
    in_b = store.add(B, image(1))
    assert not in_b.duplicate and in_b.same_bytes_as is None  # no cross-session dedup
    assert in_a.record.id != in_b.record.id


def test_accounting_counts_originals_thumbnails_and_caches(make_store):
    store = make_store()
    item = image(1)
    record = store.add(A, item).record
    base = len(item.data) + len(item.thumbnail) + RECORD_OVERHEAD_BYTES
    assert store.bytes_held(A) == base
    store.cache_put(A, record.id, "features", {"n": 1}, 5000)
    assert store.bytes_held(A) == base + 5000
    store.cache_put(A, record.id, "features", {"n": 1}, 1000)  # replacing a cache entry re-counts it
    assert store.bytes_held(A) == base + 1000
    copy = store.add(A, image(1, "copy.jpg")).record  # shared bytes are counted once
    assert store.bytes_held(A) == base + 1000 + RECORD_OVERHEAD_BYTES
    store.delete(A, record.id)
    store.delete(A, copy.id)
    assert store.bytes_held(A) == 0 and store.totals().bytes_held == 0


def test_global_cap_refuses_with_507_across_sessions(make_session_store):
    item = image(1)
    one = len(item.data) + len(item.thumbnail) + RECORD_OVERHEAD_BYTES
    store = make_session_store(capacity=one + 10)
    store.add(A, item)
    with pytest.raises(CapacityExceeded) as error:
        store.add(B, image(2))
    assert error.value.status_code == 507
    assert store.list(B) == []


def test_cache_over_quota_is_refused(make_store):
    item = image(1)
    store = make_store(quota=len(item.data) + len(item.thumbnail) + RECORD_OVERHEAD_BYTES + 10)
    record = store.add(A, item).record
    with pytest.raises(QuotaExceeded):
        store.cache_put(A, record.id, "features", {"n": 1}, 1000)


@pytest.mark.slow
def test_idle_sessions_expire_and_used_ones_stay(make_session_store):
    store = make_session_store()
    store.add(A, image(1))
    time.sleep(1.5)  # stores note use at most once a second
    store.add(B, image(2))
    expired = store.expire_idle(idle_seconds=1.0)
    assert expired == [A]
    assert store.list(A) == [] and len(store.list(B)) == 1
    assert store.totals().sessions == 1


def test_folder_store_writes_record_last_and_ignores_leftovers(tmp_path):
    folder = tmp_path / "images"
    store = FolderStore(folder, 10**9)
    record = store.add("legacy", image(1)).record
    (folder / ".tmp-crashed").write_bytes(b"partial")
    orphan = "a" * 32
    (folder / f"{orphan}.jpg").write_bytes(b"half an upload")
    reopened = FolderStore(folder, 10**9)
    assert [r.id for r in reopened.list("legacy")] == [record.id]
    assert not (folder / ".tmp-crashed").exists()
    assert not (folder / f"{orphan}.jpg").exists()
    names = {p.name for p in folder.iterdir()}
    assert names == {f"{record.id}.jpg", f"{record.id}.thumb", f"{record.id}.json"}


def test_totals_add_up_the_sessions_through_adds_deletes_and_clears(make_session_store):
    store = make_session_store()
    a = [store.add(A, image(seed)).record for seed in range(3)]
    store.add(A, image(0, "copy.jpg"))  # shared bytes
    store.add(B, image(5))
    assert store.totals().bytes_held == store.bytes_held(A) + store.bytes_held(B)
    assert store.totals().images == 5
    store.delete(A, a[0].id)  # its bytes stay, held for "copy.jpg"
    assert store.totals().bytes_held == store.bytes_held(A) + store.bytes_held(B)
    assert store.totals().images == 4
    store.clear(A)
    assert store.totals().bytes_held == store.bytes_held(B) > 0
    assert store.totals().images == 1
    store.add(A, image(7))
    store.expire_idle(idle_seconds=0)  # both sessions: the count follows them out
    assert store.totals().images == 0


@pytest.mark.parametrize("fmt", ["AVIF", "HEIF", "WEBP", "TIFF", "BMP", "GIF", "PNG"])
def test_every_allowed_format_round_trips(make_store, fmt):
    import io

    import pillow_heif
    from PIL import Image

    picture = Image.new("RGB", (40, 30), (200, 80, 20))
    out = io.BytesIO()
    if fmt == "HEIF":
        pillow_heif.from_pillow(picture).save(out, quality=60)
    else:
        picture.save(out, fmt)
    stored = ingest_image(out.getvalue(), f"picture.{fmt.lower()}", Settings())
    assert stored.format == fmt
    store = make_store()
    record = store.add(A, stored).record
    assert store.read(A, record.id) == out.getvalue()
    assert store.get(A, record.id).format == fmt


def test_a_session_exists_once_touched_or_used_and_not_after_it_is_cleared(make_session_store):
    store = make_session_store()
    assert not store.has_session(A) and not store.has_session(B)
    store.touch(A)
    store.add(B, image(1))
    assert store.has_session(A) and store.has_session(B)
    assert store.session_count() == 2
    store.clear(A)
    store.clear(B)
    assert not store.has_session(A) and not store.has_session(B)
