"""Process-wide logging: one line per event, with its ids, on standard error."""

from __future__ import annotations

import logging

FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def configure_logging(level: int = logging.INFO) -> None:
    """Log INFO and above to stderr, unless the host (gunicorn, a test runner) already configured logging."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=level, format=FORMAT)
    logging.getLogger("webhook").setLevel(level)
