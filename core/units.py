"""The one way Darkroom writes a byte size for people: ``format_bytes(26214400) == "25.0 MiB"``."""

from __future__ import annotations

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def format_bytes(n: int | float) -> str:
    """``n`` bytes in binary units: whole bytes below 1 KiB, else one decimal (``1.5 KiB``, ``25.0 MiB``)."""
    value = float(n)
    for unit in _UNITS:
        if abs(value) < 1024 or unit == _UNITS[-1]:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")
