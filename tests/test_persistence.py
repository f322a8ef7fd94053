"""Opt-in persistence: disk (a folder per session) and sql (database + blob store).

The store contract itself runs on every backend in ``test_store_contract.py``; here are what only
persistent stores promise: paths stay inside the root, state survives a reopen, crashes leave
nothing half-written (down to a real server killed with SIGKILL mid-upload), and the schema is
versioned.
"""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

import httpx
import pytest

from core.config import Settings
from core.errors import NotFound
from core.ingest import ingest_image
from core.sessions import InvalidSessionId
from core.storage.disk import SessionFolders
from core.storage.sql import SchemaError, SqlStore, engine_for, meta
from tests.helpers import free_port, make_jpeg
from tests.server_process import ServerProcess

A = "11111111-1111-4111-8111-111111111111"
HOSTILE_IDS = [
    "../outside",
    "..",
    "/etc",
    "11111111-1111-4111-8111-111111111111/../../x",
    "11111111-1111-4111-8111-11111111111\x00",
    "11111111-1111-4111-8111-111111111111 ",
    "AAAAAAAA-1111-4111-8111-111111111111",
    "%2e%2e%2foutside",
    "",
]


def image(seed: int, name: str | None = None):
    return ingest_image(make_jpeg(seed=seed), name or f"p{seed}.jpg", Settings())


@pytest.mark.parametrize("session_id", HOSTILE_IDS)
def test_disk_mode_never_turns_a_hostile_session_id_into_a_path(tmp_path: Path, session_id: str) -> None:
    root = tmp_path / "root" / "images"
    store = SessionFolders(root, 10**9, 10**9)
    for call in (
        lambda: store.add(session_id, image(1)),
        lambda: store.touch(session_id),
        lambda: store.list(session_id),
        lambda: store.clear(session_id),
    ):
        with pytest.raises(InvalidSessionId):
            call()
    assert {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")} <= {"root", "root/images"}


def test_disk_mode_keeps_images_across_a_reopen_and_drops_half_writes(tmp_path: Path) -> None:
    root = tmp_path / "images"
    store = SessionFolders(root, 10**9, 10**9)
    kept = [store.add(A, image(seed)).record for seed in range(3)]
    folder = root / A
    (folder / ".tmp-killed-mid-write").write_bytes(b"half")
    orphan = "b" * 32
    (folder / f"{orphan}.jpg").write_bytes(b"bytes whose record never landed")
    reopened = SessionFolders(root, 10**9, 10**9)
    assert reopened.list(A) == kept
    assert reopened.read(A, kept[0].id) == image(0).data
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        name for r in kept for name in (f"{r.id}.jpg", f"{r.id}.thumb", f"{r.id}.json")
    )
    assert reopened.totals().sessions == 1 and reopened.totals().images == 3


def test_disk_mode_expiry_and_clear_delete_the_folder(tmp_path: Path) -> None:
    root = tmp_path / "images"
    store = SessionFolders(root, 10**9, 10**9)
    store.add(A, image(1))
    assert (root / A).is_dir()
    assert store.expire_idle(idle_seconds=60, now=time.time() + 3600) == [A]
    assert not (root / A).exists()
    store.add(A, image(2))
    assert store.clear(A) == 1 and not (root / A).exists()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'darkroom.db'}"
    return request.getfixturevalue("postgres_cluster").new_database()


def test_sql_start_up_repairs_orphan_blobs_and_rows_without_blobs(tmp_path: Path, database_url: str) -> None:
    blobs = tmp_path / "blobs"
    store = SqlStore(database_url, str(blobs), 10**9, 10**9)
    kept = store.add(A, image(1)).record
    lost = store.add(A, image(2)).record
    (blobs / A / ("e" * 64)).write_bytes(b"a blob whose row never landed")  # crash between blob and row
    (blobs / A / lost.sha256).unlink()  # a blob store that lost a file
    reopened = SqlStore(database_url, str(blobs), 10**9, 10**9)
    assert reopened.list(A) == [kept]
    assert not (blobs / A / ("e" * 64)).exists()
    with pytest.raises(NotFound):
        reopened.get(A, lost.id)
    assert reopened.repair() == (0, 0)  # nothing left to repair


def test_sql_refuses_a_database_from_a_newer_darkroom(tmp_path: Path, database_url: str) -> None:
    SqlStore(database_url, str(tmp_path / "blobs"), 10**9, 10**9)
    with engine_for(database_url).begin() as connection:
        connection.execute(meta.update().where(meta.c.key == "schema_version").values(value="99"))
    with pytest.raises(SchemaError, match="schema version 99"):
        SqlStore(database_url, str(tmp_path / "blobs"), 10**9, 10**9)


