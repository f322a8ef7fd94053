"""The one way Darkroom writes a byte size for people: ``format_bytes(26214400) == "25 MiB"``."""

from __future__ import annotations

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def format_bytes(n: int | float) -> str:
    """``n`` bytes in binary units, at most one decimal: ``512 B``, ``1.5 KiB``, ``25 MiB``."""
    value = float(n)
    for unit in _UNITS:
        if abs(value) < 1024 or unit == _UNITS[-1]:
            number = f"{value:.0f}" if unit == "B" else f"{value:.1f}".removesuffix(".0")
            return f"{number} {unit}"
        value /= 1024
    raise AssertionError("unreachable")
