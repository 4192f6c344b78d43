"""pushbuild: signed push webhooks in, images tagged with the commit SHA out.

:func:`create_app` is the composition root of the web process; gunicorn runs
``webhook:create_app()``. Importing this package imports nothing else: gunicorn's master loads
the worker class and settings from it before its gevent workers monkey-patch the standard
library, and a module imported before that patch (GitPython's subprocess use, psycopg's waits)
would keep the unpatched, blocking originals.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask

    from .config import Config
    from .worker import Dispatcher


def create_app(test_config: Config | None = None, *, dispatcher: Dispatcher | None = None) -> Flask:
    """Create the web app from ``test_config``, or from ``$PUSHBUILD_CONFIG`` (defaults if unset)."""
    from .web.app import create_app as create

    return create(test_config, dispatcher=dispatcher)
