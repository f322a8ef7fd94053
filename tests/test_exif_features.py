"""The exif and exif_gps feature groups: columns from real EXIF written by Pillow, through the API and
its exports; where a photo was taken only on request, and never in a log."""

from __future__ import annotations

import csv
import io
import logging

import pytest
from PIL import Image
from PIL.ExifTags import GPS, IFD, Base
from PIL.TiffImagePlugin import IFDRational

from core.features.compute import compute_features
from core.features.exif import MAX_TEXT_CHARS
from tests.helpers import new_session, upload

CAPTURE = {
    "capture_time": "2024-05-01T12:34:56.12+02:00",
    "camera_make": "Canon",
    "camera_model": "Canon EOS R5",
    "lens": "RF50mm F1.8 STM",
    "exposure_time_s": 0.004,
    "f_number": 2.8,
    "iso": 400,
    "focal_length_mm": 50.0,
}
COORDINATES = "GPSLatitude"  # the tag Pillow names in its log line, with the raw bytes of the value
PARIS = {"latitude": 48 + 51 / 60 + 23.76 / 3600, "longitude": 2 + 21 / 60 + 7.92 / 3600, "altitude_m": 35.0}


def camera_exif(south_west: bool = False, **replaced: object) -> Image.Exif:
    """EXIF as a camera writes it: IFD0, the Exif sub-IFD and the GPS IFD."""
    exif = Image.Exif()
    exif[Base.Make] = "Canon"
    exif[Base.Model] = "Canon EOS R5"
    exif[Base.Orientation] = 1
    sub = exif.get_ifd(IFD.Exif)
    sub[Base.DateTimeOriginal] = "2024:05:01 12:34:56"
    sub[Base.SubsecTimeOriginal] = "12"
    sub[Base.OffsetTimeOriginal] = "+02:00"
    sub[Base.DateTimeDigitized] = "2024:05:01 12:35:00"
    sub[Base.ExposureTime] = IFDRational(1, 250)
    sub[Base.FNumber] = IFDRational(28, 10)
    sub[Base.ISOSpeedRatings] = 400
    sub[Base.FocalLength] = IFDRational(50, 1)
    sub[Base.LensModel] = "RF50mm F1.8 STM"
    gps = exif.get_ifd(IFD.GPSInfo)
    gps[GPS.GPSLatitudeRef] = "S" if south_west else "N"
    gps[GPS.GPSLatitude] = (IFDRational(48), IFDRational(51), IFDRational(2376, 100))
    gps[GPS.GPSLongitudeRef] = "W" if south_west else "E"
    gps[GPS.GPSLongitude] = (IFDRational(2), IFDRational(21), IFDRational(792, 100))
    gps[GPS.GPSAltitudeRef] = b"\x01" if south_west else b"\x00"
    gps[GPS.GPSAltitude] = IFDRational(35, 1)
    for tag, value in replaced.items():
        sub[getattr(Base, tag)] = value
    return exif


def photo(fmt: str = "JPEG", size: tuple[int, int] = (64, 48), exif: Image.Exif | None = None) -> bytes:
    out = io.BytesIO()
    image = Image.new("RGB", size, (120, 30, 200))
    image.save(out, fmt, **({} if exif is None else {"exif": exif}))
    return out.getvalue()


def table(api, session: str, **params: str) -> dict:
    response = api.get("/api/features", params={"session_id": session, **params})
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_exif_columns_come_from_the_cameras_tags(api, fmt):
    session = new_session(api)
    upload(api, session, (f"a.{fmt.lower()}", photo(fmt, exif=camera_exif())))
    (row,) = table(api, session, groups="exif")["rows"]
    assert {name: row[f"exif.{name}"] for name in CAPTURE} == pytest.approx(CAPTURE)


def test_a_big_photo_analysed_at_a_reduced_scale_keeps_its_exif(api):
    session = new_session(api)
    upload(api, session, ("big.jpg", photo(size=(3000, 2000), exif=camera_exif())))  # over 4.2 MP
    (row,) = table(api, session, groups="basic,exif")["rows"]
    assert row["basic.width"] == 3000 and row["exif.camera_model"] == "Canon EOS R5"
    assert row["exif.capture_time"] == CAPTURE["capture_time"]


