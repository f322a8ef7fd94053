"""What ``pip install .`` ships: every file the code reads at run time besides Python modules
(the page's scripts and styles, the Redis scripts) is declared as package data."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_data_file_of_core_and_ui_is_declared_package_data() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"][
        "package-data"
    ]
    undeclared = []
    for top in ("core", "ui"):
        for path in (ROOT / top).rglob("*"):
            if not path.is_file() or path.suffix in (".py", ".pyc") or "__pycache__" in path.parts:
                continue
            package = ".".join(path.parent.relative_to(ROOT).parts)
            relative = path.name
            # a pattern of a parent package may name the file through its subfolder ("lua/*.lua")
            while package and not any(fnmatch.fnmatch(relative, p) for p in declared.get(package, [])):
                package, _, folder = package.rpartition(".")
                relative = f"{folder}/{relative}"
            if not package:
                undeclared.append(str(path.relative_to(ROOT)))
    assert undeclared == [], f"not in [tool.setuptools.package-data]: {undeclared}"
