"""``POST /hooks/<forge>``: a delivery is answered here, in front of Flask, which answers every other request.

A forge's delivery is the one request strangers send at volume, and it needs nothing of Flask's:
no sign-in, no page, no cookie. Flask's request context, routing, hooks and error handlers were
about a sixth of a delivery's CPU time on this project's machine (without them: 1.18× the
requests a second, p99 0.83×, ``./dev bench --compare-with``), so :class:`Hooks` takes the request from the WSGI environ,
hands it to :func:`webhook.intake.receive`, and answers as the app would: the same JSON bodies,
statuses and errors, and the headers every answer of the app carries
(:data:`webhook.web.answer_headers.EVERY_ANSWER`). Each delivery is counted by outcome.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from werkzeug.exceptions import MethodNotAllowed
from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.wsgi import get_current_url

from .. import forges, links, outcomes
from ..errors import BadRequest, PayloadTooLarge, RequestError, SignatureError, UnknownForge, UnsupportedMediaType
from ..events import FORM_TYPE, JSON_TYPE, media_type
from ..intake import Intake
from ..intake import receive as receive_delivery
from ..services import Services
from ..worker import Dispatcher
from .answer_headers import EVERY_ANSWER
from .serving import Application

log = logging.getLogger(__name__)

PREFIX = "/hooks/"


class Hooks:
    """WSGI app: ``/hooks/<name>`` answered here, anything else passed to ``app`` (Flask's)."""

    def __init__(self, app: Application, services: Services, dispatcher: Dispatcher) -> None:
        self.app = app
        self.services = services
        self.dispatcher = dispatcher

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path: str = environ.get("PATH_INFO", "")
        name = path[len(PREFIX):] if path.startswith(PREFIX) else ""
        if not name or "/" in name:  # no forge's endpoint: Flask's 404
            return self.app(environ, start_response)
        if environ.get("REQUEST_METHOD") != "POST":
            return _answer(environ, start_response, 405, {"error": MethodNotAllowed.description}, ("Allow", "POST"))
        try:
            status, body = self.receive(name.encode("latin-1").decode("utf-8", "replace"), environ)  # PEP 3333's str
        except Exception:  # even counting or linking failed: the forge still gets JSON, and delivers again
            log.exception("unhandled error")
            status, body = 500, {"error": "internal error"}
        return _answer(environ, start_response, status, body)

    def receive(self, name: str, environ: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Answer a delivery: 202 with the build, 200 for ignored or duplicate ones, 4xx when refused; count each by outcome."""
        metrics = self.services.metrics
        try:
            forge = forges.forge(name)  # Forgejo and Gogs are Gitea
        except UnknownForge:
            metrics.delivery(None, outcomes.UNKNOWN_FORGE)
            return 404, {"error": f"no such forge endpoint: {name}"}
        try:
            taken = self._take(forge, environ)
        except RequestError as exc:
            metrics.delivery(forge.name, outcomes.refusal(exc))
            return exc.status, {"error": exc.message}
        except Exception as exc:  # a defect, the database down: the forge delivers again
            log.exception("unhandled error")
            metrics.delivery(forge.name, outcomes.refusal(exc))
            return 500, {"error": "internal error"}
        metrics.delivery(forge.name, taken.outcome)
        if taken.ignored is not None:
            return 200, {"ignored": taken.ignored}
        if not taken.created:
            return 200, {"duplicate": taken.builds[0].id}
        base = links.base_url(self.services.config.server.public_url, get_current_url(environ, host_only=True))
        return 202, {"build": taken.builds[0].id, "builds": [b.id for b in taken.builds],
                     "status_url": links.build_url(base, taken.builds[0].id)}

    def _take(self, forge: forges.Forge, environ: dict[str, Any]) -> Intake:
        services = self.services
        config = services.config
        content_type = environ.get("CONTENT_TYPE") or None
        if media_type(content_type) not in (JSON_TYPE, FORM_TYPE):
            raise UnsupportedMediaType(f"content type must be {JSON_TYPE} or {FORM_TYPE}")
        headers = _headers(environ)
        # Verify the raw bytes first (FORGES.md: a form body's fields are parsed after).
        return receive_delivery(config, services.store, self.dispatcher, forge, headers=headers,
                                body=delivery_body(environ, config.server.max_body_bytes), content_type=content_type,
                                now=time.time(), last=services.last_deliveries, recent=services.recent_pushes)


def _headers(environ: dict[str, Any]) -> dict[str, str]:
    """Return the request's headers with lowercased names, refusing a repeated signature header."""
    headers: dict[str, str] = {}
    for key, value in environ.items():
        if key.startswith("HTTP_") and key not in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"):
            name = key[5:].replace("_", "-").lower()
        elif key in ("CONTENT_TYPE", "CONTENT_LENGTH") and value:
            name = key.replace("_", "-").lower()
        else:  # as Werkzeug's request.headers
            continue
        if name in headers and name in forges.SIGNATURE_HEADERS:
            raise SignatureError(f"{name} header is repeated")
        headers.setdefault(name, value)
    return headers


def delivery_body(environ: dict[str, Any], max_bytes: int) -> bytes:
    """Read the raw body, at most ``max_bytes`` of it, whether it has a Content-Length or comes chunked.

    A chunked body has no length to refuse up front; reading one byte past the limit tells a
    whole body from a cut one.
    """
    raw = environ.get("CONTENT_LENGTH") or ""
    declared = int(raw) if raw.isascii() and raw.isdigit() else None
    if declared is not None and declared > max_bytes:
        raise PayloadTooLarge(f"body is larger than {max_bytes} bytes")
    data = environ["wsgi.input"].read(max_bytes + 1 if declared is None else declared)
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"body is larger than {max_bytes} bytes")
    if declared is not None and len(data) < declared:
        raise BadRequest("body is shorter than its Content-Length")
    return data


def _answer(environ: dict[str, Any], start_response: Callable[..., Any], status: int, body: dict[str, Any],
            *headers: tuple[str, str]) -> list[bytes]:
    """A JSON answer as Flask's ``jsonify`` makes it, with the headers every answer of the app carries (no body to a HEAD)."""
    data = json.dumps(body, separators=(",", ":"), sort_keys=True).encode() + b"\n"
    start_response(f"{status} {HTTP_STATUS_CODES[status].upper()}",
                   [("Content-Type", "application/json"), ("Content-Length", str(len(data))), *headers, *EVERY_ANSWER])
    return [] if environ.get("REQUEST_METHOD") == "HEAD" else [data]
