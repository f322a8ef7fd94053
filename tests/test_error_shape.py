"""One error shape: a ``DarkroomError`` carries status, detail, extra fields, ``Retry-After`` and
its WebSocket close code, and only ``core.api.errors`` turns it into an answer."""

from __future__ import annotations

import ast
import json
from pathlib import Path

from core.annotations import Annotations, RateLimited, StaleVersion
from core.api.errors import error_response, socket_error
from core.errors import (
    WS_MESSAGE_TOO_BIG,
    WS_POLICY_VIOLATION,
    WS_TRY_AGAIN_LATER,
    BadRequest,
    QuotaExceeded,
    RequestTimeout,
    ServiceBusy,
    TooLarge,
)

ROOT = Path(__file__).resolve().parent.parent
SHAPERS = {"core/api/errors.py", "core/errors.py"}


def test_a_stale_edit_answers_409_with_the_current_annotations_and_no_store() -> None:
    current = Annotations(rating=3, version=7)
    response = error_response(StaleVersion(current))
    assert response.status_code == 409
    body = json.loads(response.body)
    assert body["current"] == current.to_public() and "version 7" in body["detail"]
    assert response.headers["cache-control"] == "private, no-store"


def test_retry_after_is_whole_seconds_on_http_and_on_sockets() -> None:
    assert error_response(RateLimited(0.2)).headers["retry-after"] == "1"
    assert error_response(RateLimited(1.4)).headers["retry-after"] == "2"
    assert error_response(ServiceBusy("busy", retry_after=30)).headers["retry-after"] == "30"
    assert socket_error(ServiceBusy("busy", retry_after=30)) == {
        "type": "error",
        "status": 503,
        "detail": "busy",
        "retry_after": 30,
    }
    assert "retry-after" not in error_response(BadRequest("no")).headers
    assert "retry_after" not in socket_error(BadRequest("no"))


def test_socket_errors_carry_their_context_and_fields() -> None:
    message = socket_error(StaleVersion(Annotations(version=2)), image_id="abc")
    assert message["type"] == "error" and message["status"] == 409 and message["image_id"] == "abc"
    assert message["current"]["version"] == 2


def test_each_error_knows_its_close_code() -> None:
    assert TooLarge("x").close_code == QuotaExceeded("x").close_code == WS_MESSAGE_TOO_BIG
    assert ServiceBusy("x").close_code == WS_TRY_AGAIN_LATER
    assert BadRequest("x").close_code == RequestTimeout("x").close_code == WS_POLICY_VIOLATION


def _error_bodies_built_by_hand() -> list[str]:
    """Dict literals with a "detail" key outside the two modules that shape errors (an upload's
    report and its per-file results, which name files, are results, not errors)."""
    found = []
    for path in [*ROOT.joinpath("core").rglob("*.py"), *ROOT.joinpath("ui").rglob("*.py")]:
        name = path.relative_to(ROOT).as_posix()
        if name in SHAPERS:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Dict):
                keys = {k.value for k in node.keys if isinstance(k, ast.Constant)}
                if "detail" in keys and not keys & {"file", "filename", "accepted"}:
                    found.append(f"{name}:{node.lineno}")
    return found


def test_no_module_builds_an_error_body_by_hand() -> None:
    assert _error_bodies_built_by_hand() == []
