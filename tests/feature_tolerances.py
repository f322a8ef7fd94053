"""Checks a feature result against the reference values, with FEATURES.md's pass tolerances.

Our own checker (the shared compare.py is a tool to learn from, not test code): every leaf of the
expected record is looked up in the actual one and compared by the rule for its dotted path.
"""

from __future__ import annotations

import contextlib
import fnmatch
import itertools
import math
from typing import Any

# (glob, kind, parameters); the first match wins.
RULES: list[tuple[str, str, tuple]] = [
    ("name", "skip", ()),
    ("basic.aspect_ratio", "num", (0.0, 1e-12)),
    ("basic.megapixels", "num", (0.0, 1e-12)),
    ("stats.*.min", "exact", ()),
    ("stats.*.max", "exact", ()),
    ("stats.*.mean", "num", (1e-9, 1e-9)),
    ("stats.*.std", "num", (1e-9, 1e-9)),
    ("stats.*.median", "num", (1e-9, 0.0)),
    ("stats.*.skewness", "num", (1e-7, 1e-7)),
    ("stats.*.kurtosis", "num", (1e-7, 1e-7)),
    ("hsv.mean_*", "num", (1e-12, 1e-12)),
    ("entropy.*", "num", (1e-9, 1e-9)),
    ("sharpness.*", "num", (1e-9, 1e-9)),
    ("edges.sobel_mean", "num", (1e-9, 1e-9)),
    ("edges.sobel_edge_density", "num", (1e-4, 0.0)),
    ("edges.canny_edge_density", "num", (2e-4, 0.0)),
    ("colorfulness.*", "num", (1e-9, 1e-9)),
    ("hashes.*_tie_mask", "skip", ()),
    ("hashes.*", "hash", ()),
    ("lbp.lbp_counts", "skip", ()),
    ("lbp.lbp_hist", "l1", (1e-3,)),
    ("glcm.*_per_angle", "vec", (1e-10, 1e-7)),
    ("glcm.*", "num", (1e-10, 1e-7)),
    ("hog.hog", "vec", (1e-5, 0.0)),
    ("hog.hog_l2", "num", (1e-5, 1e-6)),
    ("hog.hog_sum", "num", (1e-3, 1e-6)),
    ("dominant_colors.*", "colors", (1.0, 0.01)),
    ("cleanvision.errors", "skip", ()),
    ("cleanvision.is_*", "exact", ()),
    ("cleanvision.color_space", "exact", ()),
    ("cleanvision.pixel_md5", "exact", ()),
    ("cleanvision.*", "num", (1e-9, 1e-9)),
    ("*", "exact", ()),
]


def _rule(path: str) -> tuple[str, tuple]:
    return next((kind, params) for pattern, kind, params in RULES if fnmatch.fnmatchcase(path, pattern))


def _leaves(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        return [leaf for key, inner in value.items() for leaf in _leaves(inner, f"{prefix}.{key}" if prefix else key)]
    return [(prefix, value)]


def _lookup(record: dict, path: str) -> Any:
    value: Any = record
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            raise KeyError(path)
        value = value[part]
    return value


def _close(expected: Any, actual: Any, atol: float, rtol: float) -> bool:
    if expected is None or actual is None:
        return expected is None and actual is None
    if isinstance(actual, bool) or not isinstance(actual, (int, float)) or not math.isfinite(actual):
        return False
    return abs(actual - expected) <= atol + rtol * abs(expected)


def _colors_distance(expected: list[dict], actual: list[dict]) -> tuple[float, float]:
    """Best one-to-one matching: weighted colour distance and fraction L1 (missing: weight 0)."""
    n = max(len(expected), len(actual))
    pad = [{"rgb": None, "fraction": 0.0}]
    e, a = expected + pad * (n - len(expected)), actual + pad * (n - len(actual))

    def dist(x: Any, y: Any) -> float:
        return 441.7 if x is None or y is None else math.dist(x, y)

    return min(
        (
            sum(max(e[i]["fraction"], a[p[i]]["fraction"]) * dist(e[i]["rgb"], a[p[i]]["rgb"]) for i in range(n)),
            sum(abs(e[i]["fraction"] - a[p[i]]["fraction"]) for i in range(n)),
        )
        for p in itertools.permutations(range(n))
    )


def check(path: str, expected: Any, actual: Any, record: dict) -> bool:
    kind, params = _rule(path)
    if kind == "skip":
        return True
    if kind == "exact":
        return (
            expected == actual
            and type(expected) is type(actual)
            or (expected == actual and not isinstance(actual, bool) and isinstance(actual, (int, float)))
        )
    if kind == "num":
        return _close(expected, actual, *params)
    if kind == "vec":
        return len(expected) == len(actual) and all(
            _close(x, y, *params) for x, y in zip(expected, actual, strict=True)
        )
    if kind == "l1":
        return (
            len(expected) == len(actual) and sum(abs(x - y) for x, y in zip(expected, actual, strict=True)) <= params[0]
        )
    if kind == "hash":
        differing = int(expected, 16) ^ int(actual, 16)
        with contextlib.suppress(KeyError):
            differing &= ~int(_lookup(record, path + "_tie_mask"), 16)  # bits decided by float noise
        return len(expected) == len(actual) and differing == 0
    if kind == "colors":
        weighted, fractions = _colors_distance(expected, actual)
        return weighted <= params[0] and fractions <= params[1]
    raise AssertionError(f"unknown rule {kind}")


def mismatches(expected: dict, actual: dict) -> list[str]:
    """Every leaf of ``expected`` that ``actual`` misses or gets outside the tolerance."""
    problems = []
    for path, value in _leaves(expected):
        try:
            got = _lookup(actual, path)
        except KeyError:
            if _rule(path)[0] != "skip":
                problems.append(f"{path}: missing")
            continue
        if not check(path, value, got, expected):
            problems.append(f"{path}: expected {str(value)[:60]}, got {str(got)[:60]}")
    return problems
