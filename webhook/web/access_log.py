"""gunicorn's access log, safe to write what strangers send: control characters are escaped.

The path is logged decoded (without its query string, which may hold a sign-in token), so a
``%0a`` in it would otherwise start a forged line of its own.
"""

from __future__ import annotations

from typing import Any

from gunicorn import glogging

from ..redact import printable


class AccessLogger(glogging.Logger):
    """gunicorn's logger, with every access-log field made printable."""

    def atoms(self, resp: Any, req: Any, environ: Any, request_time: Any) -> dict[str, Any]:
        found = super().atoms(resp, req, environ, request_time)
        return {key: printable(value) if isinstance(value, str) else value for key, value in found.items()}
