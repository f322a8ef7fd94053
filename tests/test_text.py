"""One rule for typed text (``core.text``): names, tags, notes and file names lose control and
format characters (bidi overrides, zero-width characters), through the API as in the code."""

from __future__ import annotations

import json

import pytest
from websockets.sync.client import connect

from core.ingest import clean_filename
from core.text import clean_text, one_line
from tests.helpers import make_jpeg, new_session, upload

RLO = "\u202e"  # RIGHT-TO-LEFT OVERRIDE: "\u202egpj.exe" shows as "exe.jpg"
FORMAT_CHARACTERS = [
    "\u202e",  # right-to-left override
    "\u202d",  # left-to-right override
    "\u2066",  # left-to-right isolate
    "\u061c",  # Arabic letter mark
    "\u200b",  # zero width space
    "\u200c",  # zero width non-joiner
    "\u200d",  # zero width joiner
    "\u2060",  # word joiner
    "\ufeff",  # byte order mark
    "\u00ad",  # soft hyphen
]


@pytest.mark.parametrize("character", FORMAT_CHARACTERS)
def test_format_characters_are_removed_everywhere(character):
    typed = f"ca{character}t"
    assert clean_text(typed) == "cat"
    assert one_line(typed) == "cat"
    assert clean_filename(f"ca{character}t.jpg") == "cat.jpg"


def test_a_bidi_trick_loses_its_override_and_keeps_its_letters():
    assert one_line(f"{RLO}gpj.exe") == "gpj.exe"


def test_control_characters_go_and_a_note_keeps_its_lines():
    assert clean_text("a\x00b\x1b\u2028c\u2029d\ue000e") == "abcde"  # controls, separators, private use
    assert clean_text("line one\n\tline two\x07", keep="\n\t") == "line one\n\tline two"
    assert one_line("  two\t\nwords \u200b ") == "two words"


def test_text_is_nfc_after_the_removal_so_an_accent_stays_on_its_letter():
    assert clean_text("e\u200b\u0301") == "\u00e9"  # é, one code point


def test_a_tag_and_a_note_lose_format_characters_through_the_api(api):
    session = new_session(api)
    image_id = upload(api, session, ("a.jpg", make_jpeg(seed=1))).json()["accepted"][0]["id"]
    response = api.patch(
        f"/api/images/{image_id}/annotations",
        params={"session_id": session},
        json={"tags_add": [f"{RLO}gpj.exe", "zero\u200bwidth"], "note": "keep\u2060 this\nline\ufeff"},
    )
    assert response.status_code == 200, response.text
    stored = api.get(f"/api/images/{image_id}/annotations", params={"session_id": session}).json()
    assert stored["tags"] == ["gpj.exe", "zerowidth"]
    assert stored["note"] == "keep this\nline"


def test_a_tag_of_only_format_characters_is_refused_as_empty(api):
    session = new_session(api)
    image_id = upload(api, session, ("a.jpg", make_jpeg(seed=2))).json()["accepted"][0]["id"]
    response = api.patch(
        f"/api/images/{image_id}/annotations", params={"session_id": session}, json={"tags_add": ["\u200b\u202e"]}
    )
    assert response.status_code == 422 and "empty" in response.json()["detail"]


def test_a_presence_name_and_a_file_name_lose_format_characters_through_the_api(api, live_server):
    session = new_session(api)
    accepted = upload(api, session, (f"holiday{RLO}gpj.exe", make_jpeg(seed=3))).json()["accepted"]
    assert accepted[0]["filename"] == "holidaygpj.exe"
    url = f"{live_server.ws_url}/api/ws/events?session_id={session}&name=Night%E2%80%AEly"
    with connect(url, compression=None) as ws:
        hello = json.loads(ws.recv(timeout=10))
        assert hello["you"]["name"] == "Nightly"
        ws.send(json.dumps({"type": "rename", "name": "Re\u200bnamed"}))
        names = []
        for _ in range(20):  # the join's own presence_changed may come first
            message = json.loads(ws.recv(timeout=10))
            if message["type"] == "presence_changed":
                names = [m["name"] for m in message["members"]]
                if names != ["Nightly"]:
                    break
        assert names == ["Renamed"]
