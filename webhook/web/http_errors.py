"""Turning errors into JSON replies at the HTTP edge."""

from __future__ import annotations

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

from ..errors import RequestError


def _reply(status: int, message: str) -> tuple[Response, int]:
    """Return a JSON error body with ``status``."""
    return jsonify(error=message), status


def register(app: Flask) -> None:
    """Answer every error with JSON: our request errors, Werkzeug's, and defects as a bare 500."""

    @app.errorhandler(RequestError)
    def _request_error(exc: RequestError) -> tuple[Response, int]:
        return _reply(exc.status, exc.message)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> tuple[Response, int]:
        return _reply(exc.code or 500, exc.description or exc.name)

    @app.errorhandler(Exception)
    def _defect(exc: Exception) -> tuple[Response, int]:
        app.logger.exception("unhandled error")
        return _reply(500, "internal error")
