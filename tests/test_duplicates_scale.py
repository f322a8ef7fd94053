"""Duplicates at scale: near-duplicate groups come from multi-index hashing, give the same answer
as comparing every pair, stay within a bounded amount of work, and no whole-workspace loop of the
feature API runs on the event loop."""

from __future__ import annotations

import asyncio
import functools
import io
import random
import threading

import numpy as np
import pytest
from PIL import Image

from core import workspace
from core.errors import TooLarge
from core.features import near_duplicates
from core.features import service as feature_service
from core.features.hashes import hash_value
from core.features.near_duplicates import ALL_PAIRS, MULTI_INDEX, SearchStopped, near_duplicate_groups
from tests.helpers import DATA, make_jpeg, new_session, upload

THRESHOLDS = [0, 1, 2, 4, 7, 10, 16, 32, 64]


def group_like_the_seed(distances_within: list[tuple[int, int, int]], count: int) -> list[tuple[list[int], int]]:
    """The seed's grouping, verbatim: union-find over the links (i, j, distance) in the order of
    its pair loop (i ascending, then j), keeping each group's widest link."""
    parent = list(range(count))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    widest: dict[int, int] = {}
    for i, j, distance in distances_within:
        a, b = root(i), root(j)
        if a != b:
            parent[b] = a
        widest[a] = max(widest.get(a, 0), widest.pop(b, 0) if a != b else 0, distance)
    groups: dict[int, list[int]] = {}
    for i in range(count):
        groups.setdefault(root(i), []).append(i)
    return [(members, widest.get(group_root, 0)) for group_root, members in groups.items() if len(members) > 1]


def every_pair_in_python(hashes: list[int], threshold: int) -> list[tuple[list[int], int]]:
    """The seed's O(n^2) loop: every pair's popcount, in plain Python."""
    links = []
    for i in range(len(hashes)):
        for j in range(i + 1, len(hashes)):
            distance = (hashes[i] ^ hashes[j]).bit_count()
            if distance <= threshold:
                links.append((i, j, distance))
    return group_like_the_seed(links, len(hashes))


def every_pair_row_by_row(hashes: list[int], threshold: int) -> list[tuple[list[int], int]]:
    """The same O(n^2) loop with each row's popcounts computed by numpy (for 20,000 hashes)."""
    values = np.array(hashes, dtype=np.uint64)
    links = []
    for i in range(values.size - 1):
        distance = np.bitwise_count(values[i] ^ values[i + 1 :])
        for offset in np.flatnonzero(distance <= threshold).tolist():
            links.append((i, i + 1 + offset, int(distance[offset])))
    return group_like_the_seed(links, len(hashes))