def test_sql_same_bytes_under_two_names_share_one_blob(tmp_path: Path, database_url: str) -> None:
    blobs = tmp_path / "blobs"
    store = SqlStore(database_url, str(blobs), 10**9, 10**9)
    first = store.add(A, image(1, "a.jpg")).record
    second = store.add(A, image(1, "b.jpg")).record
    assert sorted(p.name for p in (blobs / A).iterdir()) == [first.sha256, first.sha256 + ".thumb"]
    store.delete(A, first.id)
    assert store.read(A, second.id) == image(1).data  # still held for the other name
    store.delete(A, second.id)
    assert list((blobs / A).iterdir()) == []


# -- the real server, killed with SIGKILL mid-upload and restarted --
def _mode_env(mode: str, root: Path, request: pytest.FixtureRequest) -> dict[str, str]:
    env = {"DARKROOM_STORAGE": "disk" if mode == "disk" else "sql", "DARKROOM_STORAGE_DIR": str(root)}
    if mode == "postgres":
        env["DARKROOM_DATABASE_URL"] = request.getfixturevalue("postgres_cluster").new_database()
    return env


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["disk", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_server_killed_mid_upload_restarts_with_every_acknowledged_image_and_nothing_half_written(
    tmp_path: Path, request: pytest.FixtureRequest, mode: str
) -> None:
    env = _mode_env(mode, tmp_path / "storage", request)
    port = free_port()
    server = ServerProcess(port, env)
    client = httpx.Client(base_url=server.url, timeout=30)
    session_id = client.post("/api/sessions").json()["session_id"]
    headers = {"X-Session-Id": session_id}
    acknowledged: dict[str, str] = {}  # id -> sha256 of what was sent
    stop = threading.Event()

    def keep_uploading() -> None:
        seed = 100
        with httpx.Client(base_url=server.url, timeout=30) as uploader:
            while not stop.is_set():
                data = make_jpeg(400, 300, seed=seed, quality=95)
                seed += 1
                try:
                    response = uploader.post("/api/images", headers=headers, files=[("files", (f"{seed}.jpg", data))])
                except httpx.HTTPError:
                    return  # the server died under this request
                if response.status_code == 200:
                    for record in response.json()["accepted"]:
                        acknowledged[record["id"]] = hashlib.sha256(data).hexdigest()

    worker = threading.Thread(target=keep_uploading)
    worker.start()
    deadline = time.monotonic() + 30
    while len(acknowledged) < 8 and time.monotonic() < deadline:
        time.sleep(0.01)
    server.kill()  # SIGKILL while uploads are in flight
    stop.set()
    worker.join(timeout=30)
    assert len(acknowledged) >= 8

    restarted = ServerProcess(port, env)
    try:
        with httpx.Client(base_url=restarted.url, timeout=30) as client:
            listed = client.get("/api/images", headers=headers).json()
            ids = {record["id"] for record in listed}
            assert set(acknowledged) <= ids  # everything acknowledged survived
            assert len(ids - set(acknowledged)) <= 1  # at most the one stored as the kill landed
            for record in listed:  # and nothing listed is half-written
                body = client.get(f"/api/images/{record['id']}", headers=headers)
                assert body.status_code == 200
                assert hashlib.sha256(body.content).hexdigest() == record["sha256"]
                assert acknowledged.get(record["id"], record["sha256"]) == record["sha256"]
                assert client.get(f"/api/images/{record['id']}/thumbnail", headers=headers).status_code == 200
            assert list((tmp_path / "storage").rglob(".tmp-*")) == []  # interrupted writes cleaned up
    finally:
        restarted.stop()
    if mode != "disk":
        blob_files = [p for p in (tmp_path / "storage" / "blobs").rglob("*") if p.is_file()]
        assert len(blob_files) == 2 * len(ids)  # no orphan blob: one original and one thumbnail each


def test_disk_mode_and_the_legacy_folder_share_storage_images_without_touching_each_other(tmp_path: Path) -> None:
    from core.storage.disk import FolderStore

    root = tmp_path / "storage" / "images"  # the defaults: legacy folder and disk mode's session root
    sessions = SessionFolders(root, 10**9, 10**9)
    legacy = FolderStore(root, 10**9)
    mine = sessions.add(A, image(1)).record
    shared = legacy.add("legacy", image(2)).record
    assert SessionFolders(root, 10**9, 10**9).list(A) == [mine]
    assert FolderStore(root, 10**9).list("legacy") == [shared]  # its start-up clean-up spares session folders
    assert (root / A / f"{mine.id}.jpg").exists()
