"""The image detail: the upright preview, facts, quality badges, colour swatches, a strip of the
most similar images of the workspace (a click opens one), charts of the image's features and a
table of every scalar, a download button; ←/→ move, Esc closes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from nicegui import ui
from nicegui.events import KeyEventArguments

from core.errors import DarkroomError
from core.features import discovery
from core.features import service as features
from core.units import format_bytes
from ui.session import in_session
from ui.widgets import QUALITY_FLAGS, feature_rows, histogram_chart, hsv_chart, lbp_chart

SIMILAR_IN_STRIP = 12  # the API's default k: one row of thumbnails under the preview


class Detail:
    """One dialog per page, filled with the image it is opened on."""

    def __init__(
        self,
        preview_url: Callable[[str], str],
        original_url: Callable[[str], str],
        ordered_ids: Callable[[], list[str]],
        record_of: Callable[[str], dict[str, Any] | None],
        thumbnail_url: Callable[[str], str],
    ) -> None:
        self.preview_url = preview_url
        self.original_url = original_url
        self.thumbnail_url = thumbnail_url
        self.ordered_ids = ordered_ids
        self.record_of = record_of
        self.image_id: str | None = None
        self.extend: Callable[[str], None] | None = None  # the annotation editor (ui.collab)

    def build(self) -> None:
        self.dialog = ui.dialog().props("maximized=false full-width").mark("detail")
        # Buttons keep arrow keys: the dialog's close button has the focus after a click.
        ui.keyboard(on_key=self._on_key, ignore=["input", "select", "textarea"])

    @property
    def is_open(self) -> bool:
        return bool(self.dialog.value)

    def close(self) -> None:
        self.dialog.close()
        self.image_id = None

    def forget(self, image_id: str) -> None:
        """The image was deleted: close the detail if it shows it."""
        if self.image_id == image_id:
            self.close()

    async def _on_key(self, event: KeyEventArguments) -> None:
        if not self.is_open or not event.action.keydown or event.action.repeat:
            return
        if event.key.escape:
            self.close()
        elif event.key.arrow_left:
            await self.step(-1)
        elif event.key.arrow_right:
            await self.step(+1)

    async def step(self, offset: int) -> None:
        """Show the previous (-1) or next (+1) image of the gallery, wrapping around."""
        ids = self.ordered_ids()
        if not ids or self.image_id is None:
            return
        index = ids.index(self.image_id) if self.image_id in ids else 0
        await self.open(ids[(index + offset) % len(ids)])

    @in_session
    async def open(self, image_id: str) -> None:
        image = self.record_of(image_id)
        if image is None:
            return
        self.image_id = image_id
        self.dialog.clear()
        with self.dialog, ui.card().classes("w-full").props(f"data-testid=detail data-image-id={image_id}"):
            with ui.row().classes("w-full items-center no-wrap"):
                ui.button(icon="chevron_left", on_click=lambda: self.step(-1)).props(
                    'flat round dense title="Previous image (←)"'
                )
                ui.label(image["filename"]).classes("text-lg font-bold grow").props("data-testid=detail-name")
                ui.button(icon="chevron_right", on_click=lambda: self.step(+1)).props(
                    'flat round dense title="Next image (→)"'
                )
                download = ui.element("a").props(
                    f'href="{self.original_url(image_id)}" download title="Download the original"'
                )
                with download:
                    ui.button(icon="download").props("flat round dense").mark("download-original")
                ui.button(icon="close", on_click=self.close).props('flat round title="Close (Esc)"')
            with ui.row().classes("w-full no-wrap max-md:flex-wrap gap-4"):
                preview = ui.element("img").classes("dr-detail-preview")
                preview.props["src"] = self.preview_url(image_id)
                preview.props["alt"] = image["filename"]
                with ui.column().classes("gap-1"):
                    for label, value in (
                        ("Dimensions", f"{image['width']} × {image['height']} px (upright)"),
                        ("Format", image["format"]),
                        ("Size", format_bytes(image["size_bytes"])),
                        ("Uploaded", image["uploaded_at"]),
                        ("SHA-256", image["sha256"][:16] + "…"),
                    ):
                        with ui.row().classes("gap-2"):
                            ui.label(label).classes("text-grey-7 w-24")
                            ui.label(value)
                    flags = ui.row().classes("gap-1 q-mt-sm")
                    if self.extend is not None:
                        self.extend(image_id)
            strip = ui.row().classes("w-full items-center gap-2 no-wrap").mark("similar-strip")
            strip.style("overflow-x: auto")  # a narrow screen scrolls the strip, not the dialog
            body = ui.column().classes("w-full")
            with body, ui.row().classes("items-center gap-2"):
                ui.spinner()
                ui.label("Computing features…")
        self.dialog.open()
        try:
            values = await asyncio.to_thread(features.extract, image_id)
        except DarkroomError as exc:
            self._say_failed(image_id, body, exc)
            return
        if self.image_id == image_id:  # the user may have moved on meanwhile
            self._render(values, flags, body)
            await self._show_similar(image_id, strip)

    def _say_failed(self, image_id: str, place: ui.element, error: DarkroomError) -> None:
        """Put the error's words where the detail of ``image_id`` was waiting, if it still shows it."""
        if self.image_id == image_id:
            place.clear()
            with place:
                ui.label(error.message).classes("text-negative")

    async def _show_similar(self, image_id: str, strip: ui.element) -> None:
        """The images most like this one (``GET /api/images/{id}/similar``'s search), nearest
        first, as thumbnails that open their own detail. The first search of a workspace computes
        the vectors of every image, so it says so meanwhile."""
        with strip:
            ui.spinner(size="sm")
            ui.label("Finding similar images…").classes("text-grey-7")
        try:
            answer = await discovery.similar(image_id, SIMILAR_IN_STRIP)
        except DarkroomError as exc:
            self._say_failed(image_id, strip, exc)
            return
        if self.image_id != image_id:
            return
        strip.clear()
        with strip:
            ui.label("More like this").classes("text-grey-7").style("flex-shrink: 0")
            if not answer.neighbours:
                ui.label("no other images yet").classes("text-grey-7")
            for record, distance in answer.neighbours:
                thumb = ui.element("img").mark("similar-image", f"similar-{record.id}").classes("rounded")
                thumb.style("height: 72px; width: 72px; flex-shrink: 0; object-fit: cover; cursor: pointer")
                thumb.props["src"] = self.thumbnail_url(record.id)
                thumb.props["alt"] = record.filename
                thumb.props["title"] = f"{record.filename} · distance {distance:.3f}"
                thumb.props["data-image-id"] = record.id
                thumb.on("click", lambda _, other=record.id: self.open(other))

    def _render(self, values: dict[str, Any], flags: ui.element, body: ui.element) -> None:
        cleanvision = values["cleanvision"]
        with flags:
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
        body.clear()
        with body:
            with ui.row().classes("w-full no-wrap max-lg:flex-wrap"):
                histogram_chart(values["hist256"]).mark("detail-chart").classes("grow").style(
                    "height: 260px; min-width: 320px"
                )
                hsv_chart(values["hsv"]).mark("detail-chart").classes("grow").style("height: 260px; min-width: 320px")
                lbp_chart(values["lbp"]).mark("detail-chart").classes("grow").style("height: 260px; min-width: 260px")
            ui.table(
                columns=[
                    {"name": "group", "label": "Group", "field": "group", "sortable": True, "align": "left"},
                    {"name": "feature", "label": "Feature", "field": "feature", "sortable": True, "align": "left"},
                    {"name": "value", "label": "Value", "field": "value", "align": "right"},
                ],
                rows=feature_rows(values),
                row_key="key",
                pagination={"rowsPerPage": 0},
            ).props("dense flat bordered virtual-scroll").classes("w-full").style("max-height: 420px")
