"""The dashboard panel: every feature of every image, as charts (a histogram of one feature, a
scatter of two; clicking a point opens that image), a table, duplicate groups, and exports.

Charts are drawn from the same rows as the table and follow the session: a removed image leaves
them at once, an added one after its features are computed (the workspace asks for a refresh).
"""

from __future__ import annotations

import asyncio
import html
import json
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

from nicegui import Client, background_tasks, ui
from nicegui.events import EChartPointClickEventArguments

from core.errors import DarkroomError
from core.features import CATALOGUE_ORDER
from core.features import service as features
from core.tables import to_csv
from ui.session import in_session
from ui.widgets import KEY_COLUMNS, QUALITY_FLAGS

DEFAULT_HISTOGRAM = "sharpness.laplacian_var"
DEFAULT_SCATTER = ("cleanvision.brightness", "sharpness.laplacian_var")
MAX_BINS = 40  # histogram bars; fewer for few images (square-root rule)
FLAGGED_COLOUR = "#e53935"
CLEAN_COLOUR = "#1e88e5"
_REFRESH_DELAY = 0.5  # seconds: a burst of uploads becomes one refresh
_REMOVAL_DELAY = 0.25  # seconds: a burst of deletes becomes one redraw of the table and charts


def scalar_columns(columns: list[str], rows: list[dict[str, Any]]) -> list[str]:
    """The numeric feature columns (no ids, names, flags or strings), in catalogue order."""
    numeric = [
        column
        for column in columns
        if "." in column
        and any(isinstance(row.get(column), int | float) for row in rows)
        and all(row.get(column) is None or _is_number(row.get(column)) for row in rows)
    ]
    order = {name: index for index, name in enumerate(CATALOGUE_ORDER)}
    return sorted(numeric, key=lambda column: order.get(column.split(".", 1)[0], len(order)))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def flags_of(row: dict[str, Any]) -> list[str]:
    return [label for key, label in QUALITY_FLAGS if row.get(f"cleanvision.{key}")]


def nice_bins(low: float, high: float, wanted: int) -> tuple[float, float, int]:
    """``(first edge, bin width, bins)``: at most ``wanted`` bins of a "nice" width (1, 2, 2.5 or 5
    times a power of ten) whose edges are multiples of the width, covering ``low``..``high``. The
    first edge is the multiple at or below ``low``, so values that cannot be negative never get a
    bin below zero."""
    if not high > low:
        return low, 0.0, 1
    step = (high - low) / max(1, wanted)
    power = 10 ** math.floor(math.log10(step))
    width = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= step * (1 - 1e-9))
    first = math.floor(low / width + 1e-9) * width
    bins = max(1, math.ceil((high - first) / width - 1e-9))
    while first + bins * width < high:  # float rounding at the top edge
        bins += 1
    return first, width, bins


