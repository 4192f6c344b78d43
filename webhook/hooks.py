"""``POST /hooks/<forge>``: verify a push delivery, record it, queue the build. No slow work here."""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import Blueprint, Request, current_app, jsonify, request

from . import defaults
from .api import public_base
from .errors import NotFound, SignatureError, UnsupportedMediaType
from .events import FORM_TYPE, JSON_TYPE, PARSERS, Ignored, PushEvent, decode_body, media_type
from .forges import FORGES, SIGNATURE_HEADERS, Clock, signed_for
from .refs import matches_any
from .services import Services

bp = Blueprint("hooks", __name__, url_prefix="/hooks")
log = logging.getLogger(__name__)


def _headers(req: Request) -> dict[str, str]:
    """Return the headers with lowercased names, refusing a repeated signature header."""
    headers: dict[str, str] = {}
    for name, value in req.headers.items():
        name = name.lower()
        if name in headers and name in SIGNATURE_HEADERS:
            raise SignatureError(f"{name} header is repeated")
        headers.setdefault(name, value)
    return headers


def _wanted(event: PushEvent, branches: tuple[str, ...] | None, tags: tuple[str, ...] | None) -> str | None:
    """Return why a push is not built under the repository's filters, or ``None`` if it is."""
    if event.branch is not None:
        return None if matches_any(event.branch, branches) else f"branch {event.branch!r} is not built"
    return None if matches_any(event.ref_name, tags) else f"tag {event.ref_name!r} is not built"


@bp.post("/<forge>")
def receive(forge: str) -> Any:
    """Answer a delivery: 202 with the build, 200 for ignored or duplicate ones, 4xx when refused."""
    if forge not in FORGES:
        raise NotFound(f"no such forge endpoint: {forge}")
    services: Services = current_app.extensions["pushbuild"]
    config = services.config
    if media_type(request.content_type) not in (JSON_TYPE, FORM_TYPE):
        raise UnsupportedMediaType(f"content type must be {JSON_TYPE} or {FORM_TYPE}")
    headers = _headers(request)
    # Verify the raw bytes first (FORGES.md: request.data is empty for form bodies).
    body = request.get_data(cache=True, parse_form_data=False)
    repos = [r.secrets() for r in config.repos if r.forge == forge]
    signed = signed_for(forge, headers, body, repos,
                        Clock(now=time.time(), tolerance_s=defaults.SIGNATURE_TOLERANCE_S))
    result = PARSERS[forge](headers, decode_body(body, request.content_type))
    if isinstance(result, Ignored):
        return jsonify(ignored=result.reason), 200
    repo = config.repo(forge, result.repo)
    if repo is None:
        raise NotFound(f"repository {result.repo!r} is not configured for {forge}")
    if repo.name not in signed:
        raise SignatureError(f"the signature is not valid for repository {repo.name!r}")
    if reason := _wanted(result, repo.branches, repo.tags):
        return jsonify(ignored=reason), 200
    build, created = services.store.record(result)
    if not created:
        return jsonify(duplicate=build.id), 200
    current_app.extensions["pushbuild.dispatcher"].dispatch(build.id)
    log.info("accepted forge=%s repo=%s ref=%s sha=%s build=%s delivery=%s",
                            forge, repo.name, result.ref, result.sha, build.id, result.delivery_id)
    return jsonify(build=build.id, status_url=f"{public_base()}/api/builds/{build.id}"), 202
