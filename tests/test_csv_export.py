"""CSV export never hands a spreadsheet a formula (OWASP CSV injection), and numbers stay numbers."""

from __future__ import annotations

import csv
import io

import pytest

from core.tables import spreadsheet_safe, to_csv
from tests.helpers import make_jpeg, new_session, upload

HOSTILE_NAMES = ['=HYPERLINK("http://x","y").png', "+SUM(1,2).png", "-2+3.png", "@cmd.png"]


def parse(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


@pytest.mark.parametrize("cell", ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx", '=HYPERLINK("http://x","y")'])
def test_text_that_a_spreadsheet_would_run_is_prefixed_with_a_quote(cell):
    assert parse(to_csv(["name"], [{"name": cell}]))[1] == ["'" + cell]


@pytest.mark.parametrize("value", [-0.5, -3, 0, 2.25, 10**12])
def test_numbers_stay_numbers_even_when_negative(value):
    assert parse(to_csv(["x"], [{"x": value}]))[1] == [str(value)]


def test_numpy_scalars_stay_numbers():
    np = pytest.importorskip("numpy")
    assert parse(to_csv(["a", "b"], [{"a": np.float64(-0.25), "b": np.int64(-7)}]))[1] == ["-0.25", "-7"]


def test_plain_text_is_unchanged_and_missing_cells_are_empty():
    text = to_csv(["id", "filename", "extra"], [{"id": "ab12", "filename": "a, b.jpg", "ignored": 1}])
    assert parse(text) == [["id", "filename", "extra"], ["ab12", "a, b.jpg", ""]]
    assert text.endswith("\n") and "\r" not in text


def test_text_is_quoted_and_numbers_are_not():
    assert to_csv(["name", "x"], [{"name": "a\rb", "x": -0.5}]) == '"name","x"\n"a\rb",-0.5\n'


def test_column_names_are_neutralised_too():
    assert parse(to_csv(["=cmd"], []))[0] == ["'=cmd"]


def test_booleans_and_none_are_written_as_text():
    assert spreadsheet_safe(True) == "True" and spreadsheet_safe(None) == ""


def test_feature_csv_neutralises_hostile_file_names_and_keeps_numbers(api):
    session = new_session(api)
    files = [(name, make_jpeg(seed=i)) for i, name in enumerate(HOSTILE_NAMES)]
    assert upload(api, session, *files).status_code == 200
    response = api.get("/api/features", params={"session_id": session, "format": "csv", "groups": "basic"})
    assert response.status_code == 200
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert sorted(row["filename"] for row in rows) == sorted("'" + name for name in HOSTILE_NAMES)
    for row in rows:
        assert not any(cell.startswith("'") for column, cell in row.items() if column != "filename")
        assert float(row["basic.width"]) == 64  # numbers are written as numbers
    assert '"=HYPERLINK' not in response.text and ",64," in response.text
