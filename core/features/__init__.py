"""The feature catalogue. Importing this package registers every family, in FEATURES.md's order,
then Darkroom's own groups (``exif``; ``exif_gps`` and ``similarity``, computed only when named)."""

from core.features import color, edges, exif, hashes, intensity, quality, similar, texture  # noqa: F401
from core.features.registry import REGISTRY, FeatureGroup, default_groups, resolve_groups

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
    "exif",
    "exif_gps",
    "similarity",
]
_registered = dict(REGISTRY)
REGISTRY.clear()
REGISTRY.update({name: _registered[name] for name in CATALOGUE_ORDER})

__all__ = ["CATALOGUE_ORDER", "REGISTRY", "FeatureGroup", "default_groups", "resolve_groups"]
