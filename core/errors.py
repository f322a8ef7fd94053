"""Failures a user can act on, each with the HTTP status the API answers with.

Messages are plain words for the person who sent the input; they never contain a session id. An
error carries its whole shape: ``status_code``, the ``detail`` message, extra body ``fields``,
``retry_after`` (the ``Retry-After`` header) and ``close_code``, what a WebSocket it ends closes
with. ``core.api.errors`` turns it into a response or a socket message, the only place that does.
"""

from __future__ import annotations

import math
from typing import Any, Self

WS_POLICY_VIOLATION = 1008  # RFC 6455 close codes
WS_MESSAGE_TOO_BIG = 1009
WS_TRY_AGAIN_LATER = 1013  # starlette.status has no name for it


class DarkroomError(Exception):
    """Base class: ``status_code`` is what the API answers, ``str(error)`` is the ``detail``."""

    status_code = 400
    close_code = WS_POLICY_VIOLATION
    retry_after: float | None = None  # seconds; set: the answer says when to try again

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def with_message(self, message: str) -> Self:
        """The same error (class and every attribute, such as ``retry_after``) with a new message."""
        copy = type(self).__new__(type(self))
        copy.__dict__.update(self.__dict__)
        copy.args = (message,)
        copy.message = message
        return copy

    @property
    def fields(self) -> dict[str, Any]:
        """Fields of the error's body beside ``detail`` (409: the ``current`` annotations)."""
        return {}

    def body(self) -> dict[str, Any]:
        return {"detail": self.message, **self.fields}

    @property
    def retry_after_seconds(self) -> int | None:
        """``retry_after`` as the answer says it: whole seconds, at least 1 (None: not set)."""
        return None if self.retry_after is None else max(1, math.ceil(self.retry_after))

    @property
    def headers(self) -> dict[str, str]:
        """Extra response headers: ``Retry-After`` when set."""
        seconds = self.retry_after_seconds
        return {} if seconds is None else {"Retry-After": str(seconds)}


class InternalError(DarkroomError):
    """A bug, not the client's doing: 500, with no detail of what went wrong."""

    status_code = 500


class BadRequest(DarkroomError):
    status_code = 400


class HeadTooLarge(DarkroomError):
    """A request line plus headers over the server's limit (answered by the protocol, not a route)."""

    status_code = 431


class NotFound(DarkroomError):
    status_code = 404


class RequestTimeout(DarkroomError):
    """An upload's bytes stopped arriving, or arrived slower than the server's minimum rate."""

    status_code = 408


class ClientGone(DarkroomError):
    """The client closed the connection before its upload was complete (nobody reads the answer)."""

    status_code = 400


class TooLarge(DarkroomError):
    """A file, image, archive or upload is over a configured limit."""

    status_code = 413
    close_code = WS_MESSAGE_TOO_BIG


class QuotaExceeded(TooLarge):
    """The session's byte quota would be exceeded."""


class UnsupportedImage(DarkroomError):
    """Not an image, or an image format outside the allow-list."""

    status_code = 415


class CorruptImage(DarkroomError):
    """An allowed format whose data cannot be decoded (truncated, damaged)."""

    status_code = 422


class UnsafeArchive(DarkroomError):
    """A ZIP refused as a whole: not a ZIP, unsafe paths, links, encryption, odd compression."""

    status_code = 422


class CapacityExceeded(DarkroomError):
    """The server's memory cap for all sessions together is reached."""

    status_code = 507


class ServiceBusy(DarkroomError):
    """The server cannot take this work right now (decode queue full, session cap, shutting down);
    the client should retry after ``retry_after`` seconds."""

    status_code = 503
    close_code = WS_TRY_AGAIN_LATER
    retry_after: int

    def __init__(self, message: str, retry_after: int = 2) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def __reduce__(self) -> tuple[object, ...]:  # crosses process boundaries intact
        return (type(self), (self.message, self.retry_after))
