"""The record a module of ``core.formats`` fills in for its format (as a Pillow plugin registers its
``_accept``, its MIME type and its extensions), and the checks every container walker shares."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from core.config import Settings
from core.errors import CorruptImage, TooLarge

CHUNKS_PER_FRAME = 4  # chunk bounds grow with the frame limit, so that animations at that limit fit


@dataclass(frozen=True, kw_only=True)
class Format:
    """A kind of file the page and the API take, told apart by its first bytes, never by its name."""

    name: str  # the stored format name (Pillow's, for images): "JPEG", "HEIF"
    label: str  # what people read: "JPEG", "HEIC/HEIF"
    mime: str  # what Darkroom serves it as
    extensions: tuple[str, ...]  # lowercase, with the dot; the first names the file in a folder store
    accept: Callable[[bytes], bool]  # the signature: True when these first bytes are this format
    mime_aliases: tuple[str, ...] = ()  # other types browsers report for such a file (``File.type``)
    rank: int  # the order formats are listed to people in: the common ones first

    @property
    def mimes(self) -> tuple[str, ...]:
        """Every MIME type a browser may report for the format."""
        return (self.mime, *self.mime_aliases)


@dataclass(frozen=True, kw_only=True)
class ImageFormat(Format):
    """An image format on the allow-list, with what ingest needs to know to decode it safely."""

    # Reads the container, never the pixels; raises TooLarge or CorruptImage (``core.prechecks``).
    check_structure: Callable[[bytes, Settings], None]
    # Width x height from the first header in O(1), or None; for the decode scheduler only.
    pixels_at_a_glance: Callable[[bytes], int | None] | None = None
    previewable: bool = False  # browsers decode it themselves: the page may show a local preview
    counts_frames: bool = True  # check_structure counts the frames; else ingest asks the decoder
    draft: bool = False  # Pillow's draft() decodes it at 1/2..1/8 scale: thumbnails stay cheap
    prepare_decoder: Callable[[], None] | None = None  # run once before Pillow opens one (a plugin)


def check_area(what: str, width: int, height: int, settings: Settings) -> None:
    """``what`` ("the GIF canvas", "page 3 of the TIFF") must have a positive size within the cap."""
    if width <= 0 or height <= 0:
        raise CorruptImage(f"{what} has an impossible size {width}x{height}")
    if width * height > settings.max_pixels:
        raise TooLarge(
            f"{what} has too many pixels: {width}x{height} is {width * height / 1e6:.1f} megapixels; "
            f"the limit is {settings.max_pixels / 1e6:g} megapixels"
        )


def check_frame_count(count: int, what: str, settings: Settings) -> None:
    """At most ``settings.max_frames`` frames; ``what`` says what was counted."""
    if count > settings.max_frames:
        raise TooLarge(f"too many frames: {what}; the limit is {settings.max_frames}")


def check_rectangle(
    what: str, left: int, top: int, width: int, height: int, canvas: tuple[int, int], settings: Settings
) -> None:
    """A frame must lie inside its canvas; one whose far corner is even past the pixel cap is TooLarge."""
    right, bottom = left + width, top + height
    if right * bottom > settings.max_pixels:
        raise TooLarge(
            f"{what} lies at {left},{top} ({width}x{height}), outside its {canvas[0]}x{canvas[1]} canvas: "
            f"covering it would take {right}x{bottom} pixels, too many pixels ({right * bottom / 1e6:.1f} "
            f"megapixels; the limit is {settings.max_pixels / 1e6:g} megapixels)"
        )
    if right > canvas[0] or bottom > canvas[1]:
        raise CorruptImage(
            f"{what} lies at {left},{top} ({width}x{height}), outside its {canvas[0]}x{canvas[1]} canvas"
        )


def chunk_limit(base: int, settings: Settings) -> int:
    """A chunk bound that still fits an animation of ``settings.max_frames`` frames."""
    return max(base, CHUNKS_PER_FRAME * settings.max_frames)
