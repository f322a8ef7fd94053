"""The workspace page through NiceGUI's ``user`` fixture: page logic, in-process, no browser.

Uploads are real multipart POSTs to the drop zone's route; API pushes are real requests to the
API mounted on the same app. (Handlers run in the test's task here, so ContextVar isolation is
also proven in the real browser tests.)
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import time
import zipfile
from collections.abc import Callable, Iterator

import httpx
import pytest
from fastapi import FastAPI
from nicegui import Client, app, ui
from nicegui.testing import User
from PIL import Image

from core import workspace
from core.config import Settings
from core.ingest import clean_filename
from core.invites import invites
from core.sessions import CURRENT_SESSION_ID, current_session_id, new_session_id, session_scope
from tests.helpers import LiveServer, big_jpeg, cards_named, hostile, make_jpeg
from ui.dropzone import DropZone, HeldBack
from ui.routes import WS_UPLOAD_PATH, install_routes
from ui.session import OWNER_KEY, SESSION_KEY, bind, binding_of, choose_session, in_session, unbind


@pytest.fixture(autouse=True)
def ui_settings(configure: Callable[..., Settings]) -> Settings:
    return configure(feature_workers=1)  # features in a thread: no process pool per test


async def open_page(user: User, path: str = "/") -> tuple[Client, str]:
    client = await user.open(path)
    await user.should_see("Script access")
    return client, binding_of(client).session_id


def uploader_url(user: User) -> str:
    return next(iter(user.find(DropZone).elements)).props["url"]


async def drop(user: User, *files: tuple[str, bytes]) -> httpx.Response:
    """What the drop zone sends: one multipart part named ``files`` per file."""
    return await user.http_client.post(uploader_url(user), files=[("files", (name, data)) for name, data in files])


def files_created(writes: list[str]) -> list[str]:
    """Writes to files by path. Re-opening an inherited descriptor (the decode sandbox's worker
    pipes: ``open(fd, 'wb')``) creates no file; any file it could reach was opened, and seen, first."""
    return [write for write in writes if not write.split(" ", 1)[0].isdigit()]


def stored(session_id: str) -> list[str]:
    with session_scope(session_id):
        return [record.filename for record in workspace.list_images()]


async def test_empty_workspace_says_what_to_do_and_that_it_lives_in_memory(user: User) -> None:
    await open_page(user)
    await user.should_see("No images yet.")
    await user.should_see("Images live only in this server's memory")
    await user.should_see("0 images")


async def test_dropped_files_appear_as_cards_with_their_details(user: User) -> None:
    _, session_id = await open_page(user)
    response = await drop(user, ("first.jpg", make_jpeg(64, 48, seed=1)), ("second.jpg", make_jpeg(32, 40, seed=2)))
    assert response.status_code == 200
    assert [r["filename"] for r in response.json()["accepted"]] == ["first.jpg", "second.jpg"]
    cards = await cards_named(user, "first.jpg", "second.jpg")
    assert cards["first.jpg"]["meta"].startswith("64×48 · JPEG · ")
    await user.should_see("2 images")
    await user.should_not_see("No images yet.")
    assert stored(session_id) == ["first.jpg", "second.jpg"]


async def test_each_refused_file_gets_the_apis_message_in_plain_words(user: User) -> None:
    await open_page(user)
    response = await drop(
        user,
        ("ok.jpg", make_jpeg(seed=3)),
        ("truncated.jpg", hostile("truncated.jpg")),
        ("x.png", hostile("svg_renamed.png")),
    )
    assert response.status_code == 200
    rejected = {r["filename"]: r["detail"] for r in response.json()["rejected"]}
    assert set(rejected) == {"truncated.jpg", "x.png"}
    for name, detail in rejected.items():
        await user.should_see(f"{name}: {detail}")
    await cards_named(user, "ok.jpg")


async def test_a_zip_dropped_on_the_page_is_unpacked_and_unsafe_archives_refused_whole(user: User) -> None:
    _, session_id = await open_page(user)
    assert (await drop(user, ("good.zip", hostile("zip_good.zip")))).status_code == 200
    assert len(stored(session_id)) == 3
    response = await drop(user, ("slip.zip", hostile("zip_slip.zip")))
    assert response.status_code == 422
    await user.should_see("slip.zip: ")
    assert len(stored(session_id)) == 3


async def test_a_darkroom_archive_dropped_into_an_empty_workspace_says_it_restored_the_annotations(user: User) -> None:
    _, session_id = await open_page(user)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as packed:
        packed.writestr("a.jpg", make_jpeg(seed=4))
        packed.writestr("annotations.json", json.dumps([{"file": "a.jpg", "tags": ["keep"], "pick": "picked"}]))
    assert (await drop(user, ("shoot.zip", archive.getvalue()))).status_code == 200
    await user.should_see("restored the annotations of 1 image")
    with session_scope(session_id):
        (record,) = workspace.list_images()
        assert workspace.get_annotations(record.id).pick == "picked"


async def test_the_pages_http_upload_names_each_part_as_the_server_keeps_it_in_the_order_sent(user: User) -> None:
    await open_page(user)
    sent = ["evil\u202egpj.jpg", "x" * 300 + ".jpg", "bad.jpg", "plain.jpg"]  # a bidi override, a long name
    files = [make_jpeg(seed=40), make_jpeg(seed=41), hostile("truncated.jpg"), make_jpeg(seed=42)]
    body = (await drop(user, *zip(sent, files, strict=True))).json()
    assert body["parts"] == [clean_filename(name) for name in sent]  # the drop zone ties outcomes by these
    assert body["parts"][0] == "evilgpj.jpg" and len(body["parts"][1]) == 200
    assert {r["filename"] for r in body["accepted"]} == {body["parts"][i] for i in (0, 1, 3)}
    assert [r["filename"] for r in body["rejected"]] == [body["parts"][2]]


async def test_the_drop_zone_enforces_the_size_limit_on_the_server(user: User, configure) -> None:
    configure(feature_workers=1, max_file_bytes=50_000)
    _, session_id = await open_page(user)
    response = await drop(user, ("big.jpg", make_jpeg(600, 600, seed=4, quality=100)))
    assert response.status_code == 413
    assert "limit" in response.json()["detail"]
    await user.should_see("Upload stopped:")
    assert stored(session_id) == []
    assert response.json()["detail"].endswith("nothing was stored")


async def test_the_page_stores_each_file_as_it_lands_and_says_so_when_a_later_one_breaks_a_limit(
    user: User, configure
) -> None:
    configure(feature_workers=1, max_file_bytes=50_000)
    _, session_id = await open_page(user)
    files = [("small.jpg", make_jpeg(seed=22)), ("huge.jpg", make_jpeg(600, 600, seed=23, quality=100))]
    response = await drop(user, *files, ("never.jpg", make_jpeg(seed=24)))
    assert response.status_code == 413
    assert response.json()["detail"].endswith("the 1 file(s) before it were stored")
    await cards_named(user, "small.jpg")
    assert stored(session_id) == ["small.jpg"]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ({"files": [{"name": "a.jpg", "size": 10}], "count": 1}, ([("a.jpg", 10)], 1)),
        # at most five named; the count comes from the page, at least the names, at most a million
        (
            {"files": [{"name": f"{n}.jpg", "size": n} for n in range(9)], "count": 9},
            ([(f"{n}.jpg", n) for n in range(5)], 9),
        ),
        ({"files": [{"name": "a.jpg", "size": 1}], "count": 0}, ([("a.jpg", 1)], 1)),
        ({"files": [], "count": 10**12}, ([], 1_000_000)),
        # entries that are not a name and a size are left out; a name is a display name
        (
            {"files": [{"name": 5, "size": 1}, {"name": "b", "size": "1"}, {"name": "c", "size": -1}, "x"], "count": 4},
            ([], 4),
        ),
        (
            {"files": [{"name": "x\u202e" + "y" * 5000, "size": True}, {"name": "\x1b[31mz", "size": 2}], "count": 2},
            ([("[31mz", 2)], 2),
        ),
    ],
)
def test_what_the_page_says_it_held_back_is_checked(args: object, expected: tuple[list, int]) -> None:
    held = HeldBack.parse(args)
    assert held is not None and (held.files, held.count) == expected


@pytest.mark.parametrize(
    "args", [None, [], "files", {"files": {}}, {"files": []}, {"files": [], "count": "3"}, {"files": [], "count": True}]
)
def test_a_held_back_event_that_is_not_the_pages_is_ignored(args: object) -> None:
    assert HeldBack.parse(args) is None


async def test_files_held_back_by_the_page_are_named_five_at_a_time_in_one_notice(user: User) -> None:
    await open_page(user)
    zone = user.find(DropZone)
    zone.trigger("rejected", {"files": [{"name": f"big-{n}.jpg", "size": 60 * 2**20} for n in range(5)], "count": 8})
    await user.should_see("Not sent, too large: big-0.jpg (60 MiB), big-1.jpg (60 MiB)")
    await user.should_see("big-4.jpg (60 MiB) and 3 more")
    zone.trigger("rejected", ["not", "what", "the", "page", "sends"])  # ignored, and the page keeps working
    await user.should_see("0 images")


async def test_no_route_of_the_page_parses_uploads_with_request_form(user: User) -> None:
    """ui.upload registers a request.form() route (spooling to disk) per element: none may exist."""
    await open_page(user)
    stock = [r.path for r in app.routes if str(getattr(r, "path", "")).startswith("/_nicegui/client/")]
    assert not [path for path in stock if "/upload/" in path]


async def test_an_upload_over_1_mib_through_the_page_writes_nothing_to_disk(user: User, watch_writes) -> None:
    _, session_id = await open_page(user)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("inside.jpg", make_jpeg(1400, 1000, seed=7, quality=100))
    response = await drop(user, ("big.jpg", big_jpeg()), ("photos.zip", archive.getvalue()))
    assert response.status_code == 200
    await cards_named(user, "big.jpg")
    assert sorted(stored(session_id)) == ["big.jpg", "inside.jpg"]
    assert files_created(watch_writes) == []


async def test_images_pushed_through_the_api_appear_and_disappear_live(user: User) -> None:
    _, session_id = await open_page(user)
    headers = {"X-Session-Id": session_id}
    response = await user.http_client.post(
        "/api/images", headers=headers, files=[("files", ("pushed.jpg", make_jpeg(seed=8)))]
    )
    assert response.status_code == 200
    await cards_named(user, "pushed.jpg")
    image_id = response.json()["accepted"][0]["id"]
    assert (await user.http_client.delete(f"/api/images/{image_id}", headers=headers)).status_code == 204
    await cards_named(user, "pushed.jpg", shown=False)
    await user.should_see("No images yet.")


async def test_a_browser_that_says_ready_over_and_over_gets_every_card_at_most_once_a_second(
    user: User, monkeypatch
) -> None:
    await open_page(user)
    await drop(user, ("a.jpg", make_jpeg(seed=1)), ("b.jpg", make_jpeg(seed=2)))
    await cards_named(user, "a.jpg", "b.jpg")
    gallery = user.find(marker="gallery")
    (grid,) = gallery.elements
    resets: list[int] = []
    monkeypatch.setattr(
        grid, "run_method", lambda name, *args: resets.append(len(args[0])) if name == "reset" else None
    )
    for _ in range(200):  # a hostile page's "ready" events, as fast as its socket takes them
        gallery.trigger("ready")
    assert len(resets) <= 1  # at once, unless the page's own mount sent them a moment ago
    for _ in range(50):
        await asyncio.sleep(0.05)
        if not grid.resend.pending:
            break
    assert 1 <= len(resets) <= 2 and all(count == 2 for count in resets)  # one resend left, not 200


async def test_delete_one_image_from_its_card(user: User) -> None:
    _, session_id = await open_page(user)
    await drop(user, ("doomed.jpg", make_jpeg(seed=9)))
    cards = await cards_named(user, "doomed.jpg")
    user.find(marker="gallery").trigger("delete", cards["doomed.jpg"]["id"])
    await cards_named(user, "doomed.jpg", shown=False)
    assert stored(session_id) == []


async def test_clear_asks_first_then_empties_the_workspace(user: User) -> None:
    _, session_id = await open_page(user)
    await drop(user, ("a.jpg", make_jpeg(seed=10)), ("b.jpg", make_jpeg(seed=11)))
    await cards_named(user, "b.jpg")
    user.find("Clear workspace").click()
    await user.should_see("Clear this workspace?")
    user.find("Cancel").click()
    assert len(stored(session_id)) == 2
    user.find("Clear workspace").click()
    user.find(marker="confirm-clear").click()
    await user.should_see("Workspace cleared (2 images deleted).")
    await cards_named(user, "a.jpg", shown=False)
    await user.should_see("No images yet.")
    assert stored(session_id) == []


async def test_tabs_are_isolated(user: User, create_user: Callable[[], User]) -> None:
    _, first = await open_page(user)
    other = create_user()
    _, second = await open_page(other)
    assert first != second
    await drop(user, ("mine.jpg", make_jpeg(seed=12)))
    await cards_named(user, "mine.jpg")
    await other.should_see("No images yet.")
    await cards_named(other, "mine.jpg", shown=False)
    # The other page's resource token cannot read this page's image.
    with session_scope(first):
        image_id = workspace.list_images()[0].id
    other_token = binding_of(other.client).token
    assert (await other.http_client.get(f"/_darkroom/thumbnail/{other_token}/{image_id}")).status_code == 404


async def test_a_reload_keeps_the_workspace_and_a_new_tab_gets_another(user: User, create_user) -> None:
    _, first = await open_page(user)
    await drop(user, ("kept.jpg", make_jpeg(seed=13)))
    _, again = await open_page(user)  # same tab id: a reload
    assert again == first
    await cards_named(user, "kept.jpg")
    other = create_user()  # another tab id: a new tab
    _, second = await open_page(other)
    assert second != first


def test_a_duplicated_tab_gets_a_fresh_session_not_a_shared_one() -> None:
    """NiceGUI copies tab storage into a duplicated tab; the stored owner tab id tells the copy."""
    original: dict = {}
    session_id, reason = choose_session(original, "tab-a")
    assert reason == "new"
    assert choose_session(original, "tab-a") == (session_id, "kept")
    duplicate = dict(original)  # what NiceGUI hands the duplicated tab
    copy_session, copy_reason = choose_session(duplicate, "tab-b")
    assert copy_reason == "new" and copy_session != session_id
    assert choose_session(original, "tab-a") == (session_id, "kept")  # the original keeps its own
    assert choose_session({SESSION_KEY: "../../etc", OWNER_KEY: "tab-c"}, "tab-c")[1] == "new"


def test_after_a_server_restart_a_tab_resumes_the_session_its_browser_remembered() -> None:
    remembered = new_session_id()
    assert choose_session({}, "tab-a", remembered=remembered) == (remembered, "kept")  # tab storage was lost
    assert choose_session({}, "tab-a", remembered="../../etc")[1] == "new"  # only a valid id is taken
    copied = {SESSION_KEY: remembered, OWNER_KEY: "tab-a"}
    assert choose_session(copied, "tab-b", remembered=remembered)[1] == "new"  # a duplicate stays fresh


async def test_an_invite_link_joins_the_workspace_live_and_revoking_it_stops_new_joins(user: User, create_user) -> None:
    _, owner_session = await open_page(user)
    await drop(user, ("shared.jpg", make_jpeg(seed=14)))
    user.find("Invite").click()
    user.find("Create invite link").click()
    await user.should_see("min left")
    (token,) = [i.token for i in invites.active(owner_session)]

    guest = create_user()
    _, guest_session = await open_page(guest, f"/?join={token}")
    assert guest_session == owner_session
    await guest.should_see("You joined a shared workspace")
    await cards_named(guest, "shared.jpg")
    await drop(user, ("later.jpg", make_jpeg(seed=15)))
    await cards_named(guest, "later.jpg")  # live in the joined tab
    await drop(guest, ("from-guest.jpg", make_jpeg(seed=16)))
    await cards_named(user, "from-guest.jpg")  # and back
    _, reloaded = await open_page(guest)  # the guest's reload stays joined
    assert reloaded == owner_session

    user.find("Revoke").click()
    assert invites.active(owner_session) == []
    late = create_user()
    _, late_session = await open_page(late, f"/?join={token}")
    assert late_session != owner_session
    await late.should_see("This invite link has expired or was revoked")
    await cards_named(late, "shared.jpg", shown=False)


async def test_an_expired_invite_link_leaves_the_visitor_in_a_private_workspace(user: User, create_user) -> None:
    _, owner_session = await open_page(user)
    await drop(user, ("private.jpg", make_jpeg(seed=25)))
    expired = invites.create(owner_session, ttl_seconds=60, now=time.time() - 120)
    visitor = create_user()
    _, visitor_session = await open_page(visitor, f"/?join={expired.token}")
    assert visitor_session != owner_session
    await visitor.should_see("This invite link has expired or was revoked")
    await cards_named(visitor, "private.jpg", shown=False)


async def test_invites_expire(user: User) -> None:
    session_id = new_session_id()
    invite = invites.create(session_id, ttl_seconds=60, now=1000.0)
    assert invites.resolve(invite.token, now=1059.0) == session_id
    assert invites.resolve(invite.token, now=1060.0) is None
    assert invites.revoke(new_session_id(), invite.token) is False  # not another session's to revoke


@pytest.mark.slow
async def test_the_session_lives_while_a_tab_is_open_and_expires_after_the_last_closes(user: User, configure) -> None:
    configure(feature_workers=1, session_idle_seconds=2.0)  # the page touches it every 2/3 s
    client, session_id = await open_page(user)
    await drop(user, ("alive.jpg", make_jpeg(seed=17)))
    await asyncio.sleep(3.0)  # longer than the idle time: only the page's keep-alive holds it
    workspace.expire_idle_sessions()
    assert stored(session_id) == ["alive.jpg"]
    client.delete()  # the tab is gone
    await asyncio.sleep(2.5)
    assert workspace.expire_idle_sessions() >= 1
    assert stored(session_id) == []


async def test_detail_shows_upright_preview_charts_tables_and_quality_badges(user: User) -> None:
    client, _ = await open_page(user)
    await drop(user, ("rotated.jpg", hostile("exif_orientation_6.jpg")))
    cards = await cards_named(user, "rotated.jpg")
    user.find(marker="gallery").trigger("open", cards["rotated.jpg"]["id"])
    await user.should_see(marker="detail-chart", retries=100)
    charts = user.find(marker="detail-chart").elements
    assert len(charts) == 3
    (table,) = [t for t in user.find(kind=ui.table).elements if t.columns[0]["name"] == "group"]
    assert {"sharpness", "laplacian_var"} <= {value for row in table.rows for value in row.values()}
    titles = {chart.options["title"]["text"].split(" (")[0] for chart in charts}
    assert titles == {"RGB and gray histograms", "HSV histograms", "LBP texture histogram"}
    assert user.find(kind=ui.badge).elements
    with session_scope(binding_of(client).session_id):
        record = workspace.list_images()[0]
    assert record.height > record.width  # stored landscape with orientation 6: upright is portrait
    preview = await user.http_client.get(f"/_darkroom/preview/{binding_of(client).token}/{record.id}")
    assert preview.status_code == 200
    from PIL import Image

    with Image.open(io.BytesIO(preview.content)) as image:
        assert (image.width > image.height) == (record.width > record.height)


async def test_dashboard_table_duplicates_and_exports(user: User) -> None:
    await open_page(user)
    photo = make_jpeg(80, 60, seed=18)
    await drop(user, ("one.jpg", photo), ("copy.jpg", photo), ("other.jpg", make_jpeg(80, 60, seed=19)))
    await user.should_see("3 images")
    user.find("Dashboard").click()
    await user.should_see("every feature computed", retries=100)
    table = next(iter(user.find(kind=ui.table).elements))
    assert sorted(row["filename"] for row in table.rows) == ["copy.jpg", "one.jpg", "other.jpg"]
    assert all(isinstance(row["sharpness.laplacian_var"], float) for row in table.rows)
    await user.should_see("Identical pixels")

    user.find("Export CSV").click()
    response = await user.download.next(timeout=10)
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert len(rows) == 3 and "hashes.phash" in rows[0]
    user.find("Export JSON").click()
    response = await user.download.next(timeout=10)
    assert len(json.loads(response.text)["rows"]) == 3


async def test_script_access_shows_the_session_id_and_snippets(user: User) -> None:
    _, session_id = await open_page(user)
    user.find("Script access").click()
    await user.should_see("Use this workspace from a script")
    await user.should_see(f"X-Session-Id: {session_id}")  # the curl snippet
    await user.should_see(f'SESSION = "{session_id}"')  # the Python snippet


async def test_page_resources_die_with_the_page(user: User) -> None:
    client, _ = await open_page(user)
    await drop(user, ("gone.jpg", make_jpeg(seed=20)))
    image_id = (await cards_named(user, "gone.jpg"))["gone.jpg"]["id"]
    token = binding_of(client).token
    url = uploader_url(user)
    assert (await user.http_client.get(f"/_darkroom/thumbnail/{token}/{image_id}")).status_code == 200
    client.delete()
    assert (await user.http_client.get(f"/_darkroom/thumbnail/{token}/{image_id}")).status_code == 404
    response = await user.http_client.post(url, files=[("files", ("x.jpg", make_jpeg(seed=21)))])
    assert response.status_code == 404
    assert "reload" in response.json()["detail"]


def test_the_handler_helper_uses_the_handlers_own_client_not_the_tasks_context() -> None:
    """A value bound across clients runs B's handler in A's task: the helper must still give B's
    session, and leave A's value in place afterwards."""

    class Args:
        def __init__(self, client: Client) -> None:
            self.client = client

    a, b = Client.__new__(Client), Client.__new__(Client)
    a.id, b.id = "client-a", "client-b"
    session_a, session_b = new_session_id(), new_session_id()
    bind(a, session_a)
    bind(b, session_b)
    try:
        seen = []

        @in_session
        def handler(event: Args) -> None:
            seen.append(current_session_id())

        with session_scope(session_a):
            handler(Args(b))
            assert CURRENT_SESSION_ID.get() == session_a
        assert seen == [session_b]
    finally:
        unbind(a)
        unbind(b)


