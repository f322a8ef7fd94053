"""Collaboration on the page: who is here (the header), shared annotations on every gallery card and
in the image detail, the gallery's filters (tag, rating, quality flag) and the dashboard's colouring
by tag. State lives in ``core`` (``core.annotations``, ``core.presence``); this module shows it,
forwards edits, and applies the workspace's ``ANNOTATION_CHANGED`` / ``PRESENCE_CHANGED`` events.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable
from typing import Any

from nicegui import Client, app, background_tasks, ui

from core import data_service, workspace
from core.annotations import MAX_TAG_CHARS, AnnotationPatch, RateLimited, StaleVersion, parse_patch
from core.errors import DarkroomError
from core.events import ANNOTATION_CHANGED, IMAGE_REMOVED, PRESENCE_CHANGED, SESSION_CLEARED, Event
from core.features import service as features
from core.presence import MAX_NAME_CHARS, Member, presence
from ui.gallery import Gallery
from ui.session import Binding, tab_scope
from ui.widgets import QUALITY_FLAGS

log = logging.getLogger(__name__)

EVENTS = (ANNOTATION_CHANGED, PRESENCE_CHANGED)
NAME_KEY = "darkroom_member_name"  # a name the tab chose, kept across reloads in tab storage
MAX_SHOWN_MEMBERS = 8  # in the header; the rest are counted
MAX_CHART_TAGS = 10  # the dashboard colours the most used tags; the others are "other tags"
REDRAW_DELAY = 0.25  # seconds: a burst of annotation changes reorders the tag options and recolours once
TAG_COLOURS = ("#1e88e5", "#e53935", "#43a047", "#fb8c00", "#8e24aa", "#00897b", "#d81b60", "#3949ab", "#6d4c41")
UNTAGGED_COLOUR = "#b0bec5"
ANY = "any"
UNRATED = "unrated"
NO_FLAGS = "no quality flags"
RATING_FILTERS = {ANY: "Any rating", UNRATED: "Unrated", **{str(n): f"{'★' * n} or more" for n in range(1, 6)}}
UNDECIDED = "undecided"
PICK_FILTERS = {ANY: "Any verdict", "picked": "Picked", "rejected": "Rejected", UNDECIDED: "No verdict"}
COLOUR_BY_FLAGS = "quality flags"
COLOUR_BY_TAG = "tag"


def tag_colour(tag: str) -> str:
    """The same colour for a tag on every card, in the detail and on the dashboard."""
    return TAG_COLOURS[hashlib.blake2b(tag.encode(), digest_size=2).digest()[0] % len(TAG_COLOURS)]


def empty_annotations() -> dict[str, Any]:
    return {"tags": [], "rating": None, "pick": None, "note": "", "version": 0, "updated_at": None, "updated_by": None}


class DetailEditor:
    """The annotations of the image open in the detail: tags, stars, the note, who changed them."""

    def __init__(self, collab: Collab, image_id: str) -> None:
        self.collab = collab
        self.image_id = image_id
        self.showing: int | None = None
        self.note_shown = ""
        with ui.column().classes("w-full gap-1 q-mt-sm").props("data-testid=annotation-editor") as self.box:
            with ui.row().classes("items-center gap-2"):
                ui.label("Rating").classes("text-grey-7 w-24")
                self.rating = ui.rating(max=5, size="1.5em", color="amber", on_change=self._rated)
                self.rating.props("data-testid=detail-rating")
            with ui.row().classes("items-center gap-2 w-full"):
                ui.label("Tags").classes("text-grey-7 w-24")
                self.chips = ui.row().classes("gap-1")
                self.tag_input = ui.input(placeholder="add a tag", autocomplete=collab.tag_names()).props(
                    f"dense outlined maxlength={MAX_TAG_CHARS} data-testid=detail-tag-input"
                )
                self.tag_input.on("keydown.enter", self._add_tag)
            with ui.row().classes("items-start gap-2 w-full no-wrap"):
                ui.label("Note").classes("text-grey-7 w-24")
                self.note = ui.textarea(placeholder="a note everyone in the workspace sees").props(
                    "dense outlined autogrow data-testid=detail-note"
                )
                self.note.classes("grow")
                ui.button("Save note", on_click=self._save_note).props("flat dense data-testid=save-note")
            self.by = ui.label().classes("text-xs text-grey-7").props("data-testid=detail-updated-by")

    def show(self, annotations: dict[str, Any]) -> None:
        self.box.props(f"data-annotation-version={annotations['version']}")
        self.showing = annotations["rating"] or 0
        self.rating.value = self.showing
        self.chips.clear()
        with self.chips:
            for tag in annotations["tags"]:
                self.collab.chip(self.image_id, tag)
        if self.note.value in ("", self.note_shown, None):  # keep what the user is typing
            self.note.value = annotations["note"]
        self.note_shown = annotations["note"]
        who, when = annotations["updated_by"], annotations["updated_at"]
        self.by.set_text(f"Last changed by {who} at {when[11:19]} UTC" if who and when else "Not annotated yet")
        self.tag_input.set_autocomplete(self.collab.tag_names())

    def _rated(self, event: Any) -> None:
        stars = int(event.value or 0)
        if stars == self.showing:
            return
        self.showing = stars
        background_tasks.create(self.collab.rate(self.image_id, stars), name="darkroom-rate")

    async def _add_tag(self) -> None:
        text = (self.tag_input.value or "").strip()
        if text:
            self.tag_input.value = ""
            await self.collab.edit(self.image_id, {"tags_add": [text]})

    async def _save_note(self) -> None:
        version = self.collab.annotations_of(self.image_id)["version"]
        await self.collab.edit(self.image_id, {"note": self.note.value or "", "expected_version": version})


class Collab:
    """Presence and annotations for one page (one NiceGUI client)."""

    def __init__(self, client: Client, binding: Binding, gallery: Gallery) -> None:
        self.client = client
        self.binding = binding
        self.gallery = gallery
        gallery.annotations_of = self.annotations_of
        gallery.passes = self.matches
        gallery.colour_of = tag_colour
        gallery.on_added = self._card_added
        gallery.on_rate = self.rate
        gallery.on_tag = self.ask_tag
        gallery.on_untag = self.remove_tag
        self.member: Member | None = None
        self.members: list[dict[str, Any]] = []
        self.annotations: dict[str, dict[str, Any]] = {}
        self.tag_counts: dict[str, int] = {}  # images per tag, kept as annotations come and go
        self.tag_options: set[str] = set()  # the tag filter's options as last set
        self.passing: set[str] = set()  # ids of the cards the filters show
        self.editor: DetailEditor | None = None
        self.flags: dict[str, list[str]] = {}
        self.flags_task: asyncio.Task[None] | None = None
        self.redraw_dashboard: Callable[[], None] | None = None
        self.redraw_pending = False
        self.tag_target: str | None = None

    # -- presence --
    def build_presence(self) -> None:
        """The header's row of members (call inside the header)."""
        self.presence_row = ui.row().classes("items-center gap-1 no-wrap").props("data-testid=presence")

    def start(self) -> None:
        """Join the workspace's presence (the page is connected)."""
        name = app.storage.tab.get(NAME_KEY)
        try:
            self.member = presence.join(self.binding.session_id, "tab", name=name if isinstance(name, str) else None)
        except DarkroomError as exc:
            ui.notify(exc.message, type="warning")
        self._show_members([m.to_public() for m in presence.members(self.binding.session_id)])

    def close(self) -> None:
        """The page is gone: leave the presence at once."""
        if self.member is not None:
            presence.leave(self.binding.session_id, self.member.id)
            self.member = None

    def _show_members(self, members: list[dict[str, Any]]) -> None:
        shown = _without_viewing(self.members)
        self.members = members
        if _without_viewing(members) == shown and self.presence_row.default_slot.children:
            return  # only who looks at which image changed (the culling view shows that): the chips stay
        mine = self.member.id if self.member else None
        ordered = sorted(members, key=lambda m: m["id"] != mine)  # you first
        self.presence_row.clear()
        with self.presence_row:
            for member in ordered[:MAX_SHOWN_MEMBERS]:
                you = member["id"] == mine
                label = member["name"] + (" (you)" if you else "")
                chip = ui.chip(label, icon="terminal" if member["kind"] == "script" else "person", color=None)
                chip.style(f"background: {member['colour']}; color: white").props("dense")
                chip.props("data-testid=presence-member")
                chip.props["data-member-name"] = member["name"]
                if you:
                    chip.props('clickable title="Rename yourself"').on("click", self._ask_name)
                    chip.props("data-you=true")
            if len(ordered) > MAX_SHOWN_MEMBERS:
                ui.label(f"+{len(ordered) - MAX_SHOWN_MEMBERS}").classes("text-white text-sm")

    def _ask_name(self) -> None:
        if self.member is None:
            return
        with ui.dialog() as dialog, ui.card():
            ui.label("Your name in this workspace").classes("text-lg font-bold")
            field = ui.input(value=self.member.name).props(f"autofocus maxlength={MAX_NAME_CHARS} data-testid=rename")

            def save() -> None:
                try:
                    member = presence.rename(self.binding.session_id, self.member.id, field.value)  # type: ignore[union-attr]
                except DarkroomError as exc:
                    ui.notify(exc.message, type="warning")
                    return
                app.storage.tab[NAME_KEY] = member.name
                dialog.close()

            field.on("keydown.enter", save)
            with ui.row().classes("w-full justify-end"):
                ui.button("Cancel", on_click=dialog.close).props("flat")
                ui.button("Save", on_click=save)
        dialog.open()

    # -- events --
    def apply(self, event: Event) -> bool:
        """Show a collaboration event of this workspace (True), or forget what a removal took away
        and let the page go on with the event (False)."""
        if event.kind == PRESENCE_CHANGED:
            self._show_members(event.data["members"])
        elif event.kind == ANNOTATION_CHANGED:
            self.show(event.data["image_id"], event.data["annotations"])
        elif event.kind == IMAGE_REMOVED:
            self.forget(event.data["image_id"])
            return False
        elif event.kind == SESSION_CLEARED:
            self.forget_all()
            return False
        else:
            return False
        return True

    # -- annotations --
    def annotations_of(self, image_id: str) -> dict[str, Any]:
        return self.annotations.get(image_id) or empty_annotations()

    def tag_names(self) -> list[str]:
        """Every tag in the workspace, the most used first: O(tags), never a walk of the images."""
        counts = self.tag_counts
        return sorted(counts, key=lambda tag: (-counts[tag], tag.casefold()))

    def _remember(self, image_id: str, annotations: dict[str, Any] | None) -> bool:
        """Keep ``annotations`` (None: forget them) for ``image_id`` and its tags in the counts.
        True when a tag appeared in the workspace or left it (the tag filter's options change)."""
        changed = False
        old = self.annotations.pop(image_id, None)
        for tag in old["tags"] if old else ():
            left = self.tag_counts[tag] - 1
            if left:
                self.tag_counts[tag] = left
            else:
                del self.tag_counts[tag]
                changed = True
        if annotations is not None:
            self.annotations[image_id] = annotations
            for tag in annotations["tags"]:
                changed = changed or tag not in self.tag_counts
                self.tag_counts[tag] = self.tag_counts.get(tag, 0) + 1
        return changed

    def _card_added(self, image: dict[str, Any]) -> None:
        """A new gallery card: its image's annotations as listed, unless an event brought newer ones."""
        image_id = image["id"]
        if image_id not in self.annotations and image.get("annotations"):
            self._remember(image_id, image["annotations"])
        if any(tag not in self.tag_options for tag in self.annotations_of(image_id)["tags"]):
            self.refresh_tag_options()  # a page that opens on an annotated workspace can filter at once
        self._track([image_id])

    def forget(self, image_id: str) -> None:
        self._remember(image_id, None)
        self.flags.pop(image_id, None)
        self.passing.discard(image_id)

    def forget_all(self) -> None:
        self.annotations.clear()
        self.tag_counts.clear()
        self.flags.clear()
        self.passing.clear()

    def extend_detail(self, image_id: str) -> None:
        """The annotation editor in the detail of ``image_id`` (inside the detail card)."""
        self.editor = DetailEditor(self, image_id)
        self.editor.show(self.annotations_of(image_id))

    def show(self, image_id: str, annotations: dict[str, Any]) -> None:
        known = self.annotations.get(image_id)
        if known is not None and known["version"] > annotations["version"]:
            return  # an older answer arriving after a newer event
        if self._remember(image_id, annotations):  # a new tag can be filtered on at once
            self.refresh_tag_options()
        if self.editor is not None and self.editor.image_id == image_id and not self.editor.box.is_deleted:
            self.editor.show(annotations)
        self.apply_filters([image_id])
        self._redraw_soon()

    def _redraw_soon(self) -> None:
        """Once for a burst of annotation changes: order the tag filter's options by their new
        counts (each refresh sends every tag to the browser) and recolour the charts by tag (each
        redraw walks every row)."""
        if self.redraw_pending:
            return
        self.redraw_pending = True

        async def redraw() -> None:
            await asyncio.sleep(REDRAW_DELAY)
            self.redraw_pending = False
            if self.client.id not in Client.instances:
                return
            self.refresh_tag_options()
            if self.redraw_dashboard is not None and self.colour_by.value == COLOUR_BY_TAG:
                self.redraw_dashboard()

        background_tasks.create(redraw(), name="darkroom-recolour")

    def chip(self, image_id: str, tag: str, dense: bool = False) -> ui.chip:
        chip = ui.chip(tag, removable=True, color=None).style(f"background: {tag_colour(tag)}; color: white")
        chip.props["data-tag"] = tag
        if dense:
            chip.props("dense")
        chip.on("remove", lambda: self.remove_tag(image_id, tag))
        return chip

    def build_tag_dialog(self) -> None:
        """One dialog per page to add a tag to a card's image."""
        with ui.dialog() as self.tag_dialog, ui.card():
            ui.label("Add a tag").classes("text-lg font-bold")
            self.tag_field = ui.input(placeholder="keep, blurry, …", autocomplete=[]).props(
                f"autofocus maxlength={MAX_TAG_CHARS} data-testid=tag-dialog-input"
            )
            self.tag_field.on("keydown.enter", self._add_asked_tag)
            with ui.row().classes("w-full justify-end"):
                ui.button("Cancel", on_click=self.tag_dialog.close).props("flat")
                ui.button("Add", on_click=self._add_asked_tag)

    def ask_tag(self, image_id: str) -> None:
        self.tag_target = image_id
        self.tag_field.value = ""
        self.tag_field.set_autocomplete(self.tag_names())
        self.tag_dialog.open()

    async def _add_asked_tag(self) -> None:
        text = (self.tag_field.value or "").strip()
        target = self.tag_target
        self.tag_dialog.close()
        if text and target:
            await self.edit(target, {"tags_add": [text]})

    async def remove_tag(self, image_id: str, tag: str) -> None:
        await self.edit(image_id, {"tags_remove": [tag], "expected_version": self.annotations_of(image_id)["version"]})

    async def rate(self, image_id: str, stars: int) -> None:
        version = self.annotations_of(image_id)["version"]
        await self.edit(image_id, {"rating": stars or None, "expected_version": version})

    async def edit(self, image_id: str, body: dict[str, Any]) -> None:
        """Send one edit as this tab; a refusal is shown, and a stale edit shows the current value."""
        if self.member is None:
            ui.notify("This page is not in the workspace any more; reload it.", type="warning")
            return
        member = self.member
        try:
            patch = parse_patch(body)
            result = await _patch_in_session(self.client, image_id, patch, member.name, member.id)
        except StaleVersion as exc:
            current = exc.current.to_public()
            self.show(image_id, current)
            ui.notify(f"{current['updated_by']} changed this image meanwhile; it shows their version now.")
            return
        except RateLimited as exc:
            self.show(image_id, self.annotations_of(image_id))
            ui.notify(exc.message, type="warning")
            return
        except DarkroomError as exc:
            self.show(image_id, self.annotations_of(image_id))
            ui.notify(exc.message, type="warning")
            return
        self.show(image_id, result.to_public())

    # -- gallery filters --
    def build_filters(self) -> None:
        """The filter bar above the gallery."""
        with ui.row().classes("w-full items-center gap-2").props("data-testid=gallery-filters"):
            ui.icon("filter_alt").classes("text-grey-7")
            self.tag_filter = ui.select(
                [], multiple=True, label="Tags", clearable=True, on_change=self._filters_changed
            )
            self.tag_filter.classes("min-w-[200px]").props("dense outlined use-chips data-testid=filter-tags")
            self.tag_filter.mark("filter-tags")
            self.rating_filter = ui.select(RATING_FILTERS, value=ANY, label="Rating", on_change=self._filters_changed)
            self.rating_filter.classes("min-w-[160px]").props("dense outlined data-testid=filter-rating")
            self.rating_filter.mark("filter-rating")
            self.pick_filter = ui.select(PICK_FILTERS, value=ANY, label="Verdict", on_change=self._filters_changed)
            self.pick_filter.classes("min-w-[160px]").props("dense outlined data-testid=filter-pick")
            self.pick_filter.mark("filter-pick")
            flags = {ANY: "Any quality", NO_FLAGS: "No quality flags", **{label: label for _, label in QUALITY_FLAGS}}
            self.flag_filter = ui.select(flags, value=ANY, label="Quality", on_change=self._filters_changed)
            self.flag_filter.classes("min-w-[180px]").props("dense outlined data-testid=filter-quality")
            self.flag_filter.mark("filter-quality")
            self.filter_note = ui.label().classes("text-grey-7 text-sm").props("data-testid=filter-note")
        self.build_tag_dialog()

    def refresh_tag_options(self) -> None:
        names = self.tag_names()
        chosen = [tag for tag in (self.tag_filter.value or []) if tag in self.tag_counts]
        self.tag_filter.set_options(names, value=chosen)
        self.tag_options = set(names)

    def _filters_changed(self) -> None:
        if self.flag_filter.value != ANY:
            self.ensure_flags()
        self.apply_filters()

    def filtering(self) -> bool:
        return (
            bool(self.tag_filter.value)
            or self.rating_filter.value != ANY
            or self.pick_filter.value != ANY
            or self.flag_filter.value != ANY
        )

    def matches(self, image_id: str) -> bool:
        """Whether the image passes the gallery's filters (every chosen tag, the rating, the verdict,
        the flag)."""
        value = self.annotations_of(image_id)
        if any(tag not in value["tags"] for tag in self.tag_filter.value or []):
            return False
        wanted = self.rating_filter.value
        if wanted == UNRATED and value["rating"] is not None:
            return False
        if wanted not in (ANY, UNRATED) and (value["rating"] or 0) < int(wanted):
            return False
        verdict = self.pick_filter.value
        if verdict != ANY and value.get("pick") != (None if verdict == UNDECIDED else verdict):
            return False
        flag = self.flag_filter.value
        if flag != ANY:
            flags = self.flags.get(image_id)
            if flags is None:
                return True  # not computed yet: shown until it is
            return not flags if flag == NO_FLAGS else flag in flags
        return True

    def apply_filters(self, image_ids: list[str] | None = None) -> None:
        """Show or hide the cards of ``image_ids`` (None: every card, when a filter changed). An
        event about one image costs O(1), whatever the workspace's size."""
        if image_ids is None:
            self.passing.clear()
            image_ids = self.gallery.ids()
        self._track(image_ids)
        for image_id in image_ids:
            self.gallery.refresh(image_id)
        if self.flag_filter.value != ANY and any(image_id not in self.flags for image_id in image_ids):
            self.ensure_flags()

    def _track(self, image_ids: list[str]) -> None:
        """Count the cards of ``image_ids`` the filters show, for the note above the gallery."""
        records = self.gallery.records
        for image_id in image_ids:
            if image_id in records and self.matches(image_id):
                self.passing.add(image_id)
            else:
                self.passing.discard(image_id)
        self._show_filter_note(len(records))

    def _show_filter_note(self, cards: int) -> None:
        self.filter_note.set_text(f"showing {len(self.passing)} of {cards}" if self.filtering() else "")

    def ensure_flags(self) -> None:
        """Compute CleanVision's quality flags of the images that lack them (once, in the background)."""
        if self.flags_task is not None and not self.flags_task.done():
            return
        self.filter_note.set_text("computing quality flags…")
        self.flags_task = background_tasks.create(self._compute_flags(), name="darkroom-quality-flags")

    async def _compute_flags(self) -> None:
        try:
            rows = await _flag_rows(self.client)
        except DarkroomError as exc:
            ui.notify(exc.message, type="warning")
            return
        for row in rows:
            self.flags[row["id"]] = [label for key, label in QUALITY_FLAGS if row.get(f"cleanvision.{key}")]
        self.apply_filters()

    # -- dashboard --
    def build_colouring(self, redraw: Callable[[], None]) -> None:
        """The dashboard's "colour points by" choice (call inside its controls row)."""
        self.redraw_dashboard = redraw
        self.colour_by = ui.select(
            {COLOUR_BY_FLAGS: "Colour by quality flags", COLOUR_BY_TAG: "Colour by tag"},
            value=COLOUR_BY_FLAGS,
            on_change=redraw,
        ).props("dense outlined data-testid=colour-by")
        self.colour_by.mark("colour-by")

    def recolour(self, options: dict[str, Any]) -> None:
        """Regroup the scatter's points into one series per tag when colouring by tag."""
        if getattr(self, "colour_by", None) is None or self.colour_by.value != COLOUR_BY_TAG:
            return
        points = [point for series in options.get("series", []) for point in series.get("data", [])]
        order = self.tag_names()[:MAX_CHART_TAGS]
        groups: dict[str, list[dict[str, Any]]] = {tag: [] for tag in order}
        untagged: list[dict[str, Any]] = []
        other: list[dict[str, Any]] = []
        for point in points:
            tags = self.annotations_of(point["id"])["tags"]
            first = next((tag for tag in order if tag in tags), None)
            (groups[first] if first else other if tags else untagged).append(point)
        series = [
            {"name": tag, "type": "scatter", "data": data, "symbolSize": 10, "itemStyle": {"color": tag_colour(tag)}}
            for tag, data in groups.items()
            if data
        ]
        if other:
            series.append({"name": "other tags", "type": "scatter", "data": other, "symbolSize": 9,
                           "itemStyle": {"color": "#546e7a"}})  # fmt: skip
        series.append({"name": "untagged", "type": "scatter", "data": untagged, "symbolSize": 8,
                       "itemStyle": {"color": UNTAGGED_COLOUR}})  # fmt: skip
        options["series"] = series


def _without_viewing(members: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in member.items() if k != "viewing"} for member in members]


async def _patch_in_session(client: Client, image_id: str, patch: AnnotationPatch, author: str, member: str) -> Any:
    """Apply an edit in the client's session: inline in memory mode, else in a worker thread
    (``run_store`` decides). Runs in its own task, so the session does not leak into another's."""
    with tab_scope(client):
        return await data_service.run_store(workspace.patch_annotations, image_id, patch, author, member)


async def _flag_rows(client: Client) -> list[dict[str, Any]]:
    with tab_scope(client):
        _, rows = await features.feature_table("cleanvision")
    return rows
