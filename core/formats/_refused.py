"""Formats recognised only to be refused by name: "PDF is not supported (JPEG, PNG, ... are)" tells
a user more than "not a supported image"."""

from __future__ import annotations

from core.formats._isobmff import brands

# (signature, offset, name)
_SIGNATURES: list[tuple[bytes, int, str]] = [
    (b"%!PS", 0, "EPS/PostScript"),
    (b"\xc5\xd0\xd3\xc6", 0, "EPS"),
    (b"%PDF", 0, "PDF"),
    (b"\x00\x00\x01\x00", 0, "ICO"),
    (b"\x00\x00\x02\x00", 0, "CUR"),
    (b"8BPS", 0, "PSD"),
    (b"icns", 0, "ICNS"),
    (b"\x00\x00\x00\x0cjP  ", 0, "JPEG 2000"),
    (b"\xff\x4f\xff\x51", 0, "JPEG 2000"),
    (b"\xff\x0a", 0, "JPEG XL"),
    (b"\x00\x00\x00\x0cJXL ", 0, "JPEG XL"),
    (b"qoif", 0, "QOI"),
    (b"DDS ", 0, "DDS"),
    (b"\x1f\x8b", 0, "gzip archive"),
    (b"II+\x00", 0, "BigTIFF"),
    (b"MM\x00+", 0, "BigTIFF"),
]


def other_format_name(prefix: bytes) -> str | None:
    """What a file that is on no allow-list (not even an archive) is, when its first bytes tell; None otherwise."""
    for signature, offset, name in _SIGNATURES:
        if prefix[offset : offset + len(signature)] == signature:
            return name
    if brands(prefix):
        return "a video or ISO media file"
    text = prefix.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith((b"<svg", b"<?xml", b"<!doctype svg")):
        return "SVG"
    if text.startswith((b"<!doctype html", b"<html")):
        return "HTML"
    return None
