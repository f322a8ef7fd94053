"""core.client against a real server: every method of Workspace and AsyncWorkspace, the upload
protocol's bounds, and errors as typed exceptions in the server's words."""

from __future__ import annotations

import ast
import asyncio
import io
import json
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from fastapi import FastAPI, WebSocket

from core.client import (
    CHUNK_BYTES,
    MAX_CHUNKS_IN_FLIGHT,
    MAX_FILES_IN_FLIGHT,
    MAX_MESSAGE_BYTES,
    WINDOW_BYTES,
    AsyncWorkspace,
    BadRequest,
    Busy,
    Conflict,
    ConnectionLost,
    NotFound,
    TooLarge,
    Unprocessable,
    Unsupported,
    UploadProtocol,
    Workspace,
    collect_sources,
)
from core.sessions import InvalidSessionId, new_session_id
from tests.helpers import LiveServer, hostile, listed, make_jpeg, ws_connect

NOTEBOOK = Path(__file__).resolve().parent.parent / "docs" / "client.ipynb"
NOTEBOOK_URL = "http://127.0.0.1:8080"


@pytest.fixture
def workspace(api, live_server) -> Iterator[Workspace]:
    with Workspace(live_server.url) as made:
        yield made


def test_a_new_workspace_is_made_and_uploads_show_in_its_listing(workspace, api):
    report = workspace.upload([("a.jpg", make_jpeg(seed=1)), ("b.png", hostile("ok_photo.png"))])
    assert [record["filename"] for record in report.accepted] == ["a.jpg", "b.png"]
    assert report.rejected == [] and report.duplicates == []
    # stored as each file's validation ends: the listing's order is theirs, the report's is the files'
    assert sorted(record["filename"] for record in workspace.images()) == ["a.jpg", "b.png"]
    assert workspace.images() == listed(api, workspace.session_id)


def test_opening_an_existing_workspace_by_its_id_sees_its_images(workspace, live_server):
    workspace.upload(("a.jpg", make_jpeg(seed=2)))
    with Workspace(live_server.url, workspace.session_id) as same:
        assert [record["filename"] for record in same.images()] == ["a.jpg"]


def test_a_folder_is_walked_with_its_paths_and_without_os_junk(workspace, tmp_path):
    shoot = tmp_path / "shoot"
    (shoot / "day 2").mkdir(parents=True)
    (shoot / "__MACOSX").mkdir()
    (shoot / "a.jpg").write_bytes(make_jpeg(seed=3))
    (shoot / "day 2" / "b.jpg").write_bytes(make_jpeg(seed=4))
    (shoot / ".DS_Store").write_bytes(b"\0" * 10)
    (shoot / "__MACOSX" / "._a.jpg").write_bytes(b"\0" * 10)
    report = workspace.upload(shoot)
    assert [record["filename"] for record in report.accepted] == ["shoot/a.jpg", "shoot/day 2/b.jpg"]


def test_files_of_several_chunks_and_many_small_files_all_arrive(workspace):
    big = [(f"big{i}.png", _noise_png(1200, 900, seed=i)) for i in range(2)]
    assert all(len(data) > 2 * CHUNK_BYTES for _, data in big)  # several chunks each
    small = [(f"small{i}.jpg", make_jpeg(16, 16, seed=100 + i)) for i in range(MAX_FILES_IN_FLIGHT + 20)]
    report = workspace.upload(big + small)
    assert len(report.accepted) == len(big) + len(small)
    stored = {record["filename"]: record["size_bytes"] for record in workspace.images()}
    assert all(stored[name] == len(data) for name, data in big + small)


def test_the_same_bytes_again_are_a_duplicate_not_an_error(workspace):
    photo = make_jpeg(seed=5)
    workspace.upload(("a.jpg", photo))
    report = workspace.upload(("a.jpg", photo))
    assert report.accepted == [] and report.duplicates[0]["existing"]["filename"] == "a.jpg"


def test_a_zip_archive_is_unpacked_by_the_server(workspace):
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("trip/one.jpg", make_jpeg(seed=6))
        zf.writestr("trip/notes.txt", "not an image")
    report = workspace.upload([("a.jpg", make_jpeg(seed=7)), ("trip.zip", archive.getvalue())])
    assert [record["filename"] for record in report.accepted] == ["a.jpg", "trip/one.jpg"]
    assert [skip["filename"] for skip in report.skipped] == ["trip/notes.txt"]


