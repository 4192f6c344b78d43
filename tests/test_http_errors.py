"""Errors as JSON at the HTTP edge (webhook/web/http_errors.py)."""

import logging

import pytest
from flask import Flask, abort

from webhook.errors import Conflict, NotFound, PayloadTooLarge, RequestError, SignatureError
from webhook.web import http_errors


@pytest.fixture
def client():
    """A bare Flask app with only the error handlers, and routes that raise."""
    app = Flask("errors-under-test")
    http_errors.register(app)
    raised = {"conflict": Conflict("build 7 is running"), "missing": NotFound("no build 9"),
              "large": PayloadTooLarge("body over 25 MB"), "signature": SignatureError("missing X-Hub-Signature-256"),
              "plain": RequestError("refused"), "defect": KeyError("db-password-in-a-key")}

    @app.route("/raise/<name>")
    def _raise(name):
        raise raised[name]

    @app.route("/abort")
    def _abort():
        abort(405)

    return app.test_client()


@pytest.mark.parametrize("name, status, message", [
    ("conflict", 409, "build 7 is running"), ("missing", 404, "no build 9"), ("large", 413, "body over 25 MB"),
    ("signature", 401, "missing X-Hub-Signature-256"), ("plain", 400, "refused"),
])
def test_a_request_error_is_json_with_its_status(client, name, status, message):
    response = client.get(f"/raise/{name}")
    assert (response.status_code, response.mimetype, response.json) == (status, "application/json", {"error": message})


def test_an_unexpected_exception_is_a_bare_500_that_tells_nothing_of_it(client, caplog):
    """A defect's text may hold anything (a key, a path, a password): it goes to the log, never to the client."""
    with caplog.at_level(logging.ERROR):
        response = client.get("/raise/defect")
    assert (response.status_code, response.json) == (500, {"error": "internal error"})
    assert "db-password-in-a-key" not in response.get_data(as_text=True) and "KeyError" not in response.get_data(as_text=True)
    assert "unhandled error" in caplog.text and "db-password-in-a-key" in caplog.text


def test_werkzeugs_errors_are_json_too(client):
    """An unknown path or a refused method answers JSON with Werkzeug's status and description, not an HTML page."""
    missing, refused = client.get("/no/such/path"), client.get("/abort")
    assert missing.status_code == 404 and missing.mimetype == "application/json" and "not found" in missing.json["error"]
    assert refused.status_code == 405 and "not allowed" in refused.json["error"]
