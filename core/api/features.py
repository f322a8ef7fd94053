"""The feature API: the catalogue, one image's features, the session's table, duplicate groups.

Whole-workspace answers (the table, the duplicate groups) are encoded in a worker thread and sent
as bytes: the decorators' ``response_model`` documents their shape, but no model is built or
validated per row on the event loop.
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field

from core.api.models import ERRORS, ImageRecordModel
from core.features import REGISTRY
from core.features import service as features
from core.tables import to_csv

router = APIRouter(prefix="/api", tags=["features"])
JSON = "application/json"
Groups = Annotated[
    str | None,
    Query(
        description="Comma-separated group names (see /api/features/catalog); when omitted, every group whose "
        "by_default is true (exif_gps, where a photo was taken, only when named).",
        max_length=500,
    ),
]


class FeatureGroupModel(BaseModel):
    name: str
    description: str
    parameters: dict[str, Any]
    outputs: dict[str, str]
    reference: str
    by_default: bool = Field(description="Computed when no groups are named; false: only when named (GPS)")


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


def _json(body: object) -> bytes:
    return json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


def _table_body(columns: list[str], rows: list[dict[str, Any]], format: str) -> bytes:
    if format == "json":
        return _json({"columns": columns, "rows": rows})
    return to_csv(columns, rows).encode()


@router.get("/features", response_model=FeatureTable, responses={200: {"content": {"text/csv": {}}}, 400: ERRORS[400]})
async def feature_table(
    groups: Groups = None,
    format: Annotated[Literal["json", "csv"], Query(description="json (default) or csv")] = "json",
) -> Response:
    """The workspace's table: one row per image, every scalar feature as a column. Computed across
    all cores; progress is published to the session's events."""
    columns, rows = await features.feature_table(groups)
    body = await asyncio.to_thread(_table_body, columns, rows, format)
    if format == "json":
        return Response(body, media_type=JSON)
    return Response(
        body,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="darkroom-features.csv"'},
    )


def _duplicates_body(found: features.DuplicateGroups) -> bytes:
    return _json(
        {
            "exact": [[record.to_public() for record in group] for group in found.exact],
            "near": [
                {"images": [record.to_public() for record in group], "max_distance": distance}
                for group, distance in found.near
            ],
            "threshold": found.threshold,
        }
    )


@router.get("/features/duplicates", response_model=Duplicates, responses={400: ERRORS[400], 413: ERRORS[413]})
async def duplicates(
    threshold: Annotated[
        int | None,
        Query(
            ge=0,
            le=64,
            description="Most differing pHash bits (default: DARKROOM_NEAR_DUPLICATE_DISTANCE). A threshold that "
            "would compare too many pairs of a large workspace gets 413.",
        ),
    ] = None,
) -> Response:
    """Exact duplicates (same pixels) and near-duplicate groups (perceptual hash), found in
    near-linear time."""
    found = await features.find_duplicates(threshold)
    return Response(await asyncio.to_thread(_duplicates_body, found), media_type=JSON)
