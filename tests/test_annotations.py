"""Annotations: the merge rules, the bounds, the rate limit, and the store contract on every session
store (memory, disk, SQLite, PostgreSQL; Redis once the contract suite lists it)."""

from __future__ import annotations

import threading

import pytest

from core.annotations import (
    EMPTY,
    MAX_NOTE_BYTES,
    MAX_TAG_CHARS,
    MAX_TAGS,
    Annotations,
    InvalidAnnotation,
    RateLimited,
    RateLimiter,
    StaleVersion,
    apply_patch,
    clean_tag,
    parse_patch,
    tag_counts,
)
from core.errors import BadRequest, NotFound, QuotaExceeded, TooLarge
from core.storage.base import RECORD_OVERHEAD_BYTES
from tests.helpers import SESSION_STORES, A, B, StoreFactory, image, store_factory

NOW = "2026-11-30T05:00:00.000Z"


def patched(current: Annotations, author: str = "Blue Heron", **body: object) -> Annotations:
    return apply_patch(current, parse_patch(body), author, NOW)


# -- the merge rules --
def test_tags_added_by_two_editors_are_both_kept():
    first = patched(EMPTY, tags_add=["keep"])
    second = patched(first, author="Red Fox", tags_add=["blurry"])
    assert second.tags == ["keep", "blurry"]
    assert second.version == 2 and second.updated_by == "Red Fox" and second.updated_at == NOW


def test_add_wins_over_a_concurrent_remove_of_the_same_tag():
    base = patched(EMPTY, tags_add=["keep"])  # version 1: both editors see "keep"
    readded = patched(base, author="A", tags_add=["keep"])  # A re-adds it at version 2
    after_remove = patched(readded, author="B", tags_remove=["keep"], expected_version=1)  # B saw version 1
    assert after_remove.tags == ["keep"]


def test_a_remove_that_saw_the_tag_removes_it():
    base = patched(EMPTY, tags_add=["keep", "blurry"])
    assert patched(base, tags_remove=["keep"], expected_version=base.version).tags == ["blurry"]
    assert patched(base, tags_remove=["keep"]).tags == ["blurry"]  # no version: it saw the current state


def test_a_tag_added_and_removed_in_one_patch_stays():
    assert patched(EMPTY, tags_add=["x"], tags_remove=["x"]).tags == ["x"]


def test_rating_and_note_are_last_writer_wins():
    first = patched(EMPTY, rating=3, note="first")
    second = patched(first, rating=5, note="second", expected_version=first.version)
    assert (second.rating, second.note, second.version) == (5, "second", 2)
    assert patched(second, rating=None).rating is None  # null clears


def test_stale_rating_is_refused_with_the_current_value():
    first = patched(EMPTY, rating=3)
    second = patched(first, rating=4, expected_version=1)
    with pytest.raises(StaleVersion) as refused:
        patched(second, rating=1, expected_version=1)
    assert refused.value.status_code == 409 and refused.value.current == second


def test_pick_is_last_writer_wins_and_null_clears_it():
    picked = patched(EMPTY, pick="picked")
    rejected = patched(picked, author="Red Fox", pick="rejected", expected_version=picked.version)
    assert (picked.pick, rejected.pick, rejected.version, rejected.updated_by) == ("picked", "rejected", 2, "Red Fox")
    assert patched(rejected, pick=None).pick is None
    assert patched(rejected, rating=4).pick == "rejected"  # a patch without a pick keeps it
    with pytest.raises(StaleVersion):
        patched(rejected, pick="picked", expected_version=picked.version)


def test_a_verdict_stored_before_picks_existed_reads_as_none():
    old_form = '{"tags":[["a",1]],"rating":2,"note":"","version":1,"updated_at":null,"updated_by":null}'
    assert Annotations.from_json(old_form).pick is None


def test_stale_version_does_not_refuse_a_tag_only_patch():
    first = patched(EMPTY, tags_add=["a"])
    second = patched(first, rating=2)
    assert patched(second, tags_add=["b"], expected_version=0).tags == ["a", "b"]


def test_a_patch_that_changes_nothing_keeps_the_version():
    first = patched(EMPTY, tags_add=["a"], rating=2)
    assert patched(first, rating=2) is first
    assert patched(first, tags_remove=["absent"]) is first


def test_stored_form_round_trips():
    value = patched(EMPTY, tags_add=["ä", "b c"], rating=0, note="line 1\nline 2", pick="rejected")
    assert Annotations.from_json(value.to_json()) == value
    assert value.nbytes == len(value.to_json().encode()) and EMPTY.nbytes == 0