def test_a_bad_file_raises_its_typed_error_in_the_servers_words_after_the_rest_is_stored(workspace):
    with pytest.raises(Unprocessable) as refused:
        workspace.upload([("t.jpg", hostile("truncated.jpg")), ("ok.jpg", make_jpeg(seed=8))])
    error = refused.value
    assert error.status == 422 and error.filename == "t.jpg"
    assert "truncated" in str(error)  # the server's detail, as it said it
    assert [record["filename"] for record in error.report.accepted] == ["ok.jpg"]
    assert [record["filename"] for record in workspace.images()] == ["ok.jpg"]


def test_without_strict_the_report_holds_each_rejection_and_its_error(workspace):
    report = workspace.upload([("notes.txt", b"plain text, not an image")], strict=False)
    (rejection,) = report.rejected
    assert rejection.filename == "notes.txt" and rejection.status == 415
    assert isinstance(rejection.error, Unsupported) and "not a supported image" in rejection.detail


def test_a_file_over_the_servers_limit_is_refused_in_its_words(workspace, configure):
    configure(max_file_bytes=64 * 1024)
    with pytest.raises(TooLarge) as refused:
        workspace.upload([("huge.png", _noise_png(400, 400, seed=1)), ("ok.jpg", make_jpeg(seed=9))])
    assert refused.value.status == 413 and "64 KiB limit per file" in str(refused.value)
    assert [record["filename"] for record in workspace.images()] == ["ok.jpg"]


def test_an_unsafe_archive_is_one_rejection_of_the_archive_in_the_servers_words(workspace):
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("../escape.jpg", make_jpeg(seed=19))
    report = workspace.upload(("evil.zip", archive.getvalue()), strict=False)
    (rejection,) = report.rejected
    assert rejection.filename == "evil.zip" and isinstance(rejection.error, Unprocessable)
    assert ".." in rejection.detail
    assert workspace.images() == []


def test_past_the_addresss_upload_sockets_the_upload_is_busy_with_retry_after(workspace, live_server, configure):
    configure(client_uploads=1)
    with ws_connect(live_server, workspace.session_id) as held:  # the address's one upload socket
        held.recv(timeout=5)
        with pytest.raises(Busy) as busy:
            workspace.upload(("a.jpg", make_jpeg(seed=21)))
    assert busy.value.status == 503 and busy.value.retry_after >= 1
    assert busy.value.report is not None and busy.value.report.accepted == []
    assert "upload" in str(busy.value)


def test_a_too_large_file_is_announced_but_never_sent():
    protocol = UploadProtocol(collect_sources([("huge.bin", b"x" * 5000), ("ok.jpg", b"y" * 10)]))
    protocol.received(json.dumps({"type": "ready", "max_file_bytes": 1000, "max_message_bytes": 1 << 24}))
    assert _everything_sendable(protocol) == [
        json.dumps({"filename": "huge.bin", "size": 5000}),
        json.dumps({"filename": "ok.jpg", "size": 10}),
        b"y" * 10,
        json.dumps({"type": "done"}),
    ]


def test_the_upload_never_runs_more_than_its_window_ahead_of_the_acknowledgements():
    files = [(f"f{i}.bin", bytes([i]) * (3 * CHUNK_BYTES + 7)) for i in range(4)]
    protocol = UploadProtocol(collect_sources(files))
    assert protocol.outgoing() is None  # nothing before the server's ready
    protocol.received(json.dumps({"type": "ready", "max_file_bytes": 1 << 30, "max_message_bytes": 1 << 24}))
    sent_bytes = 0
    while not protocol.done_sent:
        for message in _everything_sendable(protocol):
            sent_bytes += len(message) if isinstance(message, bytes) else 0
        assert protocol.unacked_bytes <= WINDOW_BYTES and len(protocol.in_flight) <= MAX_CHUNKS_IN_FLIGHT
        protocol.received(json.dumps({"type": "progress"}))  # the server acknowledges one chunk
    assert sent_bytes == sum(len(data) for _, data in files)


def test_a_file_refused_from_its_header_is_not_sent_further():
    protocol = UploadProtocol(collect_sources([("a.bin", b"a" * (20 * CHUNK_BYTES)), ("b.bin", b"b" * 10)]))
    protocol.received(json.dumps({"type": "ready", "max_file_bytes": 1 << 30, "max_message_bytes": 1 << 24}))
    first = _everything_sendable(protocol)
    assert len(first) == 1 + MAX_CHUNKS_IN_FLIGHT  # header, then the window
    protocol.received(json.dumps({"type": "result", "file": 0, "status": 413, "detail": "over the quota"}))
    assert _everything_sendable(protocol)[0] == json.dumps({"filename": "b.bin", "size": 10})
    assert protocol.report.rejected[0].detail == "over the quota"


def test_images_lists_records_with_their_annotations(workspace):
    workspace.upload(("a.jpg", make_jpeg(seed=10)))
    (record,) = workspace.images()
    assert {"id", "filename", "width", "height", "sha256", "annotations"} <= set(record)


