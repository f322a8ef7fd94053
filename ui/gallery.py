"""The gallery panel: one card per image of the session, in upload order, live.

Cards are added and removed by the workspace page as the session's events arrive; a click on a
thumbnail opens the image detail, the bin deletes the image for every tab of the workspace.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from nicegui import ui

from core import data_service
from core.errors import DarkroomError
from core.units import format_bytes
from ui.session import in_session


class Gallery:
    """The grid of cards and the empty-workspace hint above it."""

    def __init__(self, thumbnail_url: Callable[[str], str], on_open: Callable[[str], Awaitable[None]]) -> None:
        self.thumbnail_url = thumbnail_url
        self.on_open = on_open
        self.cards: dict[str, ui.element] = {}
        self.records: dict[str, dict[str, Any]] = {}  # image id -> public record, in upload order
        self.extend_card: Callable[[dict[str, Any]], None] | None = None  # the annotation strip (ui.collab)

    def build(self) -> None:
        self.empty = ui.column().classes("w-full items-center q-pa-xl text-grey-7")
        with self.empty:
            ui.icon("add_photo_alternate").classes("text-6xl")
            ui.label("No images yet.").classes("text-lg")
            ui.label(
                "Drop photos (JPEG, PNG, GIF, WebP, BMP, TIFF, HEIC/HEIF, AVIF), folders or ZIP archives above, "
                "paste a screenshot, or push them from a script: see Script access."
            )
        self.grid = ui.element("div").classes("dr-grid")

    @property
    def count(self) -> int:
        return len(self.cards)

    def ids(self) -> list[str]:
        """Image ids in the order the cards are shown."""
        return list(self.records)

    def add(self, image: dict[str, Any]) -> bool:
        """Show one image; False when it is already shown (events and the first listing overlap)."""
        image_id = image["id"]
        if image_id in self.cards:
            return False
        self.records[image_id] = image
        with self.grid, ui.card().tight().classes("dr-card dr-memo").props(f"data-image-id={image_id}") as card:
            self._card_body(image)
        self.cards[image_id] = card
        if self.extend_card is not None:
            with card:
                self.extend_card(image)
        return True

    def _card_body(self, image: dict[str, Any]) -> None:
        image_id = image["id"]
        img = ui.element("img").classes("dr-thumb").mark("thumbnail")
        img.props["src"] = self.thumbnail_url(image_id)
        img.props["alt"] = image["filename"]
        img.on("click", lambda: self.on_open(image_id))
        with ui.row().classes("w-full items-center no-wrap q-px-sm q-py-xs"):
            with ui.column().classes("gap-0 grow"):
                name = ui.label(image["filename"]).classes("dr-name").props("data-testid=card-name")
                name.props["title"] = image["filename"]
                ui.label(
                    f"{image['width']}×{image['height']} · {image['format']} · {format_bytes(image['size_bytes'])}"
                ).classes("text-xs text-grey-7")
            ui.button(icon="delete", on_click=lambda: self.delete(image_id)).props(
                "flat round dense size=sm color=grey-7"
            ).mark("delete-image").props('title="Delete this image"')

    def remove(self, image_id: str) -> bool:
        card = self.cards.pop(image_id, None)
        self.records.pop(image_id, None)
        if card is None:
            return False
        card.delete()
        return True

    def clear(self) -> None:
        """Every card goes at once (one by one, each removal scans the grid's children: O(n²))."""
        self.grid.clear()
        self.cards.clear()
        self.records.clear()

    def show_empty_hint(self) -> None:
        self.empty.set_visibility(not self.cards)

    @in_session
    async def delete(self, image_id: str) -> None:
        try:
            await asyncio.to_thread(data_service.delete_image, image_id)
        except DarkroomError as exc:
            ui.notify(exc.message, type="warning")