# -- bounds and bad input --
def test_tags_lose_control_characters_and_extra_spaces():
    assert clean_tag("  ke\x00ep\u2028 \t me\x1b ") == "keep me"


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ([], BadRequest),
        ({"colour": "red"}, BadRequest),
        ({"tags_add": "keep"}, BadRequest),
        ({"tags_add": [3]}, BadRequest),
        ({"rating": "5"}, BadRequest),
        ({"rating": True}, BadRequest),
        ({"rating": 2.5}, BadRequest),
        ({"note": 7}, BadRequest),
        ({"expected_version": -1}, BadRequest),
        ({"rating": 6}, InvalidAnnotation),
        ({"rating": -1}, InvalidAnnotation),
        ({"pick": True}, BadRequest),
        ({"pick": ["picked"]}, BadRequest),
        ({"pick": "maybe"}, InvalidAnnotation),
        ({"pick": "PICKED"}, InvalidAnnotation),
        ({"tags_add": ["\x00\x01 "]}, InvalidAnnotation),
        ({"tags_add": ["x" * (MAX_TAG_CHARS + 1)]}, TooLarge),
        ({"tags_add": [f"t{i}" for i in range(MAX_TAGS + 1)]}, TooLarge),
        ({"note": "é" * (MAX_NOTE_BYTES // 2 + 1)}, TooLarge),
    ],
)
def test_bad_patches_are_refused_with_a_plain_message(body, error):
    with pytest.raises(error) as refused:
        parse_patch(body)
    assert refused.value.message and refused.value.status_code in (400, 413, 422)


def test_limits_themselves_are_accepted():
    value = patched(EMPTY, tags_add=["x" * MAX_TAG_CHARS], note="n" * MAX_NOTE_BYTES)
    assert value.tags == ["x" * MAX_TAG_CHARS] and len(value.note) == MAX_NOTE_BYTES


def test_an_image_holds_at_most_32_tags():
    full = patched(EMPTY, tags_add=[f"t{i}" for i in range(MAX_TAGS)])
    with pytest.raises(TooLarge):
        patched(full, tags_add=["one more"])
    assert len(patched(full, tags_add=["one more"], tags_remove=["t0"]).tags) == MAX_TAGS


def test_rate_limit_allows_a_burst_then_the_rate_per_client():
    now = [0.0]
    limiter = RateLimiter(rate=2, burst=3, clock=lambda: now[0])
    for _ in range(3):
        limiter.check(A, "tab-1")
    with pytest.raises(RateLimited) as limited:
        limiter.check(A, "tab-1")
    assert limited.value.status_code == 429
    limiter.check(A, "tab-2")  # another tab has its own bucket
    limiter.check(B, "tab-1")  # and so has the same client name in another workspace
    now[0] = 0.5  # one edit's worth of time
    limiter.check(A, "tab-1")
    with pytest.raises(RateLimited):
        limiter.check(A, "tab-1")


def test_rate_limiter_remembers_a_bounded_number_of_clients():
    limiter = RateLimiter(rate=1, burst=1, max_clients=10, clock=lambda: 0.0)
    for n in range(100):
        limiter.check(A, f"client-{n}")
    assert len(limiter._buckets) == 10


def test_tag_counts_are_most_used_first():
    one = patched(EMPTY, tags_add=["keep", "blurry"])
    two = patched(EMPTY, tags_add=["keep"])
    assert tag_counts({"a": one, "b": two}) == [("keep", 2), ("blurry", 1)]


# -- the store contract --
@pytest.fixture(params=SESSION_STORES)
def make_session_store(request, tmp_path) -> StoreFactory:
    """The contract suite's session stores (every store mode it lists)."""
    return store_factory(request.param, request, tmp_path)


def _change(body: dict, author: str = "Blue Heron"):
    patch = parse_patch(body)
    return lambda current: apply_patch(current, patch, author, NOW)


def test_store_keeps_annotations_per_image(make_session_store):
    store = make_session_store()
    first = store.add(A, image(1)).record.id
    second = store.add(A, image(2)).record.id
    assert store.get_annotations(A, first) == EMPTY
    stored = store.patch_annotations(A, first, _change({"tags_add": ["keep"], "rating": 4, "note": "sharp"}))
    assert store.get_annotations(A, first) == stored
    assert store.get_annotations(A, second) == EMPTY
    assert store.list_annotations(A) == {first: stored}
    assert stored.tags == ["keep"] and stored.rating == 4 and stored.note == "sharp" and stored.version == 1


def test_store_annotations_of_another_session_are_not_found(make_session_store):
    store = make_session_store()
    image_id = store.add(A, image(1)).record.id
    with pytest.raises(NotFound):
        store.get_annotations(B, image_id)
    with pytest.raises(NotFound):
        store.patch_annotations(B, image_id, _change({"tags_add": ["x"]}))
    with pytest.raises(NotFound):
        store.get_annotations(A, "0" * 32)
    assert store.list_annotations(B) == {} and store.get_annotations(A, image_id) == EMPTY


def test_store_refused_change_stores_nothing(make_session_store):
    store = make_session_store()
    image_id = store.add(A, image(1)).record.id
    first = store.patch_annotations(A, image_id, _change({"rating": 2}))
    store.patch_annotations(A, image_id, _change({"rating": 3, "expected_version": 1}))
    with pytest.raises(StaleVersion) as refused:
        store.patch_annotations(A, image_id, _change({"rating": 5, "tags_add": ["x"], "expected_version": 1}))
    assert refused.value.current.rating == 3 and refused.value.current.version == first.version + 1
    assert store.get_annotations(A, image_id).tags == []


def test_concurrent_patches_from_two_clients_lose_no_tag(make_session_store):
    store = make_session_store()
    image_id = store.add(A, image(1)).record.id
    per_client = 12
    start = threading.Barrier(2)
    failures: list[BaseException] = []

    def client(name: str) -> None:
        start.wait()
        try:
            for n in range(per_client):
                store.patch_annotations(A, image_id, _change({"tags_add": [f"{name}-{n}"], "note": name}, name))
        except BaseException as exc:  # noqa: BLE001  reported by the assertion below
            failures.append(exc)

    threads = [threading.Thread(target=client, args=(name,)) for name in ("left", "right")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures
    final = store.get_annotations(A, image_id)
    expected = {f"{name}-{n}" for name in ("left", "right") for n in range(per_client)}
    assert set(final.tags) == expected
    assert final.version == 2 * per_client  # every patch was applied, one after the other
    assert final.note == final.updated_by  # the note is the last writer's


def test_concurrent_add_and_remove_of_one_tag_keeps_it(make_session_store):
    store = make_session_store()
    image_id = store.add(A, image(1)).record.id
    seen = store.patch_annotations(A, image_id, _change({"tags_add": ["keep"]}))
    # Both clients saw version 1; one re-adds "keep", the other removes it: whichever lands last,
    # the add wins.
    store.patch_annotations(A, image_id, _change({"tags_add": ["keep"]}, "adder"))
    store.patch_annotations(A, image_id, _change({"tags_remove": ["keep"], "expected_version": seen.version}))
    assert store.get_annotations(A, image_id).tags == ["keep"]


def test_annotations_count_toward_the_quota(make_session_store):
    probe = make_session_store()
    probe_id = probe.add(A, image(1)).record.id
    held = probe.bytes_held(A)
    stored = probe.patch_annotations(A, probe_id, _change({"note": "n" * 1000}))
    assert probe.bytes_held(A) == held + stored.nbytes
    probe.delete(A, probe_id)
    assert probe.bytes_held(A) == 0


def test_annotation_over_the_quota_is_refused_and_nothing_stored(make_session_store):
    item = image(1)
    store = make_session_store(quota=RECORD_OVERHEAD_BYTES + len(item.data) + len(item.thumbnail) + 300)
    image_id = store.add(A, item).record.id
    small = store.patch_annotations(A, image_id, _change({"tags_add": ["keep"]}))
    with pytest.raises(QuotaExceeded):
        store.patch_annotations(A, image_id, _change({"note": "n" * 1000}))
    assert store.get_annotations(A, image_id) == small


def test_annotations_go_with_their_image(make_session_store):
    store = make_session_store()
    image_id = store.add(A, image(1)).record.id
    store.patch_annotations(A, image_id, _change({"tags_add": ["keep"]}))
    store.delete(A, image_id)
    again = store.add(A, image(1)).record.id
    assert store.get_annotations(A, again) == EMPTY and store.list_annotations(A) == {}
    store.patch_annotations(A, again, _change({"tags_add": ["keep"]}))
    store.clear(A)
    assert store.list_annotations(A) == {} and store.bytes_held(A) == 0


@pytest.mark.parametrize("kind", ["disk", "sqlite"])
def test_annotations_survive_a_restart(kind, request, tmp_path):
    make = store_factory(kind, request, tmp_path)
    store = make()
    image_id = store.add(A, image(1)).record.id
    stored = store.patch_annotations(A, image_id, _change({"tags_add": ["keep"], "rating": 5, "note": "ok"}))
    held = store.bytes_held(A)
    restarted = make()
    assert restarted.get_annotations(A, image_id) == stored
    assert restarted.list_annotations(A) == {image_id: stored}
    assert restarted.bytes_held(A) == held


def test_sql_schema_1_database_gains_annotations(tmp_path):
    from sqlalchemy import update

    from core.storage.sql import SCHEMA_VERSION, SqlStore, annotations_table, meta

    url = f"sqlite:///{tmp_path / 'darkroom.db'}"
    old = SqlStore(url, str(tmp_path / "blobs"), 10**9, 10**9)
    image_id = old.add(A, image(1)).record.id
    annotations_table.drop(old.engine)
    with old.engine.begin() as connection:
        connection.execute(update(meta).values(value="1"))
    upgraded = SqlStore(url, str(tmp_path / "blobs"), 10**9, 10**9)
    assert upgraded.get_annotations(A, image_id) == EMPTY
    assert upgraded.patch_annotations(A, image_id, _change({"tags_add": ["x"]})).tags == ["x"]
    with upgraded.engine.connect() as connection:
        assert connection.execute(meta.select()).first().value == str(SCHEMA_VERSION)
