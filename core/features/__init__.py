"""The feature catalogue. Importing this package registers every family, in FEATURES.md's order."""

from core.features import color, edges, hashes, intensity, quality, texture  # noqa: F401
from core.features.registry import REGISTRY, FeatureGroup, resolve_groups

CATALOGUE_ORDER = [
    "basic",
    "stats",
    "hist256",
    "hsv",
    "entropy",
    "sharpness",
    "edges",
    "colorfulness",
    "hashes",
    "lbp",
    "glcm",
    "hog",
    "dominant_colors",
    "cleanvision",
]
_registered = dict(REGISTRY)
REGISTRY.clear()
REGISTRY.update({name: _registered[name] for name in CATALOGUE_ORDER})

__all__ = ["CATALOGUE_ORDER", "REGISTRY", "FeatureGroup", "resolve_groups"]
