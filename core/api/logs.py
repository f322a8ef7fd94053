"""Keep session ids out of every log line, uvicorn's access and WebSocket lines included."""

from __future__ import annotations

import logging
import re

_UUID = re.compile(r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}")
REDACTED = "<redacted>"
_LOGGERS = ("uvicorn", "uvicorn.access", "uvicorn.error", "fastapi", "nicegui", "core", "ui")


class RedactSessionIds(logging.Filter):
    """Replaces anything shaped like a UUID in a record's final message."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001  a malformed record is passed on untouched
            return True
        if _UUID.search(message):
            record.msg = _UUID.sub(REDACTED, message)
            record.args = None
        return True


_FILTER = RedactSessionIds()


def install_log_redaction() -> None:
    """Attach the filter to our loggers and to every handler of the root and uvicorn loggers
    (a filter on a logger does not see records propagated from its children; one on a handler does)."""
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
        for handler in logger.handlers:
            if _FILTER not in handler.filters:
                handler.addFilter(_FILTER)
    for handler in logging.getLogger().handlers:
        if _FILTER not in handler.filters:
            handler.addFilter(_FILTER)
