"""The workspace page: upload, gallery, image detail, session dashboard, sharing.

One ``Workspace`` per page load (NiceGUI client). It binds to its tab's session (``ui.session``),
follows that session's events so that images added or removed anywhere (the API, another joined
tab) appear and disappear live, and keeps the session alive while the tab is open.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from nicegui import Client, app, background_tasks, ui

from core import data_service
from core.errors import DarkroomError
from core.events import IMAGE_ADDED, IMAGE_REMOVED, PROGRESS, SESSION_CLEARED, Event, bus
from core.features import service as features
from core.invites import invites
from ui.dropzone import DropZone
from ui.routes import PREVIEW_PATH, THUMBNAIL_PATH, UPLOAD_PATH, upload_listeners
from ui.session import SESSION_KEY, Binding, bind, choose_session, in_session, run_in_session, unbind
from ui.widgets import (
    KEY_COLUMNS,
    QUALITY_FLAGS,
    code_block,
    feature_rows,
    histogram_chart,
    hsv_chart,
    human_bytes,
    lbp_chart,
)

log = logging.getLogger(__name__)
_MAX_MESSAGES = 50  # upload messages kept on the page

_CSS = """
.dr-grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(190px, 1fr)); gap: 12px; width: 100%; }
.dr-card { overflow: hidden; }
.dr-thumb { width: 100%; height: 150px; object-fit: cover; cursor: pointer; background: #eceff1; display: block; }
.dr-name { font-weight: 500; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; max-width: 150px; }
.dr-small-thumb { height: 72px; width: 96px; object-fit: cover; border-radius: 4px; }
.dr-dropzone { border: 2px dashed #90a4ae; border-radius: 8px; padding: 18px; cursor: pointer; background: #fafafa; }
.dr-dropzone.dr-dragging { border-color: #1976d2; background: #e3f2fd; }
.dr-dropzone-label { display: flex; gap: 8px; align-items: center; justify-content: center; color: #455a64; }
.dr-file-input { display: none; }
.dr-upload-list { margin-top: 10px; display: flex; flex-direction: column; gap: 4px; cursor: default; }
.dr-upload-item { display: grid; grid-template-columns: 20px minmax(120px, 260px) 1fr 130px; gap: 8px;
  align-items: center; font-size: 13px; }
.dr-upload-name { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.dr-upload-size { color: #78909c; text-align: right; }
.dr-failed { color: #c62828; }
.dr-done { color: #2e7d32; }
.dr-swatch { width: 28px; height: 28px; border-radius: 4px; border: 1px solid #0002; }
"""


def _open_once(dialog: ui.dialog) -> None:
    """Open a dialog built for this one use; it is deleted when closed."""
    dialog.on_value_change(lambda event: None if event.value else dialog.delete())
    dialog.open()


class Workspace:
    """What one open page shows of its session, kept up to date from the session's events."""

    def __init__(self, client: Client, binding: Binding, base_url: str) -> None:
        self.client = client
        self.binding = binding
        self.base_url = base_url.rstrip("/")
        self.settings = data_service.settings()
        self.cards: dict[str, ui.element] = {}
        self.records: dict[str, dict[str, Any]] = {}
        self.dashboard_rows: list[dict[str, Any]] = []
        self.dashboard_columns: list[str] = []
        self.dashboard_stale = True
        self.computing = False
        self._unsubscribe: Callable[[], None] | None = None
        self._consumer: asyncio.Task[None] | None = None

    # -- URLs of this page's resources (a token, never the session id) --
    def thumbnail_url(self, image_id: str) -> str:
        return THUMBNAIL_PATH.format(token=self.binding.token, image_id=image_id)

    def preview_url(self, image_id: str) -> str:
        return PREVIEW_PATH.format(token=self.binding.token, image_id=image_id)

    # -- lifecycle --
    def start(self) -> None:
        """Subscribe first, then list: an image added in between is not missed (cards dedupe)."""
        queue, self._unsubscribe = bus.subscribe_queue(self.binding.session_id)
        self._consumer = background_tasks.create(self._consume(queue), name="darkroom-workspace-events")
        upload_listeners[self.client.id] = self.show_upload_outcome
        for record in run_in_session(self.client, data_service.list_images):
            self._add_card(record.to_public())
        run_in_session(self.client, data_service.touch_session)
        self._update_counts()
        keep_alive = max(0.2, min(60.0, self.settings.session_idle_seconds / 3))
        ui.timer(keep_alive, in_session(data_service.touch_session))

    def close(self) -> None:
        """The page is gone: stop following events and free its tokens. The session itself stays
        until it has been idle for the configured time (another tab or a script may use it)."""
        if self._unsubscribe:
            self._unsubscribe()
        if self._consumer:
            self._consumer.cancel()
        upload_listeners.pop(self.client.id, None)
        unbind(self.client)

    async def _consume(self, queue: asyncio.Queue[Event]) -> None:
        while True:
            events = [await queue.get()]
            while not queue.empty():  # a burst (a drop of many photos) costs one count update
                events.append(queue.get_nowait())
            changed = False
            for event in events:
                try:
                    changed = self._apply(event) or changed
                except Exception:  # noqa: BLE001  one bad update must not stop the live view
                    log.exception("could not apply a %s event to the page", event.kind)
            if changed:
                self._update_counts()

    def _apply(self, event: Event) -> bool:
        """Show one event; True when the workspace's content changed."""
        if event.kind == IMAGE_ADDED:
            self._add_card(event.data["image"])
        elif event.kind == IMAGE_REMOVED:
            self._remove_card(event.data["image_id"])
        elif event.kind == SESSION_CLEARED:
            for image_id in list(self.cards):
                self._remove_card(image_id)
            if event.data.get("reason") == "expired":
                with self.gallery:
                    ui.notify("This workspace expired after being idle; its images were deleted.", type="warning")
        elif event.kind == PROGRESS:
            self._show_progress(event.data.get("done", 0), event.data.get("total", 0))
            return False
        return True

    # -- page --
    def build(self) -> None:
        ui.add_css(_CSS)
        with ui.header().classes("items-center bg-blue-grey-9 q-px-md"):
            ui.icon("photo_camera").classes("text-2xl")
            ui.label("Darkroom").classes("text-xl font-bold")
            ui.label("private image workspace").classes("text-blue-grey-2 max-sm:hidden")
            ui.space()
            self.usage = ui.label().classes("text-blue-grey-1 text-sm").props("data-testid=usage")
            ui.button("Script access", icon="terminal", on_click=self.show_script_access).props("flat color=white")
            ui.button("Invite", icon="group_add", on_click=self.show_invites).props("flat color=white")
            ui.button("Clear workspace", icon="delete_sweep", on_click=self.confirm_clear).props("flat color=white")
        with ui.column().classes("w-full max-w-screen-xl mx-auto q-pa-md gap-3"):
            minutes = self.settings.session_idle_seconds / 60
            if self.settings.storage == "memory":
                icon, text = (
                    "memory",
                    "Images live only in this server's memory: they vanish when the server restarts, when "
                    f"you clear the workspace, or {minutes:g} minutes after the last tab of it closes. "
                    "Nothing is written to disk.",
                )
            else:
                icon, text = (
                    "save",
                    f"Images are kept on the server ({'a folder' if self.settings.storage == 'disk' else 'a database'}"
                    " for this workspace) and survive a restart; they are deleted when you clear the workspace "
                    f"or {minutes:g} minutes after the last tab of it closes.",
                )
            with ui.row().classes("w-full items-center bg-amber-1 text-amber-10 rounded q-pa-sm gap-2 no-wrap"):
                ui.icon(icon)
                ui.label(text).props("data-testid=storage-notice")
            self.uploader = DropZone(
                UPLOAD_PATH.format(token=self.binding.token),
                label="Drop photos or ZIP archives here, or click to pick them",
                accept="image/*,.zip,.tif,.tiff,application/zip",
                max_image_bytes=self.settings.max_file_bytes,
                max_archive_bytes=self.settings.zip_max_archive_bytes,
            ).classes("w-full")
            self.uploader.on_rejected(self._held_back)
            self.messages = ui.column().classes("w-full gap-1")
            with ui.tabs().classes("w-full").props("align=left") as tabs:
                self.gallery_tab = ui.tab("gallery", label="Gallery", icon="photo_library")
                ui.tab("dashboard", label="Dashboard", icon="insights")
            self.panels = ui.tab_panels(tabs, value="gallery", on_change=self._tab_changed).classes("w-full")
            with self.panels:
                with ui.tab_panel("gallery").classes("q-pa-none"):
                    self.empty = ui.column().classes("w-full items-center q-pa-xl text-grey-7")
                    with self.empty:
                        ui.icon("add_photo_alternate").classes("text-6xl")
                        ui.label("No images yet.").classes("text-lg")
                        ui.label(
                            "Drop photos (JPEG, PNG, GIF, WebP, BMP, TIFF) or ZIP archives above, "
                            "or push them from a script: see Script access."
                        )
                    self.gallery = ui.element("div").classes("dr-grid")
                with ui.tab_panel("dashboard").classes("q-pa-none"):
                    self._build_dashboard()
        self.detail = ui.dialog().props("maximized=false full-width")

    def _update_counts(self) -> None:
        count = len(self.cards)
        held = run_in_session(self.client, data_service.session_bytes_held)
        self.usage.set_text(
            f"{count} image{'s' if count != 1 else ''} · {human_bytes(held)} of "
            f"{human_bytes(self.settings.session_quota_bytes)}"
        )
        self.empty.set_visibility(count == 0)
        self.gallery_tab.props["label"] = f"Gallery ({count})"
        self.dashboard_stale = True
        if self.panels.value == "dashboard" and not self.computing:
            background_tasks.create(self._refresh_later(), name="darkroom-dashboard-refresh")

    # -- gallery --
    def _add_card(self, image: dict[str, Any]) -> None:
        image_id = image["id"]
        if image_id in self.cards:
            return
        self.records[image_id] = image
        with self.gallery, ui.card().tight().classes("dr-card").props(f"data-image-id={image_id}") as card:
            img = ui.element("img").classes("dr-thumb").mark("thumbnail")
            img.props["src"] = self.thumbnail_url(image_id)
            img.props["alt"] = image["filename"]
            img.on("click", lambda image_id=image_id: self.open_detail(image_id))
            with ui.row().classes("w-full items-center no-wrap q-px-sm q-py-xs"):
                with ui.column().classes("gap-0 grow"):
                    name = ui.label(image["filename"]).classes("dr-name")
                    name.props["title"] = image["filename"]
                    ui.label(
                        f"{image['width']}×{image['height']} · {image['format']} · {human_bytes(image['size_bytes'])}"
                    ).classes("text-xs text-grey-7")
                ui.button(icon="delete", on_click=lambda image_id=image_id: self.delete(image_id)).props(
                    "flat round dense size=sm color=grey-7"
                ).mark("delete-image").props('title="Delete this image"')
        self.cards[image_id] = card

    def _remove_card(self, image_id: str) -> None:
        card = self.cards.pop(image_id, None)
        self.records.pop(image_id, None)
        if card is not None:
            card.delete()

    @in_session
    async def delete(self, image_id: str) -> None:
        try:
            await asyncio.to_thread(data_service.delete_image, image_id)
        except DarkroomError as exc:
            ui.notify(exc.message, type="warning")

    @in_session
    def confirm_clear(self) -> None:
        with ui.dialog() as dialog, ui.card():
            count = len(self.cards)
            ui.label("Clear this workspace?").classes("text-lg font-bold")
            ui.label(
                f"All {count} image{'s' if count != 1 else ''} and their features are deleted for every tab "
                "joined to this workspace. This cannot be undone."
            )
            with ui.row().classes("w-full justify-end"):
                ui.button("Cancel", on_click=dialog.close).props("flat")
                ui.button("Clear", color="negative", on_click=lambda: self._clear(dialog)).mark("confirm-clear")
        _open_once(dialog)

    @in_session
    async def _clear(self, dialog: ui.dialog) -> None:
        dialog.close()
        count = await asyncio.to_thread(data_service.clear_session)  # disk and sql modes delete files
        ui.notify(f"Workspace cleared ({count} image{'s' if count != 1 else ''} deleted).")

    # -- uploads --
    @in_session
    def _held_back(self, files: list[dict[str, Any]]) -> None:
        names = ", ".join(f"{f['name']} ({human_bytes(f['size'])})" for f in files[:5])
        more = f" and {len(files) - 5} more" if len(files) > 5 else ""
        ui.notify(
            f"Not sent, too large: {names}{more}. Photos can be at most {human_bytes(self.settings.max_file_bytes)}, "
            f"ZIP archives at most {human_bytes(self.settings.zip_max_archive_bytes)}.",
            type="negative",
            multi_line=True,
        )

    def show_upload_outcome(self, report: data_service.UploadReport | None, error: DarkroomError | None) -> None:
        """Called by the upload route: what was refused, skipped or already there, in plain words."""
        lines: list[tuple[str, str]] = []
        if error is not None:
            lines.append(("negative", f"Upload stopped: {error.message}"))
        if report is not None:
            lines += [("negative", f"{r.filename}: {r.detail}") for r in report.rejected]
            lines += [
                ("info", f"{d.filename}: already in the workspace as {d.existing.filename}") for d in report.duplicates
            ]
            lines += [("grey", f"{s.filename}: skipped ({s.reason})") for s in report.skipped]
        if not lines:
            return
        with self.messages:
            for kind, text in lines:
                with ui.row().classes("w-full items-center no-wrap gap-2 text-sm") as row:
                    ui.icon({"negative": "error", "info": "content_copy", "grey": "block"}[kind]).classes(
                        f"text-{kind}"
                    )
                    ui.label(text).classes("grow").props("data-testid=upload-message").mark("upload-message")
                    ui.button(icon="close", on_click=row.delete).props("flat round dense size=xs")
            for old in list(self.messages)[:-_MAX_MESSAGES]:  # keep the newest ones
                old.delete()
            kind, text = lines[0]
            more = f" (and {len(lines) - 1} more)" if len(lines) > 1 else ""
            ui.notify(text + more, type="negative" if kind == "negative" else "info")

    # -- detail --
    @in_session
    async def open_detail(self, image_id: str) -> None:
        image = self.records.get(image_id)
        if image is None:
            return
        self.detail.clear()
        with self.detail, ui.card().classes("w-full"):
            with ui.row().classes("w-full items-center"):
                ui.label(image["filename"]).classes("text-lg font-bold grow")
                ui.button(icon="close", on_click=self.detail.close).props("flat round")
            with ui.row().classes("w-full no-wrap max-md:flex-wrap gap-4"):
                preview = ui.element("img").style("max-width: 520px; max-height: 420px; object-fit: contain")
                preview.props["src"] = self.preview_url(image_id)
                preview.props["alt"] = image["filename"]
                with ui.column().classes("gap-1"):
                    for label, value in (
                        ("Dimensions", f"{image['width']} × {image['height']} px (upright)"),
                        ("Format", image["format"]),
                        ("Size", human_bytes(image["size_bytes"])),
                        ("Uploaded", image["uploaded_at"]),
                        ("SHA-256", image["sha256"][:16] + "…"),
                    ):
                        with ui.row().classes("gap-2"):
                            ui.label(label).classes("text-grey-7 w-24")
                            ui.label(value)
                    self.detail_flags = ui.row().classes("gap-1 q-mt-sm")
            self.detail_body = ui.column().classes("w-full")
            with self.detail_body, ui.row().classes("items-center gap-2"):
                ui.spinner()
                ui.label("Computing features…")
        self.detail.open()
        try:
            values = await asyncio.to_thread(features.extract, image_id)
        except DarkroomError as exc:
            self.detail_body.clear()
            with self.detail_body:
                ui.label(exc.message).classes("text-negative")
            return
        self._render_detail(values)

    def _render_detail(self, values: dict[str, Any]) -> None:
        cleanvision = values["cleanvision"]
        with self.detail_flags:
            raised = [label for key, label in QUALITY_FLAGS if cleanvision.get(key)]
            for label in raised:
                ui.badge(label, color="negative").props("data-testid=quality-flag")
            if not raised:
                ui.badge("no quality issues", color="positive").props("data-testid=quality-flag")
            for colour in values["dominant_colors"]["dominant_colors_kmeans"][:5]:
                rgb = ",".join(str(round(c)) for c in colour["rgb"])
                ui.element("div").classes("dr-swatch").style(f"background: rgb({rgb})").tooltip(
                    f"rgb({rgb}) · {colour['fraction']:.0%}"
                )
        self.detail_body.clear()
        with self.detail_body:
            with ui.row().classes("w-full no-wrap max-lg:flex-wrap"):
                histogram_chart(values["hist256"]).classes("grow").style("height: 260px; min-width: 320px")
                hsv_chart(values["hsv"]).classes("grow").style("height: 260px; min-width: 320px")
                lbp_chart(values["lbp"]).classes("grow").style("height: 260px; min-width: 260px")
            rows = feature_rows(values)
            ui.table(
                columns=[
                    {"name": "group", "label": "Group", "field": "group", "sortable": True, "align": "left"},
                    {"name": "feature", "label": "Feature", "field": "feature", "sortable": True, "align": "left"},
                    {"name": "value", "label": "Value", "field": "value", "align": "right"},
                ],
                rows=rows,
                row_key="key",
                pagination={"rowsPerPage": 0},
            ).props("dense flat bordered virtual-scroll").classes("w-full").style("max-height: 420px")

    # -- dashboard --
    def _build_dashboard(self) -> None:
        with ui.row().classes("w-full items-center gap-2"):
            self.refresh_button = ui.button("Compute features", icon="play_arrow", on_click=self.refresh_dashboard)
            ui.button("Export CSV", icon="download", on_click=lambda: self.export("csv")).props("outline")
            ui.button("Export JSON", icon="data_object", on_click=lambda: self.export("json")).props("outline")
            self.progress_label = ui.label().classes("text-grey-7")
        self.progress = ui.linear_progress(value=0, show_value=False).props("instant-feedback").classes("w-full")
        self.progress.set_visibility(False)
        self.table = (
            ui.table(columns=KEY_COLUMNS, rows=[], row_key="id", pagination={"rowsPerPage": 25, "sortBy": None})
            .props("dense flat bordered")
            .classes("w-full")
        )
        self.table.add_slot(
            "body-cell-thumbnail",
            '<q-td :props="props"><img :src="props.value" style="height:40px;width:56px;object-fit:cover;'
            'border-radius:3px" /></q-td>',
        )
        self.table.add_slot(
            "body-cell-flags",
            '<q-td :props="props"><q-badge v-for="flag in props.value" :key="flag" color="negative" '
            ':label="flag" class="q-mr-xs" /></q-td>',
        )
        ui.label("Duplicates").classes("text-lg font-bold q-mt-md")
        self.duplicates = ui.column().classes("w-full gap-2")
        with self.duplicates:
            ui.label("Compute features to find exact and near duplicates.").classes("text-grey-7")

    @in_session
    def _tab_changed(self) -> None:
        if self.panels.value == "dashboard" and self.dashboard_stale and not self.computing:
            background_tasks.create(self._refresh_later(0), name="darkroom-dashboard-refresh")

    async def _refresh_later(self, delay: float = 0.5) -> None:
        await asyncio.sleep(delay)  # a burst of uploads becomes one refresh
        if self.dashboard_stale and not self.computing and self.client.id in Client.instances:
            await self.refresh_dashboard()

    @in_session
    async def refresh_dashboard(self) -> None:
        """Every feature of every image (across all cores, with progress), the key columns in the
        table, duplicate groups below it."""
        if self.computing:
            return
        self.computing = True
        self.dashboard_stale = False
        self.refresh_button.props("loading")
        self._show_progress(0, len(self.cards))
        try:
            columns, rows = await features.feature_table()
            found = await features.find_duplicates()
        except DarkroomError as exc:
            with self.progress_label:
                ui.notify(exc.message, type="negative")
            return
        finally:
            self.computing = False
            self.refresh_button.props(remove="loading")
            self.progress.set_visibility(False)
        self.refresh_button.set_text("Refresh")
        if self.dashboard_stale and self.panels.value == "dashboard":  # images changed while computing
            background_tasks.create(self._refresh_later(), name="darkroom-dashboard-refresh")
        self.dashboard_columns, self.dashboard_rows = columns, rows
        self.table.rows = [self._table_row(row) for row in rows]
        self.table.update()
        self.progress_label.set_text(f"{len(rows)} image{'s' if len(rows) != 1 else ''}, every feature computed")
        self._render_duplicates(found)

    def _table_row(self, row: dict[str, Any]) -> dict[str, Any]:
        out = {column["field"]: row.get(column["field"]) for column in KEY_COLUMNS if "." in column["field"]}
        out["id"] = row["id"]
        out["filename"] = row["filename"]
        out["thumbnail"] = self.thumbnail_url(row["id"])
        out["flags"] = [label for key, label in QUALITY_FLAGS if row.get(f"cleanvision.{key}")]
        return out

    def _show_progress(self, done: int, total: int) -> None:
        if not self.computing:
            return
        self.progress.set_visibility(True)
        self.progress.set_value(done / total if total else 1.0)
        self.progress_label.set_text(f"Computing features: {done} of {total} images")

    def _render_duplicates(self, found: features.DuplicateGroups) -> None:
        self.duplicates.clear()
        with self.duplicates:
            if not found.exact and not found.near:
                ui.label(
                    f"No duplicates: no two images share their pixels or are within {found.threshold} "
                    "pHash bits of each other."
                ).classes("text-grey-7")
            groups = [("Identical pixels", group) for group in found.exact] + [
                (f"Near duplicates (pHash distance ≤ {distance})", group) for group, distance in found.near
            ]
            for title, group in groups:
                with ui.card().classes("w-full").props("flat bordered data-testid=duplicate-group"):
                    ui.label(title).classes("font-medium")
                    with ui.row().classes("gap-3"):
                        for record in group:
                            with ui.column().classes("gap-0 items-center"):
                                thumb = ui.element("img").classes("dr-small-thumb")
                                thumb.props["src"] = self.thumbnail_url(record.id)
                                ui.label(record.filename).classes("text-xs dr-name")

    @in_session
    async def export(self, fmt: str) -> None:
        if not self.cards:
            ui.notify("The workspace is empty: add images first.", type="warning")
            return
        if self.dashboard_stale or not self.dashboard_rows:
            await self.refresh_dashboard()
        stamp = time.strftime("%Y%m%d-%H%M%S")
        if fmt == "csv":
            import csv
            import io

            text = io.StringIO()
            writer = csv.DictWriter(text, fieldnames=self.dashboard_columns, extrasaction="ignore", lineterminator="\n")
            writer.writeheader()
            writer.writerows(self.dashboard_rows)
            ui.download.content(text.getvalue().encode(), f"darkroom-features-{stamp}.csv", "text/csv")
        else:
            body = json.dumps({"columns": self.dashboard_columns, "rows": self.dashboard_rows}, indent=1).encode()
            ui.download.content(body, f"darkroom-features-{stamp}.json", "application/json")

    # -- sharing --
    @in_session
    def show_script_access(self) -> None:
        session_id = self.binding.session_id
        with ui.dialog() as dialog, ui.card().classes("w-full").style("max-width: 760px"):
            ui.label("Use this workspace from a script").classes("text-lg font-bold")
            ui.label(
                "Images a script pushes with this session id appear in this tab at once. The id is a secret: "
                "whoever has it can see and change this workspace."
            ).classes("text-grey-8")
            with ui.row().classes("w-full items-center no-wrap"):
                ui.input("Session id", value=session_id).props(
                    "readonly outlined dense data-testid=session-id"
                ).classes("grow")
                ui.button(icon="content_copy", on_click=lambda: self._copy(session_id, "Session id")).props("flat")
            ui.label("curl").classes("font-medium")
            code_block(
                f'curl -F "files=@photo.jpg" -H "X-Session-Id: {session_id}" {self.base_url}/api/images',
                "bash",
                self._copy,
            )
            ui.label("Python").classes("font-medium")
            code_block(
                "import requests\n\n"
                f'SESSION = "{session_id}"\n'
                'with open("photo.jpg", "rb") as f:\n'
                "    r = requests.post(\n"
                f'        "{self.base_url}/api/images",\n'
                '        headers={"X-Session-Id": SESSION},\n'
                '        files=[("files", ("photo.jpg", f))],\n'
                "    )\n"
                "print(r.status_code, r.json())",
                "python",
                self._copy,
            )
            ui.link("All endpoints: API documentation", "/docs", new_tab=True)
            with ui.row().classes("w-full justify-end"):
                ui.button("Close", on_click=dialog.close).props("flat")
        _open_once(dialog)

    def _copy(self, text: str, what: str = "Snippet") -> None:
        ui.clipboard.write(text)
        ui.notify(f"{what} copied")

    @in_session
    def show_invites(self) -> None:
        with ui.dialog() as dialog, ui.card().classes("w-full").style("max-width: 680px"):
            ui.label("Invite another tab or browser").classes("text-lg font-bold")
            minutes = self.settings.invite_ttl_seconds / 60
            ui.label(
                f"Whoever opens an invite link joins this workspace and sees and changes the same images, live. "
                f"Links work for {minutes:g} minutes and can be revoked; joined tabs keep the workspace."
            ).classes("text-grey-8")
            self.invite_list = ui.column().classes("w-full gap-1")
            with ui.row().classes("w-full justify-between"):
                ui.button("Create invite link", icon="link", on_click=self._create_invite)
                ui.button("Close", on_click=dialog.close).props("flat")
        self._render_invites()
        _open_once(dialog)

    def invite_url(self, token: str) -> str:
        return f"{self.base_url}/?join={token}"

    @in_session
    def _create_invite(self) -> None:
        try:
            invite = invites.create(self.binding.session_id, self.settings.invite_ttl_seconds)
        except DarkroomError as exc:
            ui.notify(exc.message, type="warning")
            return
        self._copy(self.invite_url(invite.token), "Invite link")
        self._render_invites()

    @in_session
    def _revoke(self, token: str) -> None:
        invites.revoke(self.binding.session_id, token)
        ui.notify("Invite link revoked")
        self._render_invites()

    def _render_invites(self) -> None:
        self.invite_list.clear()
        active = invites.active(self.binding.session_id)
        with self.invite_list:
            if not active:
                ui.label("No active invite links.").classes("text-grey-7")
            for invite in active:
                with ui.row().classes("w-full items-center no-wrap"):
                    ui.input(value=self.invite_url(invite.token)).props(
                        "readonly outlined dense data-testid=invite-link"
                    ).classes("grow")
                    ui.label(f"{invite.seconds_left() / 60:.0f} min left").classes("text-xs text-grey-7")
                    ui.button(
                        icon="content_copy",
                        on_click=lambda t=invite.token: self._copy(self.invite_url(t), "Invite link"),
                    ).props("flat dense")
                    ui.button("Revoke", on_click=lambda t=invite.token: self._revoke(t)).props(
                        "flat dense color=negative"
                    )


@ui.page("/", title="Darkroom")
async def index(client: Client, join: str | None = None) -> None:
    """The workspace of this tab (``?join=<invite>`` joins a shared one)."""
    with ui.column().classes("w-full items-center q-pa-xl") as loading:
        ui.spinner(size="lg")
    await client.connected(timeout=30)
    invited = invites.resolve(join) if join else None
    remembered = None
    persistent = data_service.settings().storage != "memory"  # in memory mode a restart forgets all anyway
    if persistent and SESSION_KEY not in app.storage.tab and join is None:
        with contextlib.suppress(Exception):  # an old browser or a slow socket: start fresh
            remembered = await ui.run_javascript(f"sessionStorage.getItem('{SESSION_KEY}')", timeout=3)
    session_id, reason = choose_session(app.storage.tab, client.tab_id or "", invited, remembered)
    if persistent:
        ui.run_javascript(f"sessionStorage.setItem('{SESSION_KEY}', '{session_id}')")
    loading.delete()
    base_url = str(client.request.base_url) if client.request else "http://127.0.0.1:8080/"
    workspace = Workspace(client, bind(client, session_id), base_url)
    workspace.build()
    workspace.start()
    client.on_delete(workspace.close)
    if join is not None:
        ui.run_javascript("history.replaceState(null, '', location.pathname)")  # the token leaves the URL
        if invited is None:
            ui.notify(
                "This invite link has expired or was revoked. You are in your own private workspace.",
                type="warning",
                timeout=8000,
            )
        else:
            ui.notify("You joined a shared workspace: every joined tab sees the same images.", type="positive")
