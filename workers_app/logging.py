"""Log formatters that keep one record to one line, and the log setup of ``runworker_tq``.

Log lines carry text clients control (task errors, paths, ids); a line break in it could
forge a record. ``TextFormatter`` escapes control characters in the formatted message and
indents traceback lines; in JSON (python-json-logger) every string is escaped anyway.
"""

from __future__ import annotations

import logging
import logging.config
from typing import Any

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


JSON_FORMATTER: dict[str, Any] = {
    "()": "pythonjsonlogger.json.JsonFormatter",
    "fmt": "%(levelname)s %(name)s %(process)d %(message)s",
    "rename_fields": {"levelname": "level", "name": "logger", "process": "pid",
                      "exc_info": "exc"},
    "timestamp": "ts",
}
"""python-json-logger: one JSON object a line with ``ts level logger pid message``, any
``extra`` (``task_id``, ``worker_id``) and the traceback as ``exc``; all of it escaped."""

TEXT_FORMATTER: dict[str, Any] = {
    "class": "workers_app.logging.TextFormatter",
    "format": "%(asctime)s %(levelname)s [%(processName)s] %(message)s",
}
APP_LOGGERS = ("tasks_app", "workers_app")


def logging_config(level: str, fmt: str) -> dict[str, Any]:
    """The ``logging.dictConfig`` of ``runworker_tq --log-level LEVEL --log-format FMT``.

    ``json``: every record of the process, whatever its logger, goes as JSON to one stderr
    handler on the root logger (loggers with handlers of their own, the site's LOGGING and
    Django's defaults included, hand their records to it instead). ``text``: the app's
    loggers write to stderr with :class:`TextFormatter`; the site's LOGGING keeps the rest.
    """
    handler = {"class": "logging.StreamHandler", "stream": "ext://sys.stderr",
               "formatter": "taskqueue"}
    app = {"level": level.upper(), "handlers": [], "propagate": True}
    config: dict[str, Any] = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"taskqueue": JSON_FORMATTER if fmt == "json" else TEXT_FORMATTER},
        "handlers": {"taskqueue": handler},
        "loggers": {name: dict(app) for name in APP_LOGGERS},
    }
    if fmt == "json":
        config["root"] = {"handlers": ["taskqueue"]}
        for name in _loggers_with_handlers():
            config["loggers"].setdefault(name, {"handlers": [], "propagate": True})
    else:
        for name in APP_LOGGERS:
            config["loggers"][name].update(handlers=["taskqueue"], propagate=False)
    return config


def _loggers_with_handlers() -> list[str]:
    manager = logging.Logger.manager
    return [name for name, logger in list(manager.loggerDict.items())
            if isinstance(logger, logging.Logger) and logger.handlers]


def configure(level: str, fmt: str) -> None:
    """Apply :func:`logging_config` to this process."""
    logging.config.dictConfig(logging_config(level, fmt))
