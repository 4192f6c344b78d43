"""``/api/builds`` and ``/healthz``: what was built, how it is going, and whether we can build."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from .. import defaults, links, operations
from ..auth import OPERATE, READ
from ..errors import BadRequest, NotFound
from ..health import OK
from ..services import Services
from ..store import Build
from ..worker import Dispatcher
from . import streams
from .access import principal, require

bp = Blueprint("api", __name__)
#: A larger id in a path names nothing (404); a larger query argument is a bad request (400).
MAX_ID = defaults.MAX_DATABASE_ID


def _services() -> Services:
    return current_app.extensions["pushbuild"]


def _int_arg(name: str, default: int | None, *, maximum: int | None = None) -> int | None:
    """Read a non-negative integer query argument, at most :data:`MAX_ID`, or raise a 400."""
    raw = request.args.get(name)
    if raw is None:
        return default
    # ASCII digits only ("²" is a digit to str.isdigit, not to int), and never more than MAX_ID has
    # (int() refuses over 4300 digits).
    if not (raw.isascii() and raw.isdigit()) or len(raw.lstrip("0")) > len(str(MAX_ID)) or int(raw) > MAX_ID:
        raise BadRequest(f"{name} must be a non-negative integer of at most {MAX_ID}")
    value = int(raw)
    return min(value, maximum) if maximum else value


def _build(build_id: int) -> Build:
    build = _services().store.get(build_id)
    if build is None:
        raise NotFound(f"no build {build_id}")
    return build


def _with_links(build: Build) -> dict[str, Any]:
    return {**build.to_json(),
            **links.build_links(links.base_url(_services().config.server.public_url, request.host_url), build.id)}


@bp.get("/api/builds")
def list_builds() -> Any:
    """List builds newest first; ``?repo=`` filters, ``?limit=`` and ``?before=<id>`` page."""
    builds = _services().store.list(
        repo=request.args.get("repo"), limit=_int_arg("limit", 50, maximum=500), before_id=_int_arg("before", None)
    )
    return jsonify(builds=[_with_links(b) for b in builds])


@bp.get(f"/api/builds/<int(max={MAX_ID}):build_id>")
def get_build(build_id: int) -> Any:
    """Show one build: repo, ref, sha, state, tags, digest, error, timestamps."""
    return jsonify(_with_links(_build(build_id)))


@bp.get(f"/api/builds/<int(max={MAX_ID}):build_id>/log")
def get_log(build_id: int) -> Response:
    """Return a page of the build log as text; ``?after=<cursor>`` continues, ``?follow=1`` streams until the end.

    A page holds about ``?limit=`` characters (1 MiB by default); ``X-Log-Cursor`` is the
    ``after`` of the next page, and ``X-Log-More: 1`` says one is already there. A followed log
    stops after ten minutes at most; follow again to keep reading.
    """
    store = _services().store
    _build(build_id)
    after = _int_arg("after", 0) or 0
    limit = _int_arg("limit", defaults.LOG_PAGE_CHARS, maximum=defaults.MAX_LOG_PAGE_CHARS) or 1
    if request.args.get("follow") not in ("1", "true"):
        text, cursor = store.log(build_id, after=after, limit_chars=limit)
        more = bool(text) and bool(store.log(build_id, after=cursor, limit_chars=1)[0])
        return Response(text, mimetype="text/plain", headers={"X-Log-Cursor": str(cursor), "X-Log-More": str(int(more))})

    def text() -> Iterator[str]:
        yield ""  # send the headers now, even while the build is still queued
        for chunk, _cursor, _state in streams.follow(store, build_id, after):
            if chunk:
                yield chunk

    return Response(streams.holding_place(text()), mimetype="text/plain")


def _dispatcher() -> Dispatcher:
    return current_app.extensions["pushbuild.dispatcher"]


def _json_object(allowed: tuple[str, ...]) -> dict[str, str]:
    """Return the request's JSON object of string fields, refusing other shapes and unknown keys."""
    try:
        body = request.get_json(silent=True) if request.content_length else {}
    except RecursionError:
        body = None  # nested past Python's limit
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise BadRequest(f"unknown field {unknown[0]!r}; the fields are {', '.join(allowed)}")
    for key, value in body.items():
        if not isinstance(value, str) or not value or len(value) > defaults.MAX_REF_CHARS:
            raise BadRequest(f"{key} must be a non-empty string of at most {defaults.MAX_REF_CHARS} characters")
    return body


