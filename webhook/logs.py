"""Process-wide logging: one line per event, with its ids, on standard error; and :data:`Log`, a build's."""

from __future__ import annotations

import logging
from collections.abc import Callable

#: Where a build's output goes, a piece of text at a time (the pipeline's log, redacted and stored).
#: It may raise (:class:`~webhook.errors.Cancelled`) to stop the build that is writing.
Log = Callable[[str], None]
FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def configure_logging(level: int = logging.INFO) -> None:
    """Log INFO and above to stderr, unless the host (gunicorn, a test runner) already configured logging."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=level, format=FORMAT)
    logging.getLogger("webhook").setLevel(level)