def test_features_are_a_dataframe_of_the_servers_table(workspace):
    workspace.upload([("a.jpg", make_jpeg(seed=11)), ("b.jpg", make_jpeg(96, 64, seed=12))])
    table = workspace.features(["basic", "sharpness"])
    assert type(table).__name__ == "DataFrame"
    assert dict(zip(table["filename"], table["basic.width"], strict=True)) == {"a.jpg": 64, "b.jpg": 96}
    assert list(table.columns[:2]) == ["id", "filename"] and "sharpness.laplacian_var" in table.columns


def test_without_pandas_features_are_a_list_of_rows(workspace, monkeypatch):
    workspace.upload(("a.jpg", make_jpeg(seed=13)))
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas now fails
    rows = workspace.features("basic")
    assert isinstance(rows, list) and rows[0]["filename"] == "a.jpg" and rows[0]["basic.width"] == 64


def test_an_unknown_feature_group_is_bad_request_listing_the_valid_ones(workspace):
    with pytest.raises(BadRequest) as refused:
        workspace.features(["basic", "sparkle"])
    assert "sparkle" in str(refused.value) and "sharpness" in str(refused.value)


def test_annotate_changes_the_shared_annotations_and_a_stale_version_is_a_conflict(workspace):
    (record,) = workspace.upload(("a.jpg", make_jpeg(seed=14))).accepted
    first = workspace.annotate(record["id"], tags_add=["keep"], rating=4, note="best")
    assert first["tags"] == ["keep"] and first["rating"] == 4 and first["note"] == "best"
    cleared = workspace.annotate(record["id"], rating=None, tags_remove=["keep"])
    assert cleared["rating"] is None and cleared["tags"] == []
    with pytest.raises(Conflict) as stale:
        workspace.annotate(record["id"], rating=2, expected_version=first["version"])
    assert stale.value.current["version"] == cleared["version"]
    assert workspace.images()[0]["annotations"]["rating"] is None
    assert workspace.annotate(record["id"], pick="rejected")["pick"] == "rejected"
    assert workspace.annotate(record["id"], pick=None)["pick"] is None


def test_keep_best_picks_one_and_rejects_the_rest_in_one_batch(workspace):
    ids = [r["id"] for r in workspace.upload([(f"{n}.jpg", make_jpeg(seed=20 + n)) for n in range(3)]).accepted]
    results = workspace.keep_best(ids[1], ids)
    assert [(r["image_id"], r["annotations"]["pick"]) for r in results] == [
        (ids[1], "picked"),
        (ids[0], "rejected"),
        (ids[2], "rejected"),
    ]
    with pytest.raises(Unprocessable) as refused:
        workspace.annotate_many([{"image_id": ids[0], "pick": "maybe"}])
    assert "edit 1" in str(refused.value)


def test_events_show_an_image_pushed_from_another_handle(workspace, live_server):
    with workspace.events(name="notebook", timeout=30) as events:
        hello = next(events)
        assert hello["type"] == "hello" and hello["you"]["name"] == "notebook"
        with Workspace(live_server.url, workspace.session_id) as colleague:
            colleague.upload(("pushed.jpg", make_jpeg(seed=15)))
        added = next(event for event in events if event["type"] == "image_added")
    assert added["image"]["filename"] == "pushed.jpg"


def test_events_of_an_unknown_workspace_are_not_found(api, live_server):
    with Workspace(live_server.url, new_session_id()) as unknown, pytest.raises(NotFound) as refused:
        unknown.events()
    assert "no such workspace" in str(refused.value)


def test_a_malformed_session_id_is_refused_in_the_servers_words(api, live_server):
    server_says = api.get("/api/images", headers={"X-Session-Id": "not-a-session"}).json()["detail"]
    with pytest.raises(BadRequest) as refused:
        Workspace(live_server.url, "not-a-session")
    assert str(refused.value) == server_says == str(InvalidSessionId())


def test_archive_saves_every_original_byte_for_byte(workspace, tmp_path):
    photos = {"a.jpg": make_jpeg(seed=16), "b.png": hostile("ok_photo.png")}
    workspace.upload(list(photos.items()))
    saved = workspace.archive(tmp_path / "all.zip")
    with zipfile.ZipFile(saved) as zf:
        assert {name: zf.read(name) for name in photos} == photos
    assert not (tmp_path / "all.zip.part").exists()


def test_delete_and_clear_and_an_unknown_image_is_not_found_in_the_servers_words(workspace):
    first, second = workspace.upload([("a.jpg", make_jpeg(seed=17)), ("b.jpg", make_jpeg(seed=18))]).accepted
    workspace.delete(first["id"])
    assert [record["id"] for record in workspace.images()] == [second["id"]]
    with pytest.raises(NotFound) as missing:
        workspace.delete(first["id"])
    assert str(missing.value) == "no such image in this workspace"
    workspace.clear()
    assert workspace.images() == []


