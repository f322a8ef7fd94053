"""The workspace page: its lifecycle and the session's events; the panels live in their own modules.

One ``Workspace`` per page load (NiceGUI client). It binds to its tab's session (``ui.session``),
follows that session's events so that images added or removed anywhere (the API, another joined
tab) appear and disappear live, and keeps the session alive while the tab is open. What it shows
is laid out by the panels: ``ui.gallery``, ``ui.detail``, ``ui.dashboard``, ``ui.sharing``, the
culling view (``ui.culling``: the *Cull* button or the C key) and the drop zone (``ui.dropzone``);
the styles are in ``workspace.css``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path

from nicegui import Client, app, background_tasks, ui

from core import data_service, uploads
from core import workspace as core_workspace
from core.errors import DarkroomError
from core.events import IMAGE_ADDED, IMAGE_REMOVED, PROGRESS, SESSION_CLEARED, Event, bus
from core.invites import invites
from core.units import format_bytes
from ui.bursts import BurstKeeper
from ui.collab import Collab
from ui.culling import Culling
from ui.dashboard import Dashboard
from ui.detail import Detail
from ui.dropzone import DropZone, HeldBack
from ui.gallery import Gallery
from ui.routes import (
    ARCHIVE_PATH,
    ORIGINAL_PATH,
    PREVIEW_PATH,
    THUMBNAIL_PATH,
    UPLOAD_PATH,
    WS_UPLOAD_PATH,
    upload_listeners,
)
from ui.session import SESSION_KEY, Binding, bind, choose_session, in_session, run_in_session, unbind
from ui.sharing import Sharing, open_once
from ui.throttle import Throttle

log = logging.getLogger(__name__)
_MAX_MESSAGES = 50  # upload messages kept on the page
COUNTS_SECONDS = 0.1  # the counts (images, bytes held, the tab's label) are redrawn at most this often
# Why a workspace ended while its page was open (the SESSION_CLEARED event's reason), in the page's words.
SESSION_END_NOTICES = {
    "expired": "This workspace expired after being idle; its images were deleted.",
    "evicted": "The server was full and this workspace, the oldest of its address, gave way; its images were deleted.",
}
CSS_FILE = Path(__file__).with_name("workspace.css")


class Workspace:
    """What one open page shows of its session, kept up to date from the session's events."""

    def __init__(self, client: Client, binding: Binding, base_url: str) -> None:
        self.client = client
        self.binding = binding
        self.settings = data_service.settings()
        self._unsubscribe: Callable[[], None] | None = None
        self._consumer: asyncio.Task[None] | None = None
        # The counts (a store hop and three element updates) once per window, not once per file of
        # a drop of hundreds: that was a tenth of the server core's time per file.
        self.closed = False
        self._counts = Throttle(COUNTS_SECONDS, self._counted, "darkroom-counts")
        self.gallery = Gallery(self.thumbnail_url, self.open_detail)
        self.detail = Detail(
            self.preview_url, self.original_url, self.gallery.ids, self.gallery.records.get, self.thumbnail_url
        )
        self.dashboard = Dashboard(client, self.thumbnail_url, lambda: self.gallery.count, self.open_detail)
        self.sharing = Sharing(binding, base_url, self.settings)
        self.collab = Collab(client, binding, self.gallery)
        self.culling = Culling(client, binding, self.gallery, self.collab, self.preview_url)
        self.detail.extend = self.collab.extend_detail
        self.dashboard.extend_controls = lambda: self.collab.build_colouring(self.dashboard.draw_charts)
        self.dashboard.recolour = self.collab.recolour

    # -- URLs of this page's resources (a token, never the session id) --
    def thumbnail_url(self, image_id: str) -> str:
        return THUMBNAIL_PATH.format(token=self.binding.token, image_id=image_id)

    def preview_url(self, image_id: str) -> str:
        return PREVIEW_PATH.format(token=self.binding.token, image_id=image_id)

    def original_url(self, image_id: str) -> str:
        return ORIGINAL_PATH.format(token=self.binding.token, image_id=image_id)

    async def open_detail(self, image_id: str) -> None:
        await self.detail.open(image_id)

    # -- lifecycle --
    async def start(self) -> None:
        """Subscribe first, then list: an image added in between is not missed (cards dedupe). The
        listing, a loop over the whole workspace, runs on a store thread, not the event loop."""
        queue, self._unsubscribe = bus.subscribe_queue(self.binding.session_id)
        self._consumer = background_tasks.create(self._consume(queue), name="darkroom-workspace-events")
        upload_listeners[self.client.id] = self.show_upload_outcome
        self.collab.start()
        listed = await data_service.in_store_thread(
            run_in_session, self.client, core_workspace.list_records_with_annotations
        )
        for image in listed:
            self.gallery.add(image)
        await self._keep_alive(notify=True)
        await self._update_counts()
        keep_alive = max(0.2, min(60.0, self.settings.session_idle_seconds / 3))
        ui.timer(keep_alive, self._keep_alive)

    async def _keep_alive(self, notify: bool = False) -> None:
        """Keep the workspace from expiring. A server at its share of workspaces (503) is told once
        at page load; uploads then say the same, and the timer tries again. A store that does I/O
        is touched from a store thread, never the event loop."""
        try:
            await data_service.run_store(run_in_session, self.client, core_workspace.touch_session)
        except DarkroomError as exc:
            if notify:
                ui.notify(exc.message, type="warning", timeout=10000)

    def close(self) -> None:
        """The page is gone: stop following events and free its tokens. The session itself stays
        until it has been idle for the configured time (another tab or a script may use it)."""
        self.closed = True  # a redraw already on its way does nothing
        self.collab.close()
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
                    self.culling.apply(event)  # after the panels: it reads the gallery's records
                except Exception:  # one bad update must not stop the live view
                    log.exception("could not apply a %s event to the page", event.kind)
            if changed:
                self._counts.soon()

    async def _counted(self) -> None:
        if not self.closed:
            with contextlib.suppress(DarkroomError, LookupError):  # the workspace ended or the page closed meanwhile
                await self._update_counts()

    def _apply(self, event: Event) -> bool:
        """Show one event; True when the workspace's content changed."""
        if self.collab.apply(event):
            return False
        if event.kind == IMAGE_ADDED:
            self.gallery.add(event.data["image"])
        elif event.kind == IMAGE_REMOVED:
            image_id = event.data["image_id"]
            self.gallery.remove(image_id)
            self.detail.forget(image_id)
            self.dashboard.image_removed(image_id)
        elif event.kind == SESSION_CLEARED:
            self.gallery.clear()
            self.detail.close()
            self.dashboard.rows = []
            notice = SESSION_END_NOTICES.get(str(event.data.get("reason")))
            if notice is not None:
                with self.gallery.grid:
                    ui.notify(notice, type="warning")
        elif event.kind == PROGRESS:
            self.dashboard.show_progress(event.data.get("done", 0), event.data.get("total", 0))
            return False
        return True

    # -- page --
    def build(self) -> None:
        ui.add_css(CSS_FILE.read_text(encoding="utf-8"))
        with ui.header().classes("items-center bg-blue-grey-9 q-px-md"):
            ui.icon("photo_camera").classes("text-2xl")
            ui.label("Darkroom").classes("text-xl font-bold")
            ui.label("private image workspace").classes("text-blue-grey-2 max-sm:hidden")
            ui.space()
            self.collab.build_presence()
            ui.button("Cull", icon="view_carousel", on_click=self.culling.open).props(
                'flat dense no-caps color=white data-testid=open-culling title="Review one image at a time (C)"'
            )
            self.usage = ui.label().classes("text-blue-grey-1 text-sm").props("data-testid=usage")
            archive = ARCHIVE_PATH.format(token=self.binding.token)
            with ui.element("a").props(f'href="{archive}" download data-testid=download-all'):
                ui.button("Download all", icon="archive").props("flat dense no-caps color=white")
            ui.button("Script access", icon="terminal", on_click=self.sharing.show_script_access).props(
                "flat dense no-caps color=white"
            )
            ui.button("Invite", icon="group_add", on_click=self.sharing.show_invites).props(
                "flat dense no-caps color=white"
            )
            ui.button("Clear workspace", icon="delete_sweep", on_click=self.confirm_clear).props(
                "flat dense no-caps color=white"
            )
        with ui.column().classes("w-full max-w-screen-xl mx-auto q-pa-md gap-3"):
            self._storage_notice()
            self.uploader = DropZone(
                UPLOAD_PATH.format(token=self.binding.token),
                ws_url=WS_UPLOAD_PATH.format(token=self.binding.token),
                label="Drop photos, folders or ZIP archives here, click to pick them, or paste",
                max_image_bytes=self.settings.max_file_bytes,
                max_archive_bytes=self.settings.zip_max_archive_bytes,
                max_files=self.settings.max_files_per_request,
            ).classes("w-full")
            self.uploader.on_rejected(self._held_back)
            self.uploader.on_notice(lambda text: ui.notify(text, type="info"))
            self.uploader.on_stopped(self._upload_stopped)
            self.messages = ui.column().classes("w-full gap-1")
            with ui.tabs().classes("w-full").props("align=left") as tabs:
                self.gallery_tab = ui.tab("gallery", label="Gallery", icon="photo_library")
                ui.tab("dashboard", label="Dashboard", icon="insights")
            self.panels = ui.tab_panels(tabs, value="gallery", on_change=self._tab_changed).classes("w-full")
            with self.panels:
                with ui.tab_panel("gallery").classes("q-pa-none"):
                    self.collab.build_filters()
                    self.gallery.build()
                with ui.tab_panel("dashboard").classes("q-pa-none"):
                    self.dashboard.build()
        self.detail.build()
        self.culling.build()
        self.culling.blocked = lambda: self.detail.is_open  # C is the view's, not the detail's
        self.bursts = BurstKeeper(self.client, self.collab, self.culling)

    def _storage_notice(self) -> None:
        minutes = self.settings.session_idle_seconds / 60
        if self.settings.storage == "memory":
            icon, text = (
                "memory",
                "Images live only in this server's memory: they vanish when the server restarts, when "
                f"you clear the workspace, or {minutes:g} minutes after the last tab of it closes. "
                "Nothing is written to disk.",
            )
        elif self.settings.storage == "redis":
            icon, text = (
                "memory",
                "Images live only in the memory of this service's Redis, shared by its servers: they vanish when "
                f"you clear the workspace or {minutes:g} minutes after the last tab of it closes. "
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

    async def _update_counts(self) -> None:
        count = self.gallery.count
        held = await data_service.run_store(run_in_session, self.client, core_workspace.session_bytes_held)
        self.usage.set_text(
            f"{count} image{'s' if count != 1 else ''} · {format_bytes(held)} of "
            f"{format_bytes(self.settings.session_quota_bytes)}"
        )
        self.gallery.show_empty_hint()
        self.gallery_tab.props["label"] = f"Gallery ({count})"
        self.dashboard.images_changed()

    @in_session
    def _tab_changed(self) -> None:
        self.dashboard.set_visible(self.panels.value == "dashboard")

    @in_session
    def confirm_clear(self) -> None:
        with ui.dialog() as dialog, ui.card():
            count = self.gallery.count
            ui.label("Clear this workspace?").classes("text-lg font-bold")
            ui.label(
                f"All {count} image{'s' if count != 1 else ''} and their features are deleted for every tab "
                "joined to this workspace. This cannot be undone."
            )
            with ui.row().classes("w-full justify-end"):
                ui.button("Cancel", on_click=dialog.close).props("flat")
                ui.button("Clear", color="negative", on_click=lambda: self._clear(dialog)).mark("confirm-clear")
        open_once(dialog)

    @in_session
    async def _clear(self, dialog: ui.dialog) -> None:
        dialog.close()
        count = await asyncio.to_thread(core_workspace.clear_session)  # disk and sql modes delete files
        ui.notify(f"Workspace cleared ({count} image{'s' if count != 1 else ''} deleted).")

    # -- uploads --
    @in_session
    def _held_back(self, held: HeldBack) -> None:
        names = ", ".join(f"{name} ({format_bytes(size)})" for name, size in held.files)
        more = f" and {held.count - len(held.files)} more" if held.count > len(held.files) else ""
        ui.notify(
            f"Not sent, too large: {names}{more}. Photos can be at most {format_bytes(self.settings.max_file_bytes)}, "
            f"ZIP archives at most {format_bytes(self.settings.zip_max_archive_bytes)}.",
            type="negative",
            multi_line=True,
        )

    def _upload_stopped(self, detail: str) -> None:
        self._show_lines([("negative", f"Upload stopped: {detail}")])

    def show_upload_outcome(self, report: uploads.UploadReport | None, error: DarkroomError | None) -> None:
        """Called by the upload routes: what was refused, skipped or already there, in plain words."""
        lines: list[tuple[str, str]] = []
        if error is not None:
            lines.append(("negative", f"Upload stopped: {error.message}"))
        if report is not None:
            lines += [("negative", f"{r.filename}: {r.detail}") for r in report.rejected]
            lines += [
                ("info", f"{d.filename}: already in the workspace as {d.existing.filename}") for d in report.duplicates
            ]
            lines += [("grey", f"{s.filename}: skipped ({s.reason})") for s in report.skipped]
            if report.restore is not None:  # a Darkroom archive's annotations.json
                lines.append(("info" if report.restore.restored else "grey", report.restore.detail))
        self._show_lines(lines)

    def _show_lines(self, lines: list[tuple[str, str]]) -> None:
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


@ui.page("/", title="Darkroom")
async def index(client: Client, join: str | None = None) -> None:
    """The workspace of this tab (``?join=<invite>`` joins a shared one)."""
    with ui.column().classes("w-full items-center q-pa-xl") as loading:
        ui.spinner(size="lg")
    await client.connected(timeout=30)
    invited = invites.resolve(join) if join else None
    remembered = None
    persistent = data_service.current_stores().sessions.outlives_the_process  # else a restart forgets all anyway
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
    await workspace.start()
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
