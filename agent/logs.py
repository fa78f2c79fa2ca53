"""Structured logs on stderr: one JSON object per line.

When ``JOURNAL_STREAM`` is set (stderr is connected to journald), each line is
prefixed with its syslog priority (``<3>`` … ``<7>``) so journald records the
level. Log records must never carry card data or secrets; callers pass masked
values only, and :func:`redact` is applied to every message as a last guard.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any, TextIO

from .carddata import redact

_SYSLOG_PRIORITY = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}
_STANDARD_ATTRS = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}


class StructuredFormatter(logging.Formatter):
    """Formats a record as one JSON line; extra= fields become keys."""

    def __init__(self, syslog_prefix: bool) -> None:
        super().__init__()
        self.syslog_prefix = syslog_prefix

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                doc[key] = redact(value) if isinstance(value, str) else value
        if record.exc_info:
            doc["exc"] = redact(self.formatException(record.exc_info))
        line = json.dumps(doc, default=str, ensure_ascii=False)
        if self.syslog_prefix:
            level = max(lvl for lvl in _SYSLOG_PRIORITY if lvl <= max(record.levelno, 10))
            line = f"<{_SYSLOG_PRIORITY[level]}>{line}"
        return line


def configure_logging(level: str = "warning", stream: TextIO | None = None) -> None:
    """Route the ``posedge`` loggers to stderr as structured lines."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(StructuredFormatter(syslog_prefix=bool(os.environ.get("JOURNAL_STREAM"))))
    root = logging.getLogger("posedge")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
