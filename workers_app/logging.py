"""Log formatters that keep one record to one line, and the log setup of ``runworker_tq``.

Log lines carry text clients control (task errors, paths, ids); a line break in it could
forge a record. ``TextFormatter`` escapes control characters in the formatted message and
indents traceback lines; ``JsonFormatter`` writes one JSON object (all escaped) per line.
"""

from __future__ import annotations

import json
import logging
import sys
import time

_EXTRA = ("task_id", "worker_id")

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_ESCAPES = {
    code: _NAMED.get(chr(code), f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
    for code in (*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029)
}
CONTINUATION = "  | "
"""The start of every traceback line, so that none can pass for a record of its own."""


def escape_controls(text: str) -> str:
    """``text`` on one line: C0 and C1 control characters, DEL and the Unicode line and
    paragraph separators become escapes such as ``\\n``, ``\\x1b``, ``\\u2028``."""
    return text.translate(_ESCAPES)


def continued(text: str) -> str:
    """A traceback (or stack) under its record: each line escaped and after CONTINUATION."""
    return "\n".join(CONTINUATION + escape_controls(line) for line in text.split("\n"))


class TextFormatter(logging.Formatter):
    """A ``logging.Formatter`` whose records cannot forge others: the formatted message
    (with every argument interpolated into it) is escaped onto one line, and traceback
    and stack lines follow it indented with CONTINUATION.

    For a site's LOGGING: ``"formatters": {"text": {"class":
    "workers_app.logging.TextFormatter", "format": "%(asctime)s %(levelname)s %(message)s"}}``.
    """

    def format(self, record: logging.LogRecord) -> str:
        """The record's line, then its traceback and stack, if any, indented."""
        record.message = record.getMessage()
        if self.usesTime():
            record.asctime = self.formatTime(record, self.datefmt)
        parts = [escape_controls(self.formatMessage(record))]
        if record.exc_info:
            parts.append(continued(self.formatException(record.exc_info)))
        elif record.exc_text:
            parts.append(continued(record.exc_text))
        if record.stack_info:
            parts.append(continued(self.formatStack(record.stack_info)))
        return "\n".join(parts)


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        for name in _EXTRA:
            if hasattr(record, name):
                out[name] = getattr(record, name)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out)


def configure(level: str, fmt: str) -> None:
    """Send the ``taskqueue`` loggers to stderr in the given format."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter(
            "%(asctime)s %(levelname)s [%(processName)s] %(message)s"))
    logger = logging.getLogger("taskqueue")
    logger.handlers[:] = [handler]
    logger.setLevel(level.upper())
    logger.propagate = False