def hashes_with_planted_neighbours(count: int, seed: int) -> list[int]:
    """Random 64-bit hashes, a fifth of them planted near another (0 to 8 bits flipped, so some
    are exact copies and some chains link transitively), in random positions."""
    rng = random.Random(seed)
    hashes = [rng.getrandbits(64) for _ in range(count - count // 5)]
    while len(hashes) < count:
        near = rng.choice(hashes)
        for bit in rng.sample(range(64), rng.randint(0, 8)):
            near ^= 1 << bit
        hashes.insert(rng.randrange(len(hashes) + 1), near)
    return hashes


@pytest.mark.parametrize("threshold", THRESHOLDS)
def test_groups_and_distances_are_the_all_pairs_loops_at_every_threshold(threshold):
    hashes = hashes_with_planted_neighbours(700, seed=threshold)
    found = near_duplicate_groups(hashes, threshold)
    assert found.groups == every_pair_in_python(hashes, threshold)
    assert any(distance > 0 for _, distance in found.groups) or threshold == 0


@pytest.mark.parametrize("threshold", [0, 4])
def test_all_equal_hashes_are_one_group_found_without_comparing(threshold):
    found = near_duplicate_groups([0xFFFF_0000_FFFF_0000] * 5000, threshold)
    assert found.groups == [(list(range(5000)), 0)]
    assert found.comparisons == 0


def test_small_thresholds_use_buckets_and_large_ones_every_pair():
    hashes = hashes_with_planted_neighbours(700, seed=1)
    assert near_duplicate_groups(hashes, 4).method == MULTI_INDEX
    assert near_duplicate_groups(hashes, 64).method == ALL_PAIRS


# Pairs compared per hash in the buckets of 20,000 random hashes: the loop compares 10,000.
@pytest.mark.parametrize("threshold, most_pairs_per_hash", [(2, 1), (4, 20), (6, 200)])
def test_twenty_thousand_hashes_are_grouped_from_their_buckets_as_every_pair_would(threshold, most_pairs_per_hash):
    hashes = hashes_with_planted_neighbours(20_000, seed=20_000 + threshold)
    found = near_duplicate_groups(hashes, threshold)
    assert found.method == MULTI_INDEX
    assert found.comparisons < most_pairs_per_hash * len(hashes)
    assert found.groups == every_pair_row_by_row(hashes, threshold)
    assert len(found.groups) > 1000


def test_the_chunks_cover_the_64_bits_once():
    for threshold in range(64):
        bounds = near_duplicates.chunk_bounds(threshold)
        assert len(bounds) == threshold + 1
        assert [low for low, _ in bounds] == list(np.cumsum([0] + [width for _, width in bounds[:-1]]))
        assert sum(width for _, width in bounds) == 64 and min(width for _, width in bounds) >= 1
    assert near_duplicates.chunk_bounds(64) == []


def test_a_search_over_its_budget_is_refused_before_comparing():
    hashes = hashes_with_planted_neighbours(300, seed=3)
    with pytest.raises(TooLarge) as refused:
        near_duplicate_groups(hashes, 64, max_comparisons=1000)
    assert refused.value.status_code == 413
    assert refused.value.message == (
        "finding near duplicates within 64 bits among 300 images would compare more than the 1,000 pairs "
        "one search may; use a smaller threshold"
    )
    assert near_duplicate_groups(hashes, 2, max_comparisons=1000).method == MULTI_INDEX  # few pairs share a bucket


@pytest.mark.parametrize("threshold", [4, 64])
def test_a_stopped_search_ends_at_its_next_batch(threshold):
    stop = threading.Event()
    stop.set()
    with pytest.raises(SearchStopped):
        near_duplicate_groups(hashes_with_planted_neighbours(2000, seed=4), threshold, stop=stop)


# -- through the API --
def _workspace(api) -> tuple[str, dict[str, str]]:
    """A session holding near copies, same pixels in other bytes and unrelated images; its images'
    pHashes by id."""
    session = new_session(api)
    photo = Image.open(DATA / "features" / "images" / "chelsea.png").convert("RGB")
    files = [("cat.png", (DATA / "features" / "images" / "chelsea.png").read_bytes())]
    for name, image, fmt in [
        ("cat.bmp", photo, "BMP"),
        ("half.png", photo.resize((photo.width // 2, photo.height // 2)), "PNG"),
        ("crop.png", photo.crop((4, 4, photo.width - 4, photo.height - 4)), "PNG"),
        ("cat.jpg", photo, "JPEG"),
    ]:
        out = io.BytesIO()
        image.save(out, fmt)
        files.append((name, out.getvalue()))
    files.append(("camera.png", (DATA / "features" / "images" / "camera.png").read_bytes()))
    files += [(f"noise{i}.jpg", make_jpeg(64, 48, seed=i)) for i in range(6)]
    assert len(upload(api, session, *files).json()["accepted"]) == len(files)
    table = api.get("/api/features", params={"session_id": session, "groups": "hashes"}).json()
    return session, {row["id"]: row["hashes.phash"] for row in table["rows"]}


def test_the_duplicates_api_answers_as_the_all_pairs_loop_would(api):
    session, phash_of = _workspace(api)
    ids = list(phash_of)  # upload order
    listing = {record["id"]: record for record in api.get("/api/images", params={"session_id": session}).json()}
    for threshold in [0, 4, 12, 64]:
        body = api.get("/api/features/duplicates", params={"session_id": session, "threshold": threshold}).json()
        assert set(body) == {"exact", "near", "threshold"} and body["threshold"] == threshold
        expected = every_pair_in_python([hash_value(phash_of[i]) for i in ids], threshold)
        assert [([image["id"] for image in group["images"]], group["max_distance"]) for group in body["near"]] == [
            ([ids[i] for i in members], distance) for members, distance in expected
        ]
        for image in [image for group in body["near"] for image in group["images"]]:
            assert image == {key: value for key, value in listing[image["id"]].items() if key != "annotations"}
    assert [[image["filename"] for image in group] for group in body["exact"]] == [["cat.png", "cat.bmp"]]


def test_a_duplicates_search_over_its_budget_is_a_plain_413(api, monkeypatch):
    session, _ = _workspace(api)
    monkeypatch.setattr(
        feature_service, "near_duplicate_groups", functools.partial(near_duplicate_groups, max_comparisons=10)
    )
    response = api.get("/api/features/duplicates", params={"session_id": session, "threshold": 64})
    assert response.status_code == 413
    assert response.json()["detail"].endswith("use a smaller threshold")
    assert api.get("/api/features/duplicates", params={"session_id": session, "threshold": 0}).status_code == 200


def test_no_whole_workspace_loop_of_the_feature_api_runs_on_the_event_loop(api, monkeypatch):
    session, _ = _workspace(api)
    on_loop: list[str] = []

    def off_the_loop(name, call):
        def watched(*args, **kwargs):
            try:
                asyncio.get_running_loop()
                on_loop.append(name)
            except RuntimeError:  # no loop in this thread: a worker thread
                pass
            return call(*args, **kwargs)

        return watched

    for module, name in [
        (workspace, "list_images"),
        (workspace, "cache_get"),
        (workspace, "list_annotations"),
        (feature_service, "near_duplicate_groups"),
        (feature_service, "odd_size_flags"),
        (feature_service, "_flatten"),
        (feature_service, "_present"),
    ]:
        monkeypatch.setattr(module, name, off_the_loop(name, getattr(module, name)))
    params = {"session_id": session}
    assert api.get("/api/features/duplicates", params=params).status_code == 200
    assert api.get("/api/features", params=params).status_code == 200
    assert api.get("/api/features", params={**params, "format": "csv"}).status_code == 200
    assert on_loop == []