def test_an_answer_over_the_clients_limit_is_refused_not_buffered(workspace, live_server):
    workspace.upload([(f"{i}.jpg", make_jpeg(seed=20 + i)) for i in range(5)])
    capped = Workspace(live_server.url, workspace.session_id, max_response_bytes=500)
    with capped, pytest.raises(TooLarge) as refused:
        capped.images()
    assert "max_response_bytes" in str(refused.value)


def test_an_oversized_socket_message_closes_the_socket_not_the_memory():
    app = FastAPI()

    @app.websocket("/api/ws/events")
    async def flood(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text("x" * (MAX_MESSAGE_BYTES + 1))
        await websocket.receive()

    server = LiveServer(app)
    server.start()
    try:
        workspace = Workspace(server.url, new_session_id())
        with workspace, workspace.events(timeout=10) as events, pytest.raises(ConnectionLost) as lost:
            next(events)
        assert lost.value.close_code == 1009  # message too big
    finally:
        server.stop()


def test_the_progress_bar_shows_when_asked_and_not_when_nobody_watches(workspace, capsys, monkeypatch):
    workspace.upload(("a.jpg", make_jpeg(seed=30)))  # stderr is not a terminal here: no bar
    assert "upload" not in capsys.readouterr().err
    workspace.upload(("b.jpg", make_jpeg(seed=31)), progress=True)
    assert "upload: 100%" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)  # tqdm missing: no bar, no error
    workspace.upload(("c.jpg", make_jpeg(seed=32)), progress=True)
    assert "upload" not in capsys.readouterr().err


async def test_the_async_twin_uploads_streams_events_and_does_the_rest(api, live_server, tmp_path):
    async with AsyncWorkspace(live_server.url) as workspace:
        async with workspace.events(timeout=30) as events:
            assert (await anext(events))["type"] == "hello"
            report = await workspace.upload([("a.jpg", make_jpeg(seed=40)), ("b.jpg", make_jpeg(seed=41))])
            seen = [event async for event in _until_added(events, 2)]
        assert sorted(event["image"]["filename"] for event in seen) == ["a.jpg", "b.jpg"]
        first = report.accepted[0]
        assert sorted(record["filename"] for record in await workspace.images()) == ["a.jpg", "b.jpg"]
        assert list((await workspace.features("basic"))["basic.width"]) == [64, 64]
        assert (await workspace.annotate(first["id"], tags_add=["keep"]))["tags"] == ["keep"]
        with zipfile.ZipFile(await workspace.archive(tmp_path / "all.zip")) as zf:
            assert "a.jpg" in zf.namelist()
        with pytest.raises(Unprocessable):
            await workspace.upload(("t.jpg", hostile("truncated.jpg")))
        await workspace.delete(first["id"])
        await workspace.clear()
        assert await workspace.images() == []
        with pytest.raises(NotFound):
            await workspace.delete(first["id"])


async def test_async_events_of_an_unknown_workspace_are_not_found(api, live_server):
    async with AsyncWorkspace(live_server.url, new_session_id()) as unknown:
        with pytest.raises(NotFound):
            async with unknown.events():
                pass


def test_the_example_notebook_is_valid_with_outputs_cleared_and_runs(api, live_server):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.outputs == [] and cell.execution_count is None for cell in code)
    namespace: dict[str, object] = {}
    for cell in code:
        source = cell.source.replace(NOTEBOOK_URL, live_server.url)
        compiled = compile(source, "<notebook cell>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        result = eval(compiled, namespace)  # a cell with a top-level await gives a coroutine, as in Jupyter
        if asyncio.iscoroutine(result):
            asyncio.run(result)
    assert namespace["sharpest"]["filename"] in {f"shoot/frame-{n}.jpg" for n in (0, 2, 4)}  # not a blurred one
    assert namespace["group"]["kind"] == "burst"  # the bursts cell found at least one, and kept its best
    assert set(namespace["table"]["exif.camera_model"]) == {"Notebook camera"}  # its EXIF came through


# -- helpers --
def _noise_png(width: int, height: int, seed: int) -> bytes:
    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(out, "PNG", compress_level=0)
    return out.getvalue()


def _everything_sendable(protocol: UploadProtocol) -> list[str | bytes]:
    sent = []
    while (message := protocol.outgoing()) is not None:
        sent.append(message)
    return sent


async def _until_added(events, count: int):
    async for event in events:
        if event["type"] == "image_added":
            yield event
            count -= 1
            if count == 0:
                return
