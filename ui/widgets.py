"""Small pieces of the page: charts of one image's features, table rows, formatting."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nicegui import ui

# CleanVision's per-image flags, as badges
QUALITY_FLAGS: list[tuple[str, str]] = [
    ("is_dark", "dark"),
    ("is_light", "light"),
    ("is_blurry", "blurry"),
    ("is_low_information", "low information"),
    ("is_odd_aspect_ratio", "odd aspect ratio"),
    ("is_grayscale", "grayscale"),
    ("is_odd_size", "odd size"),
]


def _number(field: str, label: str, digits: int) -> dict[str, Any]:
    return {
        "name": field,
        "label": label,
        "field": field,
        "sortable": True,
        "align": "right",
        ":format": f"v => v == null ? '' : Number(v).toFixed({digits})",
    }


# The dashboard's columns: a few features people sort by; the export has them all.
KEY_COLUMNS: list[dict[str, Any]] = [
    {"name": "thumbnail", "label": "", "field": "thumbnail"},
    {"name": "filename", "label": "File", "field": "filename", "sortable": True, "align": "left"},
    _number("basic.width", "Width", 0),
    _number("basic.height", "Height", 0),
    _number("cleanvision.brightness", "Brightness", 3),
    _number("stats.gray.std", "Contrast (gray std)", 1),
    _number("sharpness.laplacian_var", "Sharpness (Laplacian var)", 1),
    _number("edges.canny_edge_density", "Edge density", 3),
    _number("colorfulness.colorfulness", "Colourfulness", 1),
    _number("entropy.shannon_entropy", "Entropy (bits)", 2),
    {"name": "flags", "label": "Quality flags", "field": "flags", "align": "left"},
]


def _chart(title: str, categories: list[Any], series: list[dict[str, Any]], legend: bool = True) -> ui.echart:
    return ui.echart(
        {
            "title": {"text": title, "textStyle": {"fontSize": 13}},
            "tooltip": {"trigger": "axis"},
            "legend": {"show": legend, "bottom": 0},  # below the plot, never over the title
            "grid": {"left": 48, "right": 12, "top": 36, "bottom": 52 if legend else 28},
            "xAxis": {"type": "category", "data": categories, "axisLabel": {"fontSize": 10}},
            "yAxis": {"type": "value", "axisLabel": {"fontSize": 10}},
            "animation": False,
            "series": series,
        }
    )


def histogram_chart(hist256: dict[str, list[float]]) -> ui.echart:
    colours = {"R": "#e53935", "G": "#43a047", "B": "#1e88e5", "gray": "#546e7a"}
    series = [
        {
            "name": channel,
            "type": "line",
            "showSymbol": False,
            "data": hist256[channel],
            "lineStyle": {"width": 1.2, "color": colour},
            "itemStyle": {"color": colour},
            "areaStyle": {"opacity": 0.08, "color": colour},
        }
        for channel, colour in colours.items()
        if channel in hist256
    ]
    return _chart("RGB and gray histograms", list(range(256)), series)


def hsv_chart(hsv: dict[str, Any]) -> ui.echart:
    hue = hsv["h_hist"]
    hue_colours = [f"hsl({round((i + 0.5) * 360 / len(hue))}, 70%, 50%)" for i in range(len(hue))]
    categories = [f"H{i}" for i in range(len(hue))] + [f"S{i}" for i in range(len(hsv["s_hist"]))]
    categories += [f"V{i}" for i in range(len(hsv["v_hist"]))]
    data = [{"value": v, "itemStyle": {"color": c}} for v, c in zip(hue, hue_colours, strict=True)]
    data += [{"value": v, "itemStyle": {"color": "#8e24aa"}} for v in hsv["s_hist"]]
    data += [{"value": v, "itemStyle": {"color": "#37474f"}} for v in hsv["v_hist"]]
    title = f"HSV histograms (mean S {hsv['mean_saturation']:.2f}, mean V {hsv['mean_value']:.2f})"
    return _chart(title, categories, [{"name": "pixels", "type": "bar", "data": data}], legend=False)


def lbp_chart(lbp: dict[str, list[float]]) -> ui.echart:
    series = [{"name": "fraction", "type": "bar", "data": lbp["lbp_hist"], "itemStyle": {"color": "#00897b"}}]
    return _chart("LBP texture histogram", list(range(len(lbp["lbp_hist"]))), series, legend=False)


def _format(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def feature_rows(values: dict[str, Any]) -> list[dict[str, str]]:
    """Every scalar of one image's features as ``group / feature / value`` rows (nested dicts get
    dotted names; lists are shown in the charts or left out)."""
    rows: list[dict[str, str]] = []

    def walk(group: str, prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(group, f"{prefix}.{key}" if prefix else str(key), inner)
        elif not isinstance(value, list):
            rows.append({"key": f"{group}.{prefix}", "group": group, "feature": prefix, "value": _format(value)})

    for group, value in values.items():
        if isinstance(value, dict):
            walk(group, "", value)
    return rows


def code_block(text: str, language: str, copy: Callable[[str, str], None]) -> None:
    """A code snippet with a copy button."""
    with ui.row().classes("w-full no-wrap items-start"):
        ui.code(text, language=language).classes("grow text-xs")
        ui.button(icon="content_copy", on_click=lambda: copy(text, "Snippet")).props("flat dense").tooltip("Copy")
