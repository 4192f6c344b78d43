"""``/api/builds`` and ``/healthz``: what was built, how it is going, and whether we can build."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request, stream_with_context

from . import defaults
from .errors import BadRequest, BuildError, NotFound
from .services import Services
from .store import FINISHED, Build

bp = Blueprint("api", __name__)
#: How often a followed log polls for new lines.
FOLLOW_POLL_S = 0.5
#: A followed log ends after this long even if the build has not: a client that went away
#: cannot be noticed while nothing is written, and must not hold a thread for ever.
FOLLOW_MAX_S = 600.0
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


def public_base() -> str:
    """Return the base URL of links: ``server.public_url``, or the address this request came to."""
    return _services().config.server.public_url or request.host_url.rstrip("/")


def _with_links(build: Build) -> dict[str, Any]:
    base = public_base()
    return {**build.to_json(), "url": f"{base}/api/builds/{build.id}", "log_url": f"{base}/api/builds/{build.id}/log",
            "deliveries_url": f"{base}/api/builds/{build.id}/deliveries"}


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
    """Return the build log as text; ``?after=<cursor>`` continues, ``?follow=1`` streams until the end.

    A followed log stops after ten minutes at most; follow again to keep reading.
    """
    store = _services().store
    _build(build_id)
    after = _int_arg("after", 0) or 0
    if request.args.get("follow") not in ("1", "true"):
        text, cursor = store.log(build_id, after=after)
        return Response(text, mimetype="text/plain", headers={"X-Log-Cursor": str(cursor)})

    def follow() -> Iterator[str]:
        yield ""  # send the headers now, even while the build is still queued
        cursor = after
        deadline = time.monotonic() + FOLLOW_MAX_S
        while time.monotonic() < deadline:
            finished = store.get(build_id).state in FINISHED
            text, cursor = store.log(build_id, after=cursor)
            if text:
                yield text
            if finished:
                return
            time.sleep(FOLLOW_POLL_S)

    return Response(stream_with_context(follow()), mimetype="text/plain")


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
    """Say whether the state store and the Docker engine are reachable (200) or not (503)."""
    services = _services()
    checks: dict[str, str] = {}
    try:
        services.store.ping()
        checks["store"] = "ok"
    except Exception as exc:  # any database failure makes us unhealthy; say which kind
        checks["store"] = f"unreachable ({type(exc).__name__})"
    try:
        services.engine().ping()
        checks["engine"] = "ok"
    except BuildError as exc:
        checks["engine"] = exc.message
    healthy = all(v == "ok" for v in checks.values())
    return jsonify(ok=healthy, **checks), 200 if healthy else 503
