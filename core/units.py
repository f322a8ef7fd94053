"""The one way Darkroom writes a byte size for people: ``format_bytes(26214400) == "25 MiB"``."""

from __future__ import annotations

BYTE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")  # the page formats sizes in the browser from these too
BYTE_STEP = 1024


def format_bytes(n: int | float) -> str:
    """``n`` bytes in binary units, at most one decimal: ``512 B``, ``1.5 KiB``, ``25 MiB``."""
    value = float(n)
    for unit in BYTE_UNITS:
        if abs(value) < BYTE_STEP or unit == BYTE_UNITS[-1]:
            number = f"{value:.0f}" if unit == BYTE_UNITS[0] else f"{value:.1f}".removesuffix(".0")
            return f"{number} {unit}"
        value /= BYTE_STEP
    raise AssertionError("unreachable")
