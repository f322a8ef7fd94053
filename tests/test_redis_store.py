"""Redis mode beyond the shared store contract (``test_store_contract.py`` runs that on Redis too):
two stores on one Redis act like two processes; quota and cap hold under concurrent uploads; a
full Redis answers 507, a missing one 503 and recovers; a Redis that writes to disk is refused.
All on a real throw-away redis-server. (Events, invites and presence across processes: the
contract suites ``test_relay_contract.py``, ``test_invite_contract.py``, ``test_presence_contract.py``.)"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from core.config import Settings
from core.errors import CapacityExceeded, NotFound, QuotaExceeded
from core.ingest import IngestedImage, ingest_image
from core.storage.base import RECORD_OVERHEAD_BYTES
from core.storage.redis import (
    PersistentRedis,
    RedisStore,
    StoreUnavailable,
    decode_cached,
    encode_cached,
)
from tests.helpers import make_jpeg, skip_or_fail
from tests.redis_server import MISSING, RedisServer

pytestmark = pytest.mark.redis

A = "11111111-1111-4111-8111-111111111111"
B = "22222222-2222-4222-8222-222222222222"
UPLOADERS = 8
UPLOADS_EACH = 6


def image(seed: int, name: str | None = None) -> IngestedImage:
    return ingest_image(make_jpeg(seed=seed), name or f"photo{seed}.jpg", Settings())


def cost(item: IngestedImage) -> int:
    return len(item.data) + len(item.thumbnail) + RECORD_OVERHEAD_BYTES


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    redis_server.flush()
    return redis_server.url()


@pytest.fixture
def own_server() -> Iterator[RedisServer]:
    """A redis-server of this test's own (it is stopped, restarted or filled up)."""
    if MISSING:
        skip_or_fail(MISSING)
    server = RedisServer()
    yield server
    server.close()


def test_an_image_stored_through_one_process_is_read_through_another(redis_url):
    first, second = RedisStore(redis_url, 10**9, 10**9), RedisStore(redis_url, 10**9, 10**9)
    item = image(1)
    record = first.add(A, item).record
    assert second.list(A) == [record]
    assert second.read(A, record.id) == item.data
    assert second.read_thumbnail(A, record.id) == item.thumbnail
    second.delete(A, record.id)
    with pytest.raises(NotFound):
        first.get(A, record.id)