def _socket_upload(url: str, files: list[tuple[str, bytes]]) -> list[dict]:
    """What the drop zone does over the page's upload WebSocket: header, chunks, done. A binary
    message from the server (a thumbnail) is listed as ``{"type": "binary", "data": ...}``."""
    from websockets.sync.client import connect

    def received(message: str | bytes) -> dict:
        return {"type": "binary", "data": message} if isinstance(message, bytes) else json.loads(message)

    messages = []
    with connect(url, compression=None, max_size=None) as ws:
        messages.append(received(ws.recv(timeout=10)))
        for name, data in files:
            ws.send(json.dumps({"filename": name, "size": len(data)}))
            for start in range(0, len(data), 1024 * 1024):
                ws.send(data[start : start + 1024 * 1024])
        ws.send(json.dumps({"type": "done"}))
        while messages[-1]["type"] not in ("summary", "error"):
            messages.append(received(ws.recv(timeout=30)))
    return messages


@pytest.fixture
def page_routes() -> Iterator[LiveServer]:
    """The page's routes served by a real uvicorn (the ``user`` fixture's client speaks no WebSocket)."""
    bare = FastAPI()
    install_routes(bare)
    server = LiveServer(bare)
    server.start()
    yield server
    server.stop()


async def test_the_pages_upload_socket_stores_photos_and_archives_in_ram_only(
    user: User, page_routes: LiveServer, watch_writes
) -> None:
    client, session_id = await open_page(user)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("inside/zip.jpg", make_jpeg(1400, 1000, seed=25, quality=100))
    url = page_routes.ws_url + WS_UPLOAD_PATH.format(token=binding_of(client).token)
    files = [("big.jpg", big_jpeg()), ("photos.zip", archive.getvalue()), ("bad.jpg", hostile("truncated.jpg"))]
    messages = await asyncio.to_thread(_socket_upload, url, files)
    assert messages[0]["type"] == "ready"
    assert any(m["type"] == "progress" for m in messages)  # the acknowledgements the page waits for
    results = {m["filename"]: m for m in messages if m["type"] == "result"}
    assert results["big.jpg"]["status"] == 200 and results["inside/zip.jpg"]["status"] == 200
    assert results["bad.jpg"]["status"] == 422 and "corrupt" in results["bad.jpg"]["detail"]
    assert messages[-1] == {"type": "summary", "accepted": 2, "rejected": 1, "duplicates": 0}
    # Each stored image's result is followed by its thumbnail, the bytes the thumbnail route serves:
    # the page draws the card from it instead of fetching it.
    for at, message in enumerate(messages):
        if message["type"] == "result" and message["status"] == 200:
            following = messages[at + 1]
            assert following["type"] == "binary" and len(following["data"]) == message["thumbnail"]
            assert message["thumbnail_mime"] in ("image/jpeg", "image/png", "image/webp")
            with session_scope(session_id):
                assert workspace.load_thumbnail(message["image"]["id"])[1] == following["data"]
        elif message["type"] == "result":
            assert "thumbnail" not in message and messages[at + 1]["type"] != "binary"
    assert sum(m["type"] == "binary" for m in messages) == 2
    await cards_named(user, "big.jpg")
    await user.should_see("bad.jpg: ")  # the refusal, in the API's words, in the page's message list
    assert sorted(stored(session_id)) == ["big.jpg", "inside/zip.jpg"]
    assert files_created(watch_writes) == []


