"""Pure computation: image bytes in, feature groups out. No session, no I/O: safe in any worker."""

from __future__ import annotations

from typing import Any

from core.features import REGISTRY
from core.features.views import ImageViews


def compute_features(data: bytes, groups: list[str]) -> dict[str, dict[str, Any]]:
    """Decode ``data`` once and compute each named group on the shared views."""
    views = ImageViews(data)
    return {name: REGISTRY[name].compute(views) for name in groups}
