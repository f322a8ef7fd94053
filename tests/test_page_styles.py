"""The page runs without Tailwind's runtime (it re-scanned the whole page on every change), so every
utility class the UI code uses must be a Quasar class or be written out in ``ui/workspace.css``."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import nicegui
import pytest

from tests.helpers import free_port
from tests.server_process import ServerProcess

UI = Path(__file__).resolve().parent.parent / "ui"
TAILWIND_RUNTIME = "tailwindcss.min.js"  # what NiceGUI's page loads when Tailwind is on
QUASAR_COLOURS = (
    "white|black|primary|secondary|accent|positive|negative|info|warning|dark|"
    "(?:red|pink|purple|deep-purple|indigo|blue|light-blue|cyan|teal|green|light-green|lime|yellow|amber|orange"
    "|deep-orange|brown|grey|blue-grey)(?:-(?:[1-9]|1[0-4]))?"
)
QUASAR = re.compile(rf"^(?:q-[a-z0-9-]+|(?:text|bg)-(?:{QUASAR_COLOURS})|no-wrap)$")


def used_classes() -> dict[str, set[str]]:
    """Class names in ``.classes("...")`` literals of the UI code, with the files using them."""
    used: dict[str, set[str]] = {}
    for path in UI.glob("*.py"):
        for literal in re.findall(r"""\.classes\(\s*f?["']([^"'{}]*)["']""", path.read_text(encoding="utf-8")):
            for name in literal.split():
                used.setdefault(name, set()).add(path.name)
    return used


def defined_classes() -> set[str]:
    """Classes styled in ``workspace.css``, and the ``"dr-..."`` classes the scripts in ``ui/*.js`` use."""
    css = (UI / "workspace.css").read_text(encoding="utf-8")
    css = re.sub(r"/\*.*?\*/", "", css, flags=re.S)
    styled = {name.replace("\\", "") for name in re.findall(r"\.((?:[A-Za-z0-9_-]|\\.)+)", css)}
    markers = {name for path in UI.glob("*.js") for name in re.findall(r'"(dr-[a-z-]+)"', path.read_text("utf-8"))}
    return styled | markers


@pytest.fixture(scope="module")
def served_page() -> Iterator[str]:
    """The page's HTML as ``darkroom`` serves it."""
    server = ServerProcess(free_port())
    try:
        response = httpx.get(f"{server.url}/", timeout=30)
        assert response.status_code == 200
        yield response.text
    finally:
        server.stop()


def test_the_served_page_loads_no_tailwind_runtime(served_page: str) -> None:
    assert (Path(nicegui.__file__).parent / "static" / TAILWIND_RUNTIME).is_file()  # the name is NiceGUI's
    assert "<title>Darkroom</title>" in served_page
    assert TAILWIND_RUNTIME not in served_page and "text/tailwindcss" not in served_page


def test_every_utility_class_the_ui_uses_is_quasars_or_written_out() -> None:
    used = used_classes()
    assert len(used) > 20  # the scan found the UI's classes
    defined = defined_classes()
    missing = {name: sorted(files) for name, files in used.items() if name not in defined and not QUASAR.match(name)}
    assert not missing, f"classes without a definition (add them to ui/workspace.css): {missing}"