def test_concurrent_uploads_through_two_processes_never_pass_the_quota(redis_url):
    items = [image(seed) for seed in range(UPLOADERS * UPLOADS_EACH)]
    quota = sum(cost(i) for i in items) // 3
    stores = [RedisStore(redis_url, quota, 10**9), RedisStore(redis_url, quota, 10**9)]
    refused: list[int] = []
    start = threading.Barrier(UPLOADERS)

    def upload(n: int) -> None:
        start.wait()
        for item in items[n * UPLOADS_EACH : (n + 1) * UPLOADS_EACH]:
            try:
                stores[n % 2].add(A, item)
            except QuotaExceeded as error:
                refused.append(error.status_code)

    threads = [threading.Thread(target=upload, args=(n,)) for n in range(UPLOADERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    held = stores[0].bytes_held(A)
    kept = stores[1].list(A)
    assert refused and set(refused) == {413}
    assert held <= quota
    assert held == sum(cost(i) for i in items if i.sha256 in {r.sha256 for r in kept})
    assert stores[0].totals().bytes_held == held and stores[0].totals().images == len(kept)


def test_concurrent_uploads_of_two_sessions_never_pass_the_global_cap(redis_url):
    items = [image(seed) for seed in range(20)]
    cap = sum(cost(i) for i in items) // 2
    stores = [RedisStore(redis_url, 10**9, cap), RedisStore(redis_url, 10**9, cap)]
    refused: list[int] = []

    def upload(session: str, store: RedisStore, part: list[IngestedImage]) -> None:
        for item in part:
            try:
                store.add(session, item)
            except CapacityExceeded as error:
                refused.append(error.status_code)

    threads = [
        threading.Thread(target=upload, args=(A, stores[0], items[:10])),
        threading.Thread(target=upload, args=(B, stores[1], items[10:])),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert refused and set(refused) == {507}
    assert stores[0].totals().bytes_held <= cap
    assert stores[0].totals().bytes_held == stores[0].bytes_held(A) + stores[0].bytes_held(B)


def test_cached_values_round_trip_without_pickle():
    preview = (b"\x89PNG\r\n\x1a\n" + bytes(range(256)), "image/png")
    features = {"mean": [1.5, 2.0], "name": "color", "nan": None}
    assert decode_cached(encode_cached(preview)) == preview
    assert decode_cached(encode_cached(features)) == features
    with pytest.raises(TypeError):
        encode_cached(object())  # only JSON values and previews are cached: never pickle


def test_previews_and_features_are_cached_in_redis_for_every_process(redis_url):
    first, second = RedisStore(redis_url, 10**9, 10**9), RedisStore(redis_url, 10**9, 10**9)
    record = first.add(A, image(1)).record
    first.cache_put(A, record.id, "preview:1280", (b"jpeg bytes", "image/jpeg"), 100)
    first.cache_put(A, record.id, "features:color", {"mean": [0.5]}, 200)
    assert second.cache_get(A, record.id, "preview:1280") == (b"jpeg bytes", "image/jpeg")
    assert second.cache_get(A, record.id, "features:color") == {"mean": [0.5]}
    assert second.cache_get(A, record.id, "features:texture") is None


def test_a_session_key_is_refreshed_on_use_and_carries_a_ttl(redis_url, redis_server):
    store = RedisStore(redis_url, 10**9, 10**9, idle_seconds=30)
    store.add(A, image(1))
    with redis_server.client() as client:
        ttls = [client.ttl(f"darkroom:s:{A}:{part}") for part in ("meta", "order", "rec", "blobs")]
    assert all(0 < ttl <= 30 + 60 for ttl in ttls)


def test_a_session_nobody_uses_is_dropped_by_redis_itself_and_settled_on_next_use(redis_url, redis_server):
    store = RedisStore(redis_url, 10**9, 10**9, idle_seconds=1, ttl_grace_seconds=0)
    store.add(A, image(1))
    with redis_server.client() as client:
        deadline = time.monotonic() + 30
        while client.exists(f"darkroom:s:{A}:meta"):  # Redis expires the keys by their TTL
            assert time.monotonic() < deadline, "the session's keys did not expire"
            time.sleep(0.1)
    assert store.list(A) == [] and store.bytes_held(A) == 0
    store.add(A, image(2))  # the stale accounting was settled, not added to
    assert store.totals().bytes_held == cost(image(2)) and store.totals().images == 1


def test_a_full_redis_refuses_uploads_with_507_and_still_serves_reads(own_server):
    with own_server.client() as client:
        client.config_set("maxmemory-policy", "noeviction")
        store = RedisStore(own_server.url(), 10**12, 10**12)
        kept = store.add(A, image(0)).record
        used = int(client.info("memory")["used_memory"])
        client.config_set("maxmemory", used + 64 * 1024)
    with pytest.raises(CapacityExceeded) as error:
        for n in range(50):
            store.add(A, ingest_image(make_jpeg(400, 400, seed=10 + n, quality=100), f"{n}.jpg", Settings()))
    assert error.value.status_code == 507
    assert store.read(A, kept.id) == image(0).data
    listed = store.list(A)  # nothing half-stored: the accounting matches what is listed
    assert store.bytes_held(A) == sum(
        r.size_bytes + len(store.read_thumbnail(A, r.id)) + RECORD_OVERHEAD_BYTES for r in listed
    )
    store.delete(A, kept.id)  # removing still works when Redis is full


def test_redis_down_is_a_503_with_retry_after_and_calls_recover_by_themselves(own_server):
    store = RedisStore(own_server.url(), 10**9, 10**9)
    record = store.add(A, image(1)).record
    own_server.stop()
    with pytest.raises(StoreUnavailable) as error:
        store.list(A)
    assert error.value.status_code == 503
    assert error.value.headers == {"Retry-After": "5"}
    assert "Redis" in error.value.message and "try again" in error.value.message
    with pytest.raises(StoreUnavailable):
        store.add(A, image(2))
    assert store.expire_idle(idle_seconds=0) == []  # the background sweep waits quietly
    own_server.start()  # a RAM-only Redis comes back empty
    assert store.list(A) == []
    assert store.add(A, image(1)).record.id != record.id


@pytest.mark.parametrize(
    ("option", "words"),
    [(("--save", "900 1"), "RDB snapshots"), (("--appendonly", "yes"), "AOF (appendonly yes)")],
)
def test_a_redis_that_writes_to_disk_is_refused_with_how_to_turn_it_off(own_server, option, words):
    with own_server.client() as client:
        client.config_set(option[0].removeprefix("--"), option[1])
    with pytest.raises(PersistentRedis) as error:
        RedisStore(own_server.url(), 10**9, 10**9)
    message = str(error.value)
    assert words in message
    assert "CONFIG SET save ''" in message and "CONFIG SET appendonly no" in message
    assert "DARKROOM_REDIS_ALLOW_PERSISTENCE=1" in message
    RedisStore(own_server.url(), 10**9, 10**9, allow_persistence=True).add(A, image(1))  # accepted when asked


def test_concurrent_tag_edits_through_two_processes_lose_nothing_and_are_counted(redis_url):
    from core.annotations import AnnotationPatch, StaleVersion, apply_patch

    stores = [RedisStore(redis_url, 10**9, 10**9), RedisStore(redis_url, 10**9, 10**9)]
    item = image(1)
    record = stores[0].add(A, item).record
    edits = 12

    def tag(n: int) -> None:
        for k in range(edits):
            patch = AnnotationPatch(tags_add=(f"t{n}-{k}",))
            stores[n % 2].patch_annotations(A, record.id, lambda c, p=patch: apply_patch(c, p, "bench", "now"))

    threads = [threading.Thread(target=tag, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stored = stores[1].get_annotations(A, record.id)
    assert sorted(stored.tags) == sorted(f"t{n}-{k}" for n in range(2) for k in range(edits))
    assert stored.version == 2 * edits
    assert stores[0].list_annotations(A) == {record.id: stored}
    assert stores[0].bytes_held(A) == cost(item) + stored.nbytes
    with pytest.raises(StaleVersion):  # a stale rating is refused as a whole, nothing stored
        stale = AnnotationPatch(rating=3, expected_version=1)
        stores[0].patch_annotations(A, record.id, lambda c: apply_patch(c, stale, "bench", "now"))
    assert stores[1].get_annotations(A, record.id) == stored
    stores[1].delete(A, record.id)  # annotations go with the image, and so do their bytes
    assert stores[0].bytes_held(A) == 0 and stores[0].totals().bytes_held == 0
    with pytest.raises(NotFound):
        stores[0].get_annotations(A, record.id)


def test_where_config_is_not_allowed_the_store_starts_with_a_warning(caplog):
    if MISSING:
        skip_or_fail(MISSING)
    managed = RedisServer(extra=("--rename-command", "CONFIG", ""))  # as managed Redis services do
    try:
        with caplog.at_level("WARNING", logger="core.storage.redis"):
            store = RedisStore(managed.url(), 10**9, 10**9)
        assert "CONFIG is not allowed" in caplog.text and "appendonly no" in caplog.text
        assert store.add(A, image(1)).record.filename == "photo1.jpg"
    finally:
        managed.close()
