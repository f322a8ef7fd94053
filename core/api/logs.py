"""Keep session ids out of every log line, uvicorn's access and WebSocket lines included."""

from __future__ import annotations

import logging
import re

_UUID = re.compile(r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}")
REDACTED = "<redacted>"
_LOGGERS = ("uvicorn", "uvicorn.access", "uvicorn.error", "fastapi", "nicegui", "core", "ui")


def _redact(value: object) -> object:
    return _UUID.sub(REDACTED, value) if isinstance(value, str) else value


class RedactSessionIds(logging.Filter):
    """Replaces anything shaped like a UUID in a record's message and arguments. The arguments
    keep their shape: uvicorn's access formatter unpacks them."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = _redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_redact(arg) for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {key: _redact(arg) for key, arg in record.args.items()}
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
