"""The gallery panel: one card per image of the session, in upload order, live.

The cards are one NiceGUI component (``GalleryGrid``, drawn by ``gallery.js``), fed with a record
per image keyed by its id: what the card shows (name, size, stars, tags, note, who changed it) and
whether the filters hide it. No NiceGUI element per card: a workspace of thousands of images is one
element, and a change is sent as the records that changed, a burst at a time. What a user does on a
card comes back as the component's events: a click on the thumbnail opens the image detail, the bin
deletes the image for every tab of the workspace, stars and tags go to the collaboration panel.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from nicegui import ui
from nicegui.events import GenericEventArguments

from core import formats, workspace
from core.errors import DarkroomError
from core.units import format_bytes
from ui.session import in_session
from ui.sharing import open_once
from ui.throttle import Throttle

FLUSH_SECONDS = 0.05  # changes to the cards are sent at most this often (a drop of many photos is a burst)
RESEND_SECONDS = 1.0  # every card is sent again at most this often, however often the browser says "ready"
MAX_NOTE_CHARS = 300  # of an image's note shown as its card's tooltip
NO_ANNOTATIONS: dict[str, Any] = {
    "tags": [],
    "rating": None,
    "pick": None,
    "note": "",
    "version": 0,
    "updated_by": None,
}
EMPTY_HINT = (
    "Drop photos ({formats}), folders or ZIP archives above, paste a screenshot, or push them from a script: "
    "see Script access."
)


class GalleryGrid(ui.element, component="gallery.js", dependencies=["thumbnails.js"]):
    """The cards, one component: ``put`` and ``drop`` change them, the events say what the user did."""

    def __init__(self, thumbnail_url: str) -> None:
        """``thumbnail_url`` has ``{id}`` where the image id goes."""
        super().__init__()
        self._props["thumbnail"] = thumbnail_url
        self.cards: dict[str, dict[str, Any]] = {}  # image id -> its card, in upload order
        self.ready = False  # the browser's component is mounted and has every card
        self._changed: dict[str, dict[str, Any]] = {}
        self._removed: set[str] = set()
        # At once after a quiet spell (a card added alone shows without delay), else a burst at a time.
        self._flush = Throttle(FLUSH_SECONDS, self._send_changes, "darkroom-gallery-flush")
        # The component says "ready" when it (re)mounts; a browser that says so over and over (it is
        # client data) gets every card at most once a second: thousands of cards are a large message.
        self.resend = Throttle(RESEND_SECONDS, self._send_all, "darkroom-gallery-resend")
        self.on("ready", self.resend.soon)

    def put(self, card: dict[str, Any]) -> None:
        """Add a card, or replace the card of the same id (it keeps its place)."""
        self.cards[card["id"]] = card
        self._changed[card["id"]] = card
        self._removed.discard(card["id"])
        self._flush_soon()

    def drop(self, image_id: str) -> None:
        if self.cards.pop(image_id, None) is not None:
            self._changed.pop(image_id, None)
            self._removed.add(image_id)
            self._flush_soon()

    def drop_all(self) -> None:
        self.cards.clear()
        self._changed.clear()
        self._removed.clear()
        if self.ready:
            self.run_method("reset", [])

    def _send_all(self) -> None:
        """Every card at once; then only changes."""
        if self.is_deleted:
            return
        self.ready = True
        self._changed.clear()
        self._removed.clear()
        self.run_method("reset", list(self.cards.values()))

    def _flush_soon(self) -> None:
        if self.ready:  # not mounted yet: "ready" sends every card
            self._flush.soon()

    def _send_changes(self) -> None:
        if self.is_deleted:
            return
        changed, removed = list(self._changed.values()), sorted(self._removed)
        self._changed.clear()
        self._removed.clear()
        if changed or removed:
            self.run_method("apply", changed, removed)


def card_of(
    image: dict[str, Any], annotations: dict[str, Any], colour_of: Callable[[str], str], hidden: bool
) -> dict[str, Any]:
    """What one card shows of an image's public record and its annotations."""
    return {
        "id": image["id"],
        "name": image["filename"],
        "meta": f"{image['width']}×{image['height']} · {image['format']} · {format_bytes(image['size_bytes'])}",
        "rating": annotations["rating"] or 0,
        "verdict": annotations.get("pick"),  # "picked", "rejected" or None (the culling verdict)
        "tags": [[tag, colour_of(tag)] for tag in annotations["tags"]],
        "note": annotations["note"][:MAX_NOTE_CHARS],
        "by": annotations["updated_by"] or "",
        "version": annotations["version"],
        "hidden": hidden,
    }


