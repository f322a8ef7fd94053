"""The dashboard's charts as options: histogram bins on nice edges inside what the data can be,
and legends that never sit on a title's line."""

from __future__ import annotations

import math

import pytest

from ui.dashboard import histogram_options, nice_bins, scatter_options


@pytest.mark.parametrize(
    ("low", "high", "wanted"),
    [(0.0, 1.0, 10), (0.003, 0.97, 7), (12.0, 1810.0, 40), (0.5, 0.5000001, 3), (-3.2, 4.1, 6), (1e-6, 3e-6, 4)],
)
def test_bins_have_nice_widths_and_cover_the_data(low: float, high: float, wanted: int) -> None:
    first, width, bins = nice_bins(low, high, wanted)
    mantissa = width / 10 ** math.floor(math.log10(width))
    assert any(math.isclose(mantissa, m) for m in (1, 2, 2.5, 5, 10))
    assert first <= low and first + bins * width >= high
    assert math.isclose(first / width, round(first / width), abs_tol=1e-6)  # edges are multiples of the width
    assert bins <= wanted + 1


def test_a_feature_that_cannot_be_negative_gets_no_bin_below_zero() -> None:
    rows = [{"id": str(n), "sharpness": value} for n, value in enumerate([0.0, 0.4, 3.0, 17.5, 99.0, 120.0, 0.01])]
    options = histogram_options("sharpness", rows)
    labels = options["xAxis"]["data"]
    assert not labels[0].startswith("-") and float(labels[0].split("–")[0]) == 0
    assert sum(options["series"][0]["data"]) == len(rows)


def test_one_value_is_one_bar() -> None:
    options = histogram_options("v", [{"id": "a", "v": 2.0}, {"id": "b", "v": 2.0}])
    assert options["xAxis"]["data"] == ["2"] and options["series"][0]["data"] == [2]


def test_values_are_counted_in_their_own_bins() -> None:
    rows = [{"id": str(n), "v": float(n)} for n in range(100)]
    options = histogram_options("v", rows)
    counts = options["series"][0]["data"]
    assert sum(counts) == 100 and len(counts) == 10 and set(counts) == {10}
    assert options["xAxis"]["data"][:2] == ["0–10", "10–20"]


def test_the_scatter_legend_is_below_the_plot_not_beside_the_title() -> None:
    options = scatter_options("a" * 40, "b" * 40, [], lambda image_id: "")
    assert "top" not in options["legend"] and options["legend"]["bottom"] == 0
    assert options["grid"]["bottom"] > 44  # room for the x axis name and the legend