async def test_the_upload_socket_of_a_closed_page_is_refused(user: User, page_routes: LiveServer) -> None:
    from websockets.exceptions import InvalidStatus

    client, session_id = await open_page(user)
    url = page_routes.ws_url + WS_UPLOAD_PATH.format(token=binding_of(client).token)
    client.delete()
    with pytest.raises(InvalidStatus):
        await asyncio.to_thread(_socket_upload, url, [("late.jpg", make_jpeg(seed=26))])
    assert stored(session_id) == []


async def test_download_all_and_the_detail_download_serve_the_originals_by_page_token(user: User) -> None:
    client, session_id = await open_page(user)
    photos = {"a.jpg": make_jpeg(seed=27), "b.jpg": make_jpeg(seed=28)}
    await drop(user, *photos.items())
    token = binding_of(client).token
    response = await user.http_client.get(f"/_darkroom/archive/{token}")
    assert response.status_code == 200 and response.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        assert {name: archive.read(name) for name in archive.namelist()} == photos
    with session_scope(session_id):
        image_id = workspace.list_images()[0].id
    original = await user.http_client.get(f"/_darkroom/original/{token}/{image_id}")
    assert original.status_code == 200 and original.content == photos["a.jpg"]
    assert original.headers["content-disposition"].startswith("attachment;")
    client.delete()
    assert (await user.http_client.get(f"/_darkroom/archive/{token}")).status_code == 404
    assert (await user.http_client.get(f"/_darkroom/original/{token}/{image_id}")).status_code == 404


