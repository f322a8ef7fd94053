"""Tables written for spreadsheets: the one table-to-CSV function.

A cell a spreadsheet would read as a formula is neutralised (OWASP, "CSV Injection"): text that
begins with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return gets a single quote in front,
so ``=HYPERLINK(...)`` in a file name is shown as text, never run. Numbers stay numbers: ``-0.5``
given as a float is written as ``-0.5``; only text is ever prefixed.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from numbers import Real
from typing import Any

FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
NEUTRALISER = "'"


def spreadsheet_safe(value: Any) -> Any:
    """``value`` as a CSV cell: numbers unchanged, None empty, text that a spreadsheet would take
    for a formula prefixed with a single quote."""
    if value is None:
        return ""
    if isinstance(value, Real) and not isinstance(value, bool):
        return value
    text = str(value)
    return NEUTRALISER + text if text.startswith(FORMULA_TRIGGERS) else text


def to_csv(columns: list[str], rows: Iterable[Mapping[str, Any]]) -> str:
    """A CSV document (``\\n`` line ends, a header row of ``columns``) with one line per row; keys
    missing from a row are empty cells, keys not in ``columns`` are left out. Every cell and column
    name goes through ``spreadsheet_safe``."""
    text = io.StringIO()
    # Text is always quoted (a CR inside a cell then survives "\n" line ends), numbers never are.
    writer = csv.writer(text, lineterminator="\n", quoting=csv.QUOTE_NONNUMERIC)
    writer.writerow([spreadsheet_safe(name) for name in columns])
    for row in rows:
        writer.writerow([spreadsheet_safe(row.get(name)) for name in columns])
    return text.getvalue()
