"""Response models of the data API (they are what OpenAPI documents)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from core.storage.base import ImageRecord
from core.uploads import UploadReport


class SessionCreated(BaseModel):
    session_id: str = Field(description="A new private workspace id: send it as ?session_id= or X-Session-Id")


class ImageRecordModel(BaseModel):
    id: str = Field(description="Image id (32 hex digits), unique within the workspace")
    filename: str = Field(description="The name it was uploaded with, cleaned of control characters")
    format: str = Field(description="Format detected from the content: JPEG, PNG, GIF, WEBP, BMP, TIFF, HEIF or AVIF")
    width: int = Field(description="Width in pixels, upright (EXIF orientation applied)")
    height: int = Field(description="Height in pixels, upright")
    size_bytes: int
    sha256: str
    uploaded_at: str = Field(description="ISO 8601, UTC")

    @classmethod
    def of(cls, record: ImageRecord) -> ImageRecordModel:
        return cls(**record.to_public())


class AnnotationsModel(BaseModel):
    tags: list[str] = Field(description="Shared tags, in the order they were first added")
    rating: int | None = Field(description="0 to 5 stars, or null when unrated")
    pick: Literal["picked", "rejected"] | None = Field(
        default=None, description="The culling verdict: picked, rejected, or null while undecided"
    )
    note: str
    version: int = Field(description="Bumped by every change; send it back as expected_version")
    updated_at: str | None = Field(description="ISO 8601, UTC; null while never edited")
    updated_by: str | None = Field(description="The name of the tab or script that changed them last")


class ListedImageModel(ImageRecordModel):
    annotations: AnnotationsModel = Field(description="The image's shared tags, rating and note")


class RejectionModel(BaseModel):
    filename: str
    status: int = Field(description="The HTTP status this file alone would get (413, 415, 422, 507)")
    detail: str


class DuplicateModel(BaseModel):
    filename: str
    existing: ImageRecordModel = Field(description="The image with the same bytes already in the workspace")


class SkippedModel(BaseModel):
    filename: str
    reason: str


class UploadResult(BaseModel):
    accepted: list[ImageRecordModel] = []
    rejected: list[RejectionModel] = []
    duplicates: list[DuplicateModel] = []
    detail: str | None = Field(None, description="Set when nothing was accepted: why")

    @staticmethod
    def body(report: UploadReport) -> dict[str, object]:
        """The JSON body, built straight from the report (no model instances per record)."""
        return {
            "accepted": [record.to_public() for record in report.accepted],
            "rejected": [{"filename": r.filename, "status": r.status, "detail": r.detail} for r in report.rejected],
            "duplicates": [{"filename": d.filename, "existing": d.existing.to_public()} for d in report.duplicates],
            "detail": report.detail,
        }


class ZipUploadResult(UploadResult):
    skipped: list[SkippedModel] = Field(
        [], description="Members not taken (not images, nested archives); OS junk is left out silently"
    )

    @staticmethod
    def body(report: UploadReport) -> dict[str, object]:
        skipped = [{"filename": s.filename, "reason": s.reason} for s in report.skipped]
        return {**UploadResult.body(report), "skipped": skipped}


class Health(BaseModel):
    status: str = "ok"
    storage: str
    sessions: int
    images: int
    bytes_held: int
    capacity_bytes: int
    legacy_fallback: bool


class ErrorModel(BaseModel):
    detail: str


ERRORS = {
    400: {"model": ErrorModel, "description": "Malformed request or session id"},
    403: {"model": ErrorModel, "description": "A write sent by a page of another web site (Origin, Sec-Fetch-Site)"},
    404: {"model": ErrorModel, "description": "No such image in this workspace"},
    413: {"model": ErrorModel, "description": "Too large: file, pixels, frames, entries or quota"},
    415: {"model": ErrorModel, "description": "Not a supported image"},
    422: {"model": ErrorModel, "description": "Corrupt image or unsafe archive"},
    507: {"model": ErrorModel, "description": "The server's memory cap is reached"},
}