def _chart(user: User, testid: str) -> ui.echart:
    return next(chart for chart in user.find(kind=ui.echart).elements if chart.props.get("data-testid") == testid)


async def test_dashboard_charts_show_every_image_highlight_flags_and_follow_removals(user: User) -> None:
    client, session_id = await open_page(user)
    black = io.BytesIO()
    Image.new("RGB", (80, 60), (2, 2, 2)).save(black, "JPEG")
    await drop(user, ("one.jpg", make_jpeg(80, 60, seed=29)), ("two.jpg", make_jpeg(80, 60, seed=30)))
    await drop(user, ("dark.jpg", black.getvalue()))
    await user.should_see("3 images")
    user.find("Dashboard").click()
    await user.should_see("every feature computed", retries=100)
    scatter, histogram = _chart(user, "scatter"), _chart(user, "histogram")
    clean, flagged = scatter.options["series"]
    assert len(clean["data"]) + len(flagged["data"]) == 3
    assert "dark.jpg" in {point["name"] for point in flagged["data"]}
    assert all(point["thumb"].startswith("/_darkroom/thumbnail/") for point in clean["data"] + flagged["data"])
    assert sum(histogram.options["series"][0]["data"]) == 3

    select = next(s for s in user.find(kind=ui.select).elements if s.props.get("label") == "Histogram of")
    assert "entropy.shannon_entropy" in select.options
    select.set_value("entropy.shannon_entropy")
    assert histogram.options["title"]["text"] == "Distribution of entropy.shannon_entropy"

    with session_scope(session_id):
        workspace.delete_image(next(r.id for r in workspace.list_images() if r.filename == "dark.jpg"))
    await user.should_see("2 images")
    for _ in range(50):  # removals are batched into one redraw a moment later, without recomputing
        clean, flagged = _chart(user, "scatter").options["series"]
        if len(clean["data"]) + len(flagged["data"]) == 2:
            break
        await asyncio.sleep(0.1)
    assert len(clean["data"]) + len(flagged["data"]) == 2

    await drop(user, ("three.jpg", make_jpeg(80, 60, seed=31)))  # while the dashboard is open
    for _ in range(100):
        clean, flagged = _chart(user, "scatter").options["series"]
        if len(clean["data"]) + len(flagged["data"]) == 3:
            break
        await asyncio.sleep(0.1)
    assert "three.jpg" in {point["name"] for point in clean["data"] + flagged["data"]}
