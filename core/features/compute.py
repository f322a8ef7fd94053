"""Pure computation: image bytes in, feature groups out. No session, no I/O: safe in any worker."""

from __future__ import annotations

from typing import Any

from core.features import REGISTRY
from core.features.views import ImageViews


def compute_features(data: bytes, groups: list[str], max_pixels: int | None = None) -> dict[str, dict[str, Any]]:
    """Decode ``data`` once and compute each named group on the shared views (images over
    ``max_pixels`` on a view downscaled to it). A decode sandbox task."""
    views = ImageViews(data, max_pixels)
    return {name: REGISTRY[name].compute(views) for name in groups}
