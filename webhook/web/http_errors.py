"""Turning errors into replies at the HTTP edge: JSON for the API and hooks, a page for a browser."""

from __future__ import annotations

from http import HTTPStatus

from flask import Flask, Response, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

from ..errors import RequestError
from .access import SIGN_IN, local_path

#: Paths whose clients are programs: they always get JSON.
MACHINE_PREFIXES = ("/api/", "/hooks/", "/healthz", "/metrics", "/static/")


def _wants_page() -> bool:
    """Say whether the request comes from a browser on a console page (it prefers HTML to JSON)."""
    if request.path.startswith(MACHINE_PREFIXES) or request.path.endswith("/events"):
        return False
    return request.accept_mimetypes.best_match(["application/json", "text/html"]) == "text/html"


def _reply(status: int, message: str) -> tuple[Response | str, int]:
    """Return a JSON error body with ``status``, or a page saying it to a browser."""
    if not _wants_page():
        return jsonify(error=message), status
    if status == 401:
        back = local_path(request.full_path.rstrip("?")) if request.method == "GET" and "token" not in request.args else "/"
        return render_template("signin.html", next=back,
                               message=None if message == SIGN_IN else message), 401
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = "Error"
    return render_template("error.html", status=status, title=title, message=message), status


def register(app: Flask) -> None:
    """Answer every error: our request errors, Werkzeug's, and defects as a bare 500."""

    @app.errorhandler(RequestError)
    def _request_error(exc: RequestError) -> tuple[Response | str, int]:
        return _reply(exc.status, exc.message)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> tuple[Response | str, int]:
        return _reply(exc.code or 500, exc.description or exc.name)

    @app.errorhandler(Exception)
    def _defect(exc: Exception) -> tuple[Response | str, int]:
        app.logger.exception("unhandled error")
        return _reply(500, "internal error")
