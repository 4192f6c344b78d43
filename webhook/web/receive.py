"""``POST /hooks/<forge>``: read a delivery off the request, hand it to :func:`webhook.intake.receive`, answer."""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import Blueprint, Request, current_app, jsonify, request

from .. import forges, links, outcomes
from ..errors import BadRequest, NotFound, PayloadTooLarge, SignatureError, UnknownForge, UnsupportedMediaType
from ..events import FORM_TYPE, JSON_TYPE, media_type
from ..intake import receive as receive_delivery
from ..services import Services

bp = Blueprint("hooks", __name__, url_prefix="/hooks")
log = logging.getLogger(__name__)


def _headers(req: Request) -> dict[str, str]:
    """Return the headers with lowercased names, refusing a repeated signature header."""
    headers: dict[str, str] = {}
    for name, value in req.headers.items():
        name = name.lower()
        if name in headers and name in forges.SIGNATURE_HEADERS:
            raise SignatureError(f"{name} header is repeated")
        headers.setdefault(name, value)
    return headers


def _body(max_bytes: int) -> bytes:
    """Read the raw body, at most ``max_bytes`` of it, whether it has a Content-Length or comes chunked.

    A chunked body has no length to refuse up front, and Werkzeug would cut it to the limit
    without a word; reading one byte past the limit tells a whole body from a cut one.
    """
    declared = request.content_length
    if declared is not None and declared > max_bytes:
        raise PayloadTooLarge(f"body is larger than {max_bytes} bytes")
    data = request.environ["wsgi.input"].read(max_bytes + 1 if declared is None else declared)
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"body is larger than {max_bytes} bytes")
    if declared is not None and len(data) < declared:
        raise BadRequest("body is shorter than its Content-Length")
    return data


@bp.post("/<name>")
def receive(name: str) -> Any:
    """Answer a delivery: 202 with the build, 200 for ignored or duplicate ones, 4xx when refused; count each by outcome."""
    metrics = current_app.extensions["pushbuild"].metrics
    try:
        forge = forges.forge(name)  # Forgejo and Gogs are Gitea
    except UnknownForge:
        metrics.delivery(None, outcomes.UNKNOWN_FORGE)
        raise NotFound(f"no such forge endpoint: {name}") from None
    try:
        answer, outcome = _answer(forge)
    except Exception as exc:
        metrics.delivery(forge.name, outcomes.refusal(exc))
        raise
    metrics.delivery(forge.name, outcome)
    return answer


def _answer(forge: forges.Forge) -> tuple[Any, str]:
    """Take the delivery in; return the answer and its outcome (:mod:`webhook.outcomes`)."""
    services: Services = current_app.extensions["pushbuild"]
    config = services.config
    if media_type(request.content_type) not in (JSON_TYPE, FORM_TYPE):
        raise UnsupportedMediaType(f"content type must be {JSON_TYPE} or {FORM_TYPE}")
    headers = _headers(request)
    # Verify the raw bytes first (FORGES.md: request.data is empty for form bodies).
    taken = receive_delivery(config, services.store, current_app.extensions["pushbuild.dispatcher"], forge,
                             headers=headers, body=_body(config.server.max_body_bytes),
                             content_type=request.content_type, now=time.time(), last=services.last_deliveries,
                             recent=services.recent_pushes)
    if taken.ignored is not None:
        return (jsonify(ignored=taken.ignored), 200), taken.outcome
    if not taken.created:
        return (jsonify(duplicate=taken.builds[0].id), 200), taken.outcome
    return (jsonify(build=taken.builds[0].id, builds=[b.id for b in taken.builds],
                    status_url=links.build_url(links.base_url(config.server.public_url, request.host_url),
                                               taken.builds[0].id)), 202), taken.outcome
