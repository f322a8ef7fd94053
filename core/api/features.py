"""The feature API: the catalogue, one image's features, the session's table, duplicate groups, the
images like one image and the bursts with their best frames.

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
from core.features import REGISTRY, bursts, discovery
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


# -- finding images: more like this, bursts and near duplicates --
class SimilarImage(ImageRecordModel):
    distance: float = Field(description="Euclidean distance of the similarity vectors, 0 (same) to sqrt 2")


class Similar(BaseModel):
    image: ImageRecordModel = Field(description="The image asked about")
    k: int
    results: list[SimilarImage] = Field(
        description="The k nearest images of the workspace (itself left out), nearest first"
    )


class GroupMember(BaseModel):
    id: str
    filename: str
    capture_time: str | None = Field(description="EXIF DateTimeOriginal as ISO 8601; null: placed in upload order")
    laplacian_var: float = Field(description="Sharpness: variance of the Laplacian (the sharpness group)")
    clipped: float = Field(description="Share of gray pixels at 0 or 255, 0..1")
    width: int
    height: int


class ImageGroup(BaseModel):
    id: str = Field(description="Names this set of members: it changes whenever the members do")
    kind: Literal["burst", "near_duplicates"]
    members: list[GroupMember] = Field(description="In capture order (timed by time, then the untimed by upload)")
    member_ids: list[str] = Field(description="The members' ids, in the same order")
    best: str = Field(description="The id of the suggested frame to keep")
    reason: str = Field(description='Why, in words: "sharpest: Laplacian variance 1,810 against 420"')
    max_distance: int = Field(description="The widest pHash distance of a link in the group")


class ImageGroups(BaseModel):
    groups: list[ImageGroup] = Field(description="Groups of two images or more; an image in no group is not listed")
    gap: float
    distance: int
    near: int


def _similar_body(answer: discovery.SimilarAnswer, k: int) -> bytes:
    results = [{**record.to_public(), "distance": distance} for record, distance in answer.neighbours]
    return _json({"image": answer.image.to_public(), "k": k, "results": results})


@router.get(
    "/images/{image_id}/similar",
    response_model=Similar,
    responses={400: ERRORS[400], 404: ERRORS[404]},
)
async def similar(
    image_id: str,
    k: Annotated[
        int, Query(ge=discovery.MIN_K, le=discovery.MAX_K, description="How many, 1 to 100")
    ] = discovery.DEFAULT_K,
) -> Response:
    """More like this: the k images of the workspace nearest to this one by the `similarity` vector
    (see its entry in /api/features/catalog: colour, shape and texture blocks, weighted), each with
    its distance. Exact; the vectors are computed once per image, then served from a memo."""
    answer = await discovery.similar(image_id, k)
    return Response(await asyncio.to_thread(_similar_body, answer, k), media_type=JSON)


def _groups_body(found: list[bursts.Group], gap: float, distance: int, near: int) -> bytes:
    groups = [
        {
            "id": group.group_id,
            "kind": group.kind,
            "members": [
                {
                    "id": shot.image_id,
                    "filename": shot.name,
                    "capture_time": shot.capture_text,
                    "laplacian_var": shot.sharpness,
                    "clipped": shot.clipped,
                    "width": shot.width,
                    "height": shot.height,
                }
                for shot in group.members
            ],
            "member_ids": [shot.image_id for shot in group.members],
            "best": group.best.image_id,
            "reason": group.reason,
            "max_distance": group.max_distance,
        }
        for group in found
    ]
    return _json({"groups": groups, "gap": gap, "distance": distance, "near": near})


@router.get("/groups", response_model=ImageGroups, responses={400: ERRORS[400], 413: ERRORS[413]})
async def image_groups(
    gap: Annotated[
        float,
        Query(
            ge=0,
            le=discovery.MAX_GAP_SECONDS,
            description="Most seconds between consecutive frames of a burst (EXIF capture times), 0 to 3600",
        ),
    ] = discovery.DEFAULT_GAP_SECONDS,
    distance: Annotated[
        int,
        Query(
            ge=0,
            le=discovery.MAX_BURST_DISTANCE,
            description="Most differing pHash bits between consecutive frames of a burst, 0 to 32",
        ),
    ] = discovery.DEFAULT_BURST_DISTANCE,
    near: Annotated[
        int | None,
        Query(
            ge=0,
            le=64,
            description="Most differing pHash bits of near duplicates taken at any time (default: "
            "DARKROOM_NEAR_DUPLICATE_DISTANCE); one that would compare too many pairs gets 413",
        ),
    ] = None,
) -> Response:
    """Bursts (consecutive frames within `gap` seconds and `distance` pHash bits) and near
    duplicates (within `near` bits, any time), each with the suggested best frame and the reason:
    the largest, then the least clipped, then the sharpest. A client keeps the best and rejects the
    rest with pick patches (PATCH /api/images/{id}/annotations)."""
    found, near_bits = await discovery.groups(gap, distance, near)
    return Response(await asyncio.to_thread(_groups_body, found, gap, distance, near_bits), media_type=JSON)