def test_exif_is_in_the_default_table_its_csv_export_and_one_images_features(api):
    session = new_session(api)
    record = upload(api, session, ("a.jpg", photo(exif=camera_exif()))).json()["accepted"][0]
    assert "exif.camera_model" in table(api, session)["columns"]
    csv_text = api.get("/api/features", params={"session_id": session, "format": "csv"}).text
    (row,) = csv.DictReader(io.StringIO(csv_text))
    assert row["exif.lens"] == "RF50mm F1.8 STM" and float(row["exif.exposure_time_s"]) == 0.004
    one = api.get(f"/api/images/{record['id']}/features", params={"session_id": session}).json()
    assert one["exif"]["iso"] == 400


def test_where_a_photo_was_taken_is_absent_by_default_everywhere(api):
    session = new_session(api)
    record = upload(api, session, ("a.jpg", photo(exif=camera_exif()))).json()["accepted"][0]
    default = table(api, session)
    assert not [column for column in default["columns"] if "gps" in column or "latitude" in column]
    for params in ({}, {"format": "csv"}):
        text = api.get("/api/features", params={"session_id": session, **params}).text
        assert "48.85" not in text and "latitude" not in text
    one = api.get(f"/api/images/{record['id']}/features", params={"session_id": session}).json()
    assert "exif_gps" not in one


def test_where_a_photo_was_taken_is_there_when_asked_for(api):
    session = new_session(api)
    upload(api, session, ("paris.jpg", photo(exif=camera_exif())), ("south.jpg", photo(exif=camera_exif(True))))
    rows = {row["filename"]: row for row in table(api, session, groups="exif_gps")["rows"]}
    paris = {name: rows["paris.jpg"][f"exif_gps.{name}"] for name in PARIS}
    south = {name: rows["south.jpg"][f"exif_gps.{name}"] for name in PARIS}
    assert paris == pytest.approx(PARIS)
    assert south == pytest.approx({name: -value for name, value in PARIS.items()})  # S, W, below sea level


def test_an_image_without_exif_has_empty_columns(api):
    session = new_session(api)
    upload(api, session, ("plain.png", photo("PNG")))
    (row,) = table(api, session, groups="exif,exif_gps")["rows"]
    assert all(value is None for column, value in row.items() if column.startswith("exif"))


def test_odd_values_are_null_or_cleaned_never_an_error():
    exif = camera_exif(
        DateTimeOriginal="0000:00:00 00:00:00",  # cameras write this when the clock was never set
        FNumber=IFDRational(0, 0),  # not a number
        FocalLength=IFDRational(-5, 1),
        LensModel="RF50mm\x07\x08 F1.8 " + "x" * 500,  # control characters, and far too long
    )
    values = compute_features(photo(exif=exif), ["exif"])["exif"]
    assert values["capture_time"] is None and values["f_number"] is None and values["focal_length_mm"] is None
    assert values["lens"].startswith("RF50mm F1.8 x") and len(values["lens"]) == MAX_TEXT_CHARS
    assert values["iso"] == 400  # the rest is still read


def test_damaged_exif_gives_empty_columns_not_an_error():
    good = photo(exif=camera_exif())
    start = good.index(b"Exif\x00\x00")
    damaged = good[: start + 14] + b"\xff" * 40 + good[start + 54 :]  # IFD0 entries overwritten
    values = compute_features(damaged, ["exif", "exif_gps"])
    assert set(values["exif"]) == set(CAPTURE) and set(values["exif_gps"]) == set(PARIS)


@pytest.mark.parametrize("orientation", [1, 6])  # 6: turned upright, which makes Pillow rewrite the EXIF
def test_the_gps_tags_never_reach_a_log(caplog, orientation):
    exif = camera_exif()
    exif[Base.Orientation] = orientation
    data = photo(exif=exif)
    with caplog.at_level(logging.DEBUG):
        values = compute_features(data, ["exif", "exif_gps"])
    assert values["exif_gps"]["latitude"] == pytest.approx(PARIS["latitude"])
    assert not [record for record in caplog.records if COORDINATES in record.getMessage()]
    caplog.clear()
    with caplog.at_level(logging.DEBUG):  # the control: Pillow itself logs them at DEBUG
        Image.open(io.BytesIO(data)).getexif().get_ifd(IFD.GPSInfo)
    assert [record for record in caplog.records if COORDINATES in record.getMessage()]