def histogram_options(column: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Bars of how many images fall in each of equal-width bins of ``column``, on nice edges."""
    values = [float(row[column]) for row in rows if _is_number(row.get(column))]
    labels: list[str] = []
    counts: list[int] = []
    if values:
        wanted = min(MAX_BINS, math.ceil(math.sqrt(len(values))))
        first, width, bins = nice_bins(min(values), max(values), wanted)
        counts = [0] * bins
        for value in values:
            counts[min(bins - 1, int((value - first) / width)) if width else 0] += 1
        if width:
            labels = [f"{first + i * width:.4g}–{first + (i + 1) * width:.4g}" for i in range(bins)]
        else:
            labels = [f"{first:.4g}"]
    return {
        "title": {"text": f"Distribution of {column}", "textStyle": {"fontSize": 13}},
        "tooltip": {"trigger": "axis"},
        "grid": {"left": 48, "right": 16, "top": 36, "bottom": 56},
        "xAxis": {"type": "category", "data": labels, "axisLabel": {"fontSize": 10, "rotate": 30}},
        "yAxis": {"type": "value", "name": "images", "minInterval": 1, "axisLabel": {"fontSize": 10}},
        "animation": False,
        "series": [{"name": "images", "type": "bar", "data": counts, "itemStyle": {"color": "#546e7a"}}],
    }


def scatter_options(x: str, y: str, rows: list[dict[str, Any]], thumbnail_url: Callable[[str], str]) -> dict[str, Any]:
    """One point per image with both values; flagged images in red. The tooltip shows the thumbnail."""
    clean: list[dict[str, Any]] = []
    flagged: list[dict[str, Any]] = []
    for row in rows:
        if not (_is_number(row.get(x)) and _is_number(row.get(y))):
            continue
        raised = flags_of(row)
        point = {
            "value": [row[x], row[y]],
            "id": row["id"],
            "name": html.escape(str(row["filename"])),  # tooltips render HTML
            "thumb": thumbnail_url(row["id"]),
            "flags": html.escape(", ".join(raised)),
        }
        (flagged if raised else clean).append(point)
    tooltip = (
        'p => `<img src="${p.data.thumb}" style="width:120px;height:90px;object-fit:cover;display:block">'
        "<b>${p.data.name}</b><br>"
        f"{html.escape(x)}: ${{Number(p.value[0]).toPrecision(4)}}<br>"
        f"{html.escape(y)}: ${{Number(p.value[1]).toPrecision(4)}}"
        "${p.data.flags ? '<br><span style=\"color:" + FLAGGED_COLOUR + "\">' + p.data.flags + '</span>' : ''}`"
    )
    return {
        "title": {"text": f"{y} against {x}", "textStyle": {"fontSize": 13}},
        "tooltip": {"trigger": "item", ":formatter": tooltip},
        "legend": {"bottom": 0},  # below the plot: a long title and the legend never share a line
        "grid": {"left": 64, "right": 16, "top": 36, "bottom": 64},
        "xAxis": {"type": "value", "name": x, "nameLocation": "middle", "nameGap": 26, "scale": True},
        "yAxis": {"type": "value", "name": y, "nameLocation": "middle", "nameGap": 50, "scale": True},
        "animation": False,
        "series": [
            {"name": "no quality flags", "type": "scatter", "data": clean, "symbolSize": 9,
             "itemStyle": {"color": CLEAN_COLOUR}},
            {"name": "quality flags", "type": "scatter", "data": flagged, "symbolSize": 13,
             "itemStyle": {"color": FLAGGED_COLOUR, "borderColor": "#000", "borderWidth": 1}},
        ],
    }  # fmt: skip


class Dashboard:
    """Features of the whole workspace: charts, table, duplicates, exports."""

    def __init__(
        self,
        client: Client,
        thumbnail_url: Callable[[str], str],
        image_count: Callable[[], int],
        on_open: Callable[[str], Awaitable[None]],
    ) -> None:
        self.client = client
        self.thumbnail_url = thumbnail_url
        self.image_count = image_count
        self.on_open = on_open
        self.rows: list[dict[str, Any]] = []
        self.columns: list[str] = []
        self.removed: set[str] = set()  # ids deleted since the rows were last drawn
        self.stale = True
        self.computing = False
        self.visible = False
        self.extend_controls: Callable[[], None] | None = None  # "colour by tag" (ui.collab)
        self.recolour: Callable[[dict[str, Any]], None] | None = None

    def build(self) -> None:
        with ui.row().classes("w-full items-center gap-2"):
            self.refresh_button = ui.button("Compute features", icon="play_arrow", on_click=self.refresh)
            ui.button("Export CSV", icon="download", on_click=lambda: self.export("csv")).props("outline")
            ui.button("Export JSON", icon="data_object", on_click=lambda: self.export("json")).props("outline")
            self.progress_label = ui.label().classes("text-grey-7")
        self.progress = ui.linear_progress(value=0, show_value=False).props("instant-feedback").classes("w-full")
        self.progress.set_visibility(False)
        with ui.row().classes("w-full items-center gap-2"):
            self.histogram_feature = ui.select(
                [DEFAULT_HISTOGRAM],
                value=DEFAULT_HISTOGRAM,
                label="Histogram of",
                with_input=True,
                on_change=self.draw_charts,
            )
            self.scatter_x = ui.select(
                [DEFAULT_SCATTER[0]],
                value=DEFAULT_SCATTER[0],
                label="Scatter x",
                with_input=True,
                on_change=self.draw_charts,
            )
            self.scatter_y = ui.select([DEFAULT_SCATTER[1]], value=DEFAULT_SCATTER[1], label="Scatter y",
                                       with_input=True, on_change=self.draw_charts)  # fmt: skip
            for select in (self.histogram_feature, self.scatter_x, self.scatter_y):
                select.classes("min-w-[240px]").props("dense outlined")
            if self.extend_controls is not None:
                self.extend_controls()
        with ui.row().classes("w-full no-wrap max-lg:flex-wrap"):
            self.histogram = ui.echart(histogram_options(DEFAULT_HISTOGRAM, [])).classes("grow")
            self.histogram.style("height: 300px; min-width: 320px").props("data-testid=histogram")
            self.scatter = ui.echart(scatter_options(*DEFAULT_SCATTER, [], self.thumbnail_url)).classes("grow")
            self.scatter.style("height: 300px; min-width: 320px").props("data-testid=scatter")
            self.scatter.on_point_click(self._point_clicked)
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

    # -- following the workspace --
    def images_changed(self) -> None:
        """Images were added or removed: recompute soon if the dashboard is in view."""
        self.stale = True
        if self.visible and not self.computing:
            background_tasks.create(self._refresh_later(), name="darkroom-dashboard-refresh")

    def image_removed(self, image_id: str) -> None:
        """Take a deleted image out of the charts and the table (no recomputation needed). Deletes
        are gathered for ``_REMOVAL_DELAY``, so a script deleting a whole workspace one image at a
        time costs a few redraws a second, not one walk of the table per image."""
        if not self.removed:
            background_tasks.create(self._remove_later(), name="darkroom-dashboard-removal")
        self.removed.add(image_id)

    async def _remove_later(self) -> None:
        await asyncio.sleep(_REMOVAL_DELAY)
        removed, self.removed = self.removed, set()
        if self.client.id not in Client.instances:
            return
        kept = [row for row in self.rows if row["id"] not in removed]
        if len(kept) != len(self.rows):
            self.rows = kept
            self._show_rows()

    def set_visible(self, visible: bool) -> None:
        self.visible = visible
        if visible and self.stale and not self.computing:
            background_tasks.create(self._refresh_later(0), name="darkroom-dashboard-refresh")

    async def _refresh_later(self, delay: float = _REFRESH_DELAY) -> None:
        await asyncio.sleep(delay)
        if self.stale and not self.computing and self.client.id in Client.instances:
            await self.refresh()

    # -- computing --
    @in_session
    async def refresh(self) -> None:
        """Every feature of every image (across all cores, with progress): charts, table, duplicates."""
        if self.computing:
            return
        self.computing = True
        self.stale = False
        self.refresh_button.props("loading")
        self.show_progress(0, self.image_count())
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
        if self.stale and self.visible:  # images changed while computing
            background_tasks.create(self._refresh_later(), name="darkroom-dashboard-refresh")
        self.columns, self.rows = columns, rows
        self._show_rows()
        self._render_duplicates(found)

    def show_progress(self, done: int, total: int) -> None:
        if not self.computing:
            return
        self.progress.set_visibility(True)
        self.progress.set_value(done / total if total else 1.0)
        self.progress_label.set_text(f"Computing features: {done} of {total} images")

    def _show_rows(self) -> None:
        self.table.rows = [self._table_row(row) for row in self.rows]
        self.table.update()
        count = len(self.rows)
        self.progress_label.set_text(f"{count} image{'s' if count != 1 else ''}, every feature computed")
        options = scalar_columns(self.columns, self.rows)
        if options:
            for select in (self.histogram_feature, self.scatter_x, self.scatter_y):
                select.set_options(options, value=select.value if select.value in options else options[0])
        self.draw_charts()

    def draw_charts(self) -> None:
        self.histogram.options.clear()
        self.histogram.options.update(histogram_options(self.histogram_feature.value, self.rows))
        self.histogram.update()
        scatter = scatter_options(self.scatter_x.value, self.scatter_y.value, self.rows, self.thumbnail_url)
        if self.recolour is not None:
            self.recolour(scatter)
        self.scatter.options.clear()
        self.scatter.options.update(scatter)
        self.scatter.update()

    async def _point_clicked(self, event: EChartPointClickEventArguments) -> None:
        image_id = event.data.get("id") if isinstance(event.data, dict) else None
        if isinstance(image_id, str):
            await self.on_open(image_id)

    def _table_row(self, row: dict[str, Any]) -> dict[str, Any]:
        out = {column["field"]: row.get(column["field"]) for column in KEY_COLUMNS if "." in column["field"]}
        out["id"] = row["id"]
        out["filename"] = row["filename"]
        out["thumbnail"] = self.thumbnail_url(row["id"])
        out["flags"] = flags_of(row)
        return out

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

    # -- exports --
    @in_session
    async def export(self, fmt: str) -> None:
        if not self.image_count():
            ui.notify("The workspace is empty: add images first.", type="warning")
            return
        if self.stale or not self.rows:
            await self.refresh()
        stamp = time.strftime("%Y%m%d-%H%M%S")
        columns, rows = self.columns, self.rows  # encoded on a thread: a loop over the whole table
        if fmt == "csv":
            body = await asyncio.to_thread(lambda: to_csv(columns, rows).encode())
            ui.download.content(body, f"darkroom-features-{stamp}.csv", "text/csv")
        else:
            body = await asyncio.to_thread(lambda: json.dumps({"columns": columns, "rows": rows}, indent=1).encode())
            ui.download.content(body, f"darkroom-features-{stamp}.json", "application/json")