class Gallery:
    """The grid of cards and the empty-workspace hint above it."""

    def __init__(self, thumbnail_url: Callable[[str], str], on_open: Callable[[str], Awaitable[None]]) -> None:
        self.thumbnail_url = thumbnail_url
        self.on_open = on_open
        self.records: dict[str, dict[str, Any]] = {}  # image id -> public record, in upload order
        self.selected: list[str] = []  # ids the user selected, in the order shown
        # Set by the collaboration panel (ui.collab): a card's annotations, whether the filters show
        # it, a tag's colour, and what to do with a card's stars and tags.
        self.annotations_of: Callable[[str], dict[str, Any]] = lambda image_id: NO_ANNOTATIONS
        self.passes: Callable[[str], bool] = lambda image_id: True
        self.colour_of: Callable[[str], str] = lambda tag: "#546e7a"
        self.on_rate: Callable[[str, int], Awaitable[None]] | None = None
        self.on_tag: Callable[[str], None] | None = None
        self.on_untag: Callable[[str, str], Awaitable[None]] | None = None
        self.on_added: Callable[[dict[str, Any]], None] | None = None

    def build(self) -> None:
        self.empty = ui.column().classes("w-full items-center q-pa-xl text-grey-7")
        with self.empty:
            ui.icon("add_photo_alternate").classes("text-6xl")
            ui.label("No images yet.").classes("text-lg")
            ui.label(EMPTY_HINT.format(formats=formats.accepted_labels()))
        with ui.row().classes("w-full items-center gap-2 q-mb-sm") as self.selection_bar:
            self.selection_label = ui.label().props("data-testid=selection-count")
            ui.button("Delete selected", icon="delete", on_click=self.confirm_delete_selected).props(
                "flat dense no-caps color=negative data-testid=delete-selected"
            )
            ui.button("Clear selection", on_click=self.clear_selection).props("flat dense no-caps")
        self.selection_bar.set_visibility(False)
        self.grid = GalleryGrid(self.thumbnail_url("{id}")).mark("gallery")
        self.grid.on("open", self._opened, args=[None])
        self.grid.on("delete", self._deleted, args=[None])
        self.grid.on("rate", self._rated, args=[None])
        self.grid.on("tag", self._tagged, args=[None])
        self.grid.on("untag", self._untagged, args=[None])
        self.grid.on("selection", self._selected, args=[None])

    @property
    def count(self) -> int:
        return len(self.records)

    @property
    def cards(self) -> dict[str, dict[str, Any]]:
        """Image id -> what its card shows, in the order shown."""
        return self.grid.cards

    def ids(self) -> list[str]:
        """Image ids in the order the cards are shown."""
        return list(self.records)

    def add(self, image: dict[str, Any]) -> bool:
        """Show one image; False when it is already shown (events and the first listing overlap)."""
        image_id = image["id"]
        if image_id in self.records:
            return False
        self.records[image_id] = image
        if self.on_added is not None:
            self.on_added(image)
        self.refresh(image_id)
        return True

    def refresh(self, image_id: str) -> None:
        """Draw the card of ``image_id`` again (its annotations or the filters changed)."""
        image = self.records.get(image_id)
        if image is not None:
            hidden = not self.passes(image_id)
            self.grid.put(card_of(image, self.annotations_of(image_id), self.colour_of, hidden))

    def refresh_all(self) -> None:
        for image_id in self.records:
            self.refresh(image_id)

    def remove(self, image_id: str) -> bool:
        if self.records.pop(image_id, None) is None:
            return False
        self.grid.drop(image_id)
        if image_id in self.selected:
            self._show_selection([i for i in self.selected if i != image_id])
        return True

    def clear(self) -> None:
        self.records.clear()
        self.grid.drop_all()
        self._show_selection([])

    def show_empty_hint(self) -> None:
        self.empty.set_visibility(not self.records)

    # -- what the user did on the cards (each event's arguments come from the browser: checked) --
    def _known(self, value: Any) -> str | None:
        return value if isinstance(value, str) and value in self.records else None

    async def _opened(self, event: GenericEventArguments) -> None:
        image_id = self._known(event.args)
        if image_id is not None:
            await self.on_open(image_id)

    async def _deleted(self, event: GenericEventArguments) -> None:
        image_id = self._known(event.args)
        if image_id is not None:
            await self.delete(image_id)

    async def _rated(self, event: GenericEventArguments) -> None:
        image_id, stars = _pair(event.args)
        if self._known(image_id) and isinstance(stars, int) and 0 <= stars <= 5 and self.on_rate is not None:
            await self.on_rate(image_id, stars)

    def _tagged(self, event: GenericEventArguments) -> None:
        image_id = self._known(event.args)
        if image_id is not None and self.on_tag is not None:
            self.on_tag(image_id)

    async def _untagged(self, event: GenericEventArguments) -> None:
        image_id, tag = _pair(event.args)
        if self._known(image_id) and isinstance(tag, str) and self.on_untag is not None:
            await self.on_untag(image_id, tag)

    def _selected(self, event: GenericEventArguments) -> None:
        ids = event.args if isinstance(event.args, list) else []
        chosen = {image_id for image_id in ids[: len(self.records)] if self._known(image_id)}
        self._show_selection([image_id for image_id in self.records if image_id in chosen])

    def _show_selection(self, ids: list[str]) -> None:
        self.selected = ids
        self.selection_label.set_text(f"{len(ids)} selected")
        self.selection_bar.set_visibility(bool(ids))

    def clear_selection(self) -> None:
        self._show_selection([])
        self.grid.run_method("select", [])

    @in_session
    async def delete(self, image_id: str) -> None:
        try:
            await asyncio.to_thread(workspace.delete_image, image_id)
        except DarkroomError as exc:
            ui.notify(exc.message, type="warning")

    def confirm_delete_selected(self) -> None:
        ids = list(self.selected)
        if not ids:
            return
        with ui.dialog() as dialog, ui.card():
            ui.label(f"Delete {len(ids)} selected image{'s' if len(ids) != 1 else ''}?").classes("text-lg font-bold")
            ui.label("They are deleted for every tab joined to this workspace. This cannot be undone.")
            with ui.row().classes("w-full justify-end"):
                ui.button("Cancel", on_click=dialog.close).props("flat")
                ui.button("Delete", color="negative", on_click=lambda: self._delete_many(dialog, ids)).mark(
                    "confirm-delete-selected"
                )
        open_once(dialog)

    @in_session
    async def _delete_many(self, dialog: ui.dialog, ids: list[str]) -> None:
        dialog.close()
        gone = 0
        for image_id in ids:
            try:
                await asyncio.to_thread(workspace.delete_image, image_id)
                gone += 1
            except DarkroomError:
                continue  # deleted meanwhile, by another tab or a script
        self.clear_selection()
        ui.notify(f"{gone} image{'s' if gone != 1 else ''} deleted.")


def _pair(args: Any) -> tuple[Any, Any]:
    """An event's ``[image id, value]``, or ``(None, None)`` for anything else a client sent."""
    if isinstance(args, list) and len(args) == 2:
        return args[0], args[1]
    return None, None
