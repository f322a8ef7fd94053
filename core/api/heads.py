"""Bounded request heads: uvicorn's httptools protocol with a size limit and a deadline on the head.

httptools (llhttp) puts no limit on the request line or the headers, and joins the pieces of a
header that arrives in many reads by concatenation: a 96 MiB header cost 15 s of CPU, quadratic in
its size. Nothing timed out a head that never finishes either. ``HeadLimitedProtocol`` counts the
bytes of each head as they are read, before the parser has joined more than one read past the limit:

- a head larger than ``max_head_bytes`` gets 431 and the connection is closed, so the parser never
  holds more than the limit plus one read (asyncio reads at most 256 KiB at a time);
- a head not complete ``head_timeout_seconds`` after it began (after the connection opened, for the
  first request) is closed; a keep-alive request gets its own size and deadline.

The hot path (a head that arrives in one read) costs a few attribute writes per request; the timer
is only armed when a head spans reads. Use it as ``uvicorn.run(app, http=head_limited_protocol(settings))``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from core.config import Settings
from core.errors import HeadTooLarge
from core.units import format_bytes

HEAD_TOO_LARGE_STATUS = HeadTooLarge.status_code
# Separators a parsed head no longer holds: "METHOD SP ... SP HTTP/1.1 CRLF" and ": " + CRLF per header.
_REQUEST_LINE_SEPARATORS = 20
_HEADER_SEPARATORS = 4


def _head_too_large_body(max_head_bytes: int) -> bytes:
    detail = (
        f"The request line and headers are larger than {format_bytes(max_head_bytes)}; "
        "send fewer or shorter headers (cookies, a long URL)."
    )
    return json.dumps(HeadTooLarge(detail).body()).encode("utf-8")


def _head_too_large_response(body: bytes) -> bytes:
    """The whole 431 response, for a head refused before it is complete (there is no request yet)."""
    return (
        b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
        b"content-type: application/json\r\n"
        b"content-length: %d\r\n"
        b"connection: close\r\n\r\n%s" % (len(body), body)
    )


class HeadLimitedProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` that refuses request heads over ``max_head_bytes`` with 431 and
    closes a connection whose head is not complete within ``head_timeout_seconds``.

    Subclass it with ``with_limits`` (uvicorn builds the protocol itself, so the limits are class
    attributes). It overrides only uvicorn's documented protocol and parser callbacks and calls
    each original; everything else (keep-alive, pipelining, WebSocket upgrades) is uvicorn's."""

    max_head_bytes: ClassVar[int] = Settings.max_head_bytes
    head_timeout_seconds: ClassVar[float] = Settings.head_timeout_seconds
    _refusal_body: ClassVar[bytes] = _head_too_large_body(Settings.max_head_bytes)

    @classmethod
    def with_limits(cls, max_head_bytes: int, head_timeout_seconds: float) -> type[HeadLimitedProtocol]:
        """A subclass with these limits, to pass to uvicorn as ``http=``."""
        attributes = {
            "max_head_bytes": max_head_bytes,
            "head_timeout_seconds": head_timeout_seconds,
            "_refusal_body": _head_too_large_body(max_head_bytes),
        }
        return type(cls.__name__, (cls,), attributes)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_open = True  # from the connection's first byte until a head is complete
        self._head_bytes = 0  # bytes of the open head read before the current read
        self._head_spans_reads = False
        self._read_bytes = 0  # size of the read being parsed
        self._head_deadline: asyncio.TimerHandle | None = None

    # asyncio protocol

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._read_bytes = len(data)
        super().data_received(data)
        if self._head_open and not self.transport.is_closing():
            self._head_continues(len(data))

    # httptools parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_open = True
        self._head_bytes = 0
        self._head_spans_reads = False

    def on_headers_complete(self) -> None:
        self._head_open = False
        if self._head_deadline is not None:
            self._cancel_head_deadline()
        # a head that came in one read no larger than the limit is within it (the hot path)
        if (not self._head_spans_reads and self._read_bytes <= self.max_head_bytes) or not self._head_over_limit():
            super().on_headers_complete()
        elif self.parser.should_upgrade():
            self._refuse_head()  # the upgrade that follows finds the transport closing
        else:
            app, self.app = self.app, self._refuse_complete_head
            try:  # uvicorn's own request cycle answers, so the body that follows is read as usual
                super().on_headers_complete()
            finally:
                self.app = app

    def handle_websocket_upgrade(self) -> None:
        if not self.transport.is_closing():  # a refused head is never upgraded
            super().handle_websocket_upgrade()

    # the limits

    def _head_continues(self, read_bytes: int) -> None:
        """A head is still open after a read: count the read, refuse past the limit, start the clock."""
        # The first read of a keep-alive request may hold the previous request's tail: it is not
        # counted (at most one read), so nothing is refused for bytes that are not its head; the
        # complete head is measured exactly.
        if self._head_spans_reads or self.cycle is None:
            self._head_bytes += read_bytes
        self._head_spans_reads = True
        if self._head_bytes > self.max_head_bytes:
            self._refuse_head()
        else:
            self._arm_head_deadline()

    def _head_over_limit(self) -> bool:
        """Whether the head just completed, in more than one read or one larger than the limit, is
        larger than the limit, measured as parsed."""
        size = len(self.url) + _REQUEST_LINE_SEPARATORS
        for name, value in self.headers:
            size += len(name) + len(value) + _HEADER_SEPARATORS
        return size > self.max_head_bytes

    def _refuse_head(self) -> None:
        self.logger.warning("Request head over %s refused (431).", format_bytes(self.max_head_bytes))
        self.transport.write(_head_too_large_response(self._refusal_body))
        self.transport.close()

    async def _refuse_complete_head(self, scope: Any, receive: Any, send: Any) -> None:
        """The ASGI answer to a complete head over the limit: 431, then the connection closes."""
        self.logger.warning("Request head over %s refused (431).", format_bytes(self.max_head_bytes))
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(self._refusal_body)).encode("ascii")),
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": HEAD_TOO_LARGE_STATUS, "headers": headers})
        await send({"type": "http.response.body", "body": self._refusal_body})

    def _arm_head_deadline(self) -> None:
        if self._head_deadline is None:
            self._head_deadline = self.loop.call_later(self.head_timeout_seconds, self._close_unfinished_head)

    def _cancel_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _close_unfinished_head(self) -> None:
        self._head_deadline = None
        if not self.transport.is_closing():
            self.logger.info("Request head not complete within %s s: connection closed.", self.head_timeout_seconds)
            self.transport.close()


def head_limited_protocol(settings: Settings) -> type[HeadLimitedProtocol]:
    """The uvicorn ``http=`` protocol enforcing ``settings.max_head_bytes`` and
    ``settings.head_timeout_seconds``."""
    return HeadLimitedProtocol.with_limits(settings.max_head_bytes, settings.head_timeout_seconds)
