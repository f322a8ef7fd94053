"""The catalogue: named feature groups, each with a description, parameters and output shape."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from core.errors import BadRequest
from core.features.views import ImageViews

Compute = Callable[[ImageViews], dict[str, Any]]


@dataclass(frozen=True)
class FeatureGroup:
    name: str
    description: str
    compute: Compute
    outputs: dict[str, str]  # leaf name -> what it is (type, shape, range)
    parameters: dict[str, Any] = field(default_factory=dict)
    reference: str = ""
    by_default: bool = True  # False: computed and shown only when asked for by name (GPS)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "parameters": self.parameters,
            "outputs": self.outputs,
            "reference": self.reference,
            "by_default": self.by_default,
        }


REGISTRY: dict[str, FeatureGroup] = {}


def register(
    name: str,
    description: str,
    outputs: dict[str, str],
    parameters: dict[str, Any] | None = None,
    reference: str = "",
    by_default: bool = True,
) -> Callable[[Compute], Compute]:
    """Add a compute function to the catalogue under ``name`` (registration order = output order);
    a group not ``by_default`` is left out when no groups are named."""

    def add(compute: Compute) -> Compute:
        REGISTRY[name] = FeatureGroup(name, description, compute, outputs, parameters or {}, reference, by_default)
        return compute

    return add


def default_groups() -> list[str]:
    """The groups computed when none are named: every one but those asked for by name only."""
    return [name for name, group in REGISTRY.items() if group.by_default]


def resolve_groups(names: str | list[str] | None) -> list[str]:
    """Group names in catalogue order; None or empty means the default groups. Unknown names:
    BadRequest (400)."""
    if names is None:
        return default_groups()
    wanted = [n.strip() for n in (names.split(",") if isinstance(names, str) else names) if n.strip()]
    if not wanted:
        return default_groups()
    unknown = [n for n in wanted if n not in REGISTRY]
    if unknown:
        raise BadRequest(
            f"unknown feature group(s): {', '.join(sorted(set(unknown)))}; valid groups are: {', '.join(REGISTRY)}"
        )
    return [n for n in REGISTRY if n in wanted]