@bp.post("/api/builds")
def start_build() -> Any:
    """Build ``{"repo": …}`` at ``"ref"`` (a branch's head), ``"tag"`` or ``"sha"``, as a push would (operate).

    202 with the new build; 200 with the build already queued or running for that ref and commit.
    """
    who = require(OPERATE)
    body = _json_object(("repo", "ref", "sha", "tag"))
    if "repo" not in body:
        raise BadRequest('"repo" is required, such as {"repo": "acme/app", "ref": "main"}')
    taken = operations.start_build(_services(), _dispatcher(), body["repo"], ref=body.get("ref"), sha=body.get("sha"),
                                   tag=body.get("tag"), by=who.name)
    return jsonify(_with_links(taken.builds[0])), 202 if taken.created else 200


@bp.post(f"/api/builds/<int(max={MAX_ID}):build_id>/retry")
def retry_build(build_id: int) -> Any:
    """Queue a finished build to run again (operate); 202 with the build, 409 if it has not finished."""
    who = require(OPERATE)
    return jsonify(_with_links(operations.retry(_services(), _dispatcher(), build_id, by=who.name))), 202


@bp.post(f"/api/builds/<int(max={MAX_ID}):build_id>/cancel")
def cancel_build(build_id: int) -> Any:
    """Cancel a queued or running build (operate); 409 if it has already ended."""
    who = require(OPERATE)
    return jsonify(_with_links(operations.cancel(_services(), build_id, by=who.name)))


@bp.post(f"/api/deliveries/<int(max={MAX_ID}):delivery_id>/redeliver")
def redeliver(delivery_id: int) -> Any:
    """Make a status or hook due again now (operate); a worker sends it. 202 with the delivery."""
    who = require(OPERATE)
    delivery = operations.redeliver(_services(), delivery_id, by=who.name)
    return jsonify(delivery.to_json(_services().deliveries.attempts(delivery_id))), 202


@bp.get(f"/api/builds/<int(max={MAX_ID}):build_id>/deliveries")
def build_deliveries(build_id: int) -> Any:
    """List the statuses and redeploy hooks a build owes, with every attempt."""
    _build(build_id)
    store = _services().deliveries
    return jsonify(deliveries=[d.to_json(store.attempts(d.id)) for d in store.of_build(build_id)])


@bp.get(f"/api/deliveries/<int(max={MAX_ID}):delivery_id>")
def get_delivery(delivery_id: int) -> Any:
    """Show one status or hook delivery with every attempt."""
    store = _services().deliveries
    delivery = store.get(delivery_id)
    if delivery is None:
        raise NotFound(f"no delivery {delivery_id}")
    return jsonify(delivery.to_json(store.attempts(delivery_id)))


@bp.get("/healthz")
def healthz() -> Any:
    """Say whether this web process can take deliveries: its state store and broker answer (200) or not (503).

    The Docker engine is the worker's business (``pushbuild health --worker``); the answer says
    only ok or unhealthy per check, within the checks' time budget; why, only to a signed-in caller.
    """
    health = current_app.extensions["pushbuild.health"]
    checks = health.run()
    healthy = all(v == OK for v in checks.values())
    who = principal()
    detail = {"reasons": health.reasons(checks)} if who is not None and who.may(READ) and not healthy else {}
    return jsonify(ok=healthy, **checks, **detail), 200 if healthy else 503
