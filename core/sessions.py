"""Session ids and the one ContextVar that carries the current session.

A session id is a bearer secret and (in disk mode) a directory name, so only the canonical
lowercase UUID4 form is accepted. ``CURRENT_SESSION_ID`` is set through ``session_scope`` in one place
per way in: ``SessionScope`` in ``core.api.session_middleware`` (once per API request or socket),
``PageSession`` in ``ui.routes`` (once per request to the page's token routes) and ``tab_scope`` in
``ui.session`` (once per UI event handler). No other module enters it.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_CANONICAL_UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")

CURRENT_SESSION_ID: ContextVar[str | None] = ContextVar("darkroom_current_session_id", default=None)
# What stands for "no session" (the legacy shared folder) where a key must be a string: budgets,
# shares, download slots. Never a valid session id.
LEGACY_KEY = "legacy"


class InvalidSessionId(ValueError):
    """The text given is not a canonical lowercase UUID4 (the message never repeats it)."""

    def __init__(self) -> None:
        super().__init__(
            "invalid session id: expected a lowercase UUID4 such as "
            "'3f2b8c1e-9a4d-4c7e-8f00-1234567890ab' (create one with POST /api/sessions)"
        )


def parse_session_id(raw: str) -> str:
    """Return ``raw`` if it is a canonical lowercase UUID4, else raise InvalidSessionId."""
    if not isinstance(raw, str) or _CANONICAL_UUID4.fullmatch(raw) is None:
        raise InvalidSessionId()
    return raw


def is_session_id(raw: object) -> bool:
    return isinstance(raw, str) and _CANONICAL_UUID4.fullmatch(raw) is not None


def new_session_id() -> str:
    """A fresh random session id (122 bits from the OS's CSPRNG)."""
    return str(uuid.uuid4())


@contextmanager
def session_scope(session_id: str | None) -> Iterator[str | None]:
    """Make ``session_id`` the current session inside the block (None: the legacy shared folder)."""
    if session_id is not None:
        parse_session_id(session_id)
    token = CURRENT_SESSION_ID.set(session_id)
    try:
        yield session_id
    finally:
        CURRENT_SESSION_ID.reset(token)


def current_session_id() -> str | None:
    return CURRENT_SESSION_ID.get()
