"""The CLI's way to a running service: its HTTP API, signed in with ``$PUSHBUILD_TOKEN``.

The token comes from the environment only, never a command-line flag (which ``ps`` and shell
histories show), and is never printed.
"""

from __future__ import annotations

from typing import Any

import requests

from .errors import PushbuildError

URL_ENV = "PUSHBUILD_URL"
TOKEN_ENV = "PUSHBUILD_TOKEN"
#: Seconds to wait for an answer (a followed log waits longer: it is read as it comes).
TIMEOUT_S = 30.0


class ApiError(PushbuildError):
    """The service refused or failed a request; ``message`` is its JSON error, or why it could not be asked."""


class Client:
    """A signed-in client of one pushbuild service."""

    def __init__(self, url: str, token: str | None) -> None:
        if not token:
            raise ApiError(f"set {TOKEN_ENV} to a token of {url} (an operate token to change anything)")
        self.url = url.rstrip("/")
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"

    def call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """Send one request; return its JSON object, or raise :class:`ApiError` with the service's message."""
        response = self._send(method, path, timeout=TIMEOUT_S, **kwargs)
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code >= 400:
            raise ApiError(f"{self.url} answered {response.status_code}: {body.get('error') or response.reason}")
        return body

    def log_page(self, build_id: int, after: int) -> tuple[str, int, bool]:
        """Return the next page of a build's log after cursor ``after``: its text, the next cursor, and whether more is stored."""
        response = self._send("GET", f"/api/builds/{build_id}/log", params={"after": after}, timeout=TIMEOUT_S)
        if response.status_code >= 400:
            raise ApiError(f"{self.url} answered {response.status_code} for the log of build {build_id}")
        response.encoding = "utf-8"
        return (response.text, int(response.headers.get("X-Log-Cursor", after)),
                response.headers.get("X-Log-More") == "1")

    def _send(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        try:
            return self.session.request(method, f"{self.url}{path}", **kwargs)
        except requests.RequestException as exc:
            raise ApiError(f"cannot reach {self.url}: {type(exc).__name__}") from exc
