"""The feature API: the catalogue, one image's features, the session's table, duplicate groups."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field

from core.api.models import ERRORS, ImageRecordModel
from core.features import REGISTRY
from core.features import service as features
from core.tables import to_csv

router = APIRouter(prefix="/api", tags=["features"])
Groups = Annotated[
    str | None,
    Query(description="Comma-separated group names (see /api/features/catalog); all when omitted.", max_length=500),
]


class FeatureGroupModel(BaseModel):
    name: str
    description: str
    parameters: dict[str, Any]
    outputs: dict[str, str]
    reference: str


class Catalog(BaseModel):
    groups: list[FeatureGroupModel]


class FeatureTable(BaseModel):
    columns: list[str] = Field(description="id, filename, then one dotted name per scalar feature")
    rows: list[dict[str, Any]]


class NearGroup(BaseModel):
    images: list[ImageRecordModel]
    max_distance: int = Field(description="The largest pHash distance that linked two of them")


class Duplicates(BaseModel):
    exact: list[list[ImageRecordModel]] = Field(description="Groups of images with identical pixels")
    near: list[NearGroup] = Field(description="Groups linked by pHash distance at most `threshold`")
    threshold: int


@router.get("/features/catalog", response_model=Catalog)
async def catalog() -> Catalog:
    """Every feature group: what it computes, its parameters, its outputs and its reference."""
    return Catalog(groups=[FeatureGroupModel(**group.describe()) for group in REGISTRY.values()])


@router.get(
    "/images/{image_id}/features",
    responses={400: ERRORS[400], 404: ERRORS[404]},
    response_model=dict[str, Any],
)
async def image_features(
    image_id: str,
    groups: Groups = None,
    include_vectors: Annotated[bool, Query(description="Include the 8,100-value HOG vector")] = False,
) -> dict[str, Any]:
    """One image's features in FEATURES.md's schema: ``{"id", "name", group: {leaf: value}}``.
    Computed once, then served from the workspace's cache."""
    return await asyncio.to_thread(features.extract, image_id, groups, include_vectors)


@router.get("/features", response_model=FeatureTable, responses={200: {"content": {"text/csv": {}}}, 400: ERRORS[400]})
async def feature_table(
    groups: Groups = None,
    format: Annotated[Literal["json", "csv"], Query(description="json (default) or csv")] = "json",
) -> Response | FeatureTable:
    """The workspace's table: one row per image, every scalar feature as a column. Computed across
    all cores; progress is published to the session's events."""
    columns, rows = await features.feature_table(groups)
    if format == "json":
        return FeatureTable(columns=columns, rows=rows)
    return Response(
        to_csv(columns, rows),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="darkroom-features.csv"'},
    )


@router.get("/features/duplicates", response_model=Duplicates, responses={400: ERRORS[400]})
async def duplicates(
    threshold: Annotated[int | None, Query(ge=0, le=64, description="Most differing pHash bits")] = None,
) -> Duplicates:
    """Exact duplicates (same pixels) and near-duplicate groups (perceptual hash)."""
    found = await features.find_duplicates(threshold)
    return Duplicates(
        exact=[[ImageRecordModel.of(r) for r in group] for group in found.exact],
        near=[NearGroup(images=[ImageRecordModel.of(r) for r in group], max_distance=d) for group, d in found.near],
        threshold=found.threshold,
    )
