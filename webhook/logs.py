"""Process-wide logging: one line per event on standard error, readable or JSON; and :data:`Log`, a build's.

``[server] log_format = "json"`` writes one JSON object a line (``time``, ``level``, ``logger``,
``message``, and, where they apply, ``build``, ``repo``, ``forge`` and ``delivery``) for a log
collector; the readable format is the default. What a line is about comes from
:func:`log_context`, which intake sets for a delivery and the worker for a build.
"""

from __future__ import annotations

import contextvars
import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from .timestamps import rfc3339

#: Where a build's output goes, a piece of text at a time (the pipeline's log, redacted and stored).
#: It may raise (:class:`~webhook.errors.Cancelled`) to stop the build that is writing.
Log = Callable[[str], None]
FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
FORMATS = ("text", "json")

#: The fields the current build or delivery adds to each line, as (name, value) pairs.
_context: contextvars.ContextVar[tuple[tuple[str, object], ...]] = contextvars.ContextVar("pushbuild_log", default=())


@contextmanager
def log_context(**fields: object) -> Iterator[None]:
    """Say, for the lines logged inside, which build, repository, forge or delivery they are about."""
    merged = dict(_context.get()) | {name: value for name, value in fields.items() if value is not None}
    token = _context.set(tuple(merged.items()))
    try:
        yield
    finally:
        _context.reset(token)


class JsonFormatter(logging.Formatter):
    """One JSON object a line: the event, and what it is about."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {"time": rfc3339(record.created), "level": record.levelname,
                                    "logger": record.name, "message": record.getMessage(), **dict(_context.get())}
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging(level: int = logging.INFO, *, log_format: str = "text") -> None:
    """Log INFO and above to stderr, unless the host (gunicorn, a test runner) already configured logging."""
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(FORMAT))
        root.addHandler(handler)
        root.setLevel(level)
    logging.getLogger("webhook").setLevel(level)
