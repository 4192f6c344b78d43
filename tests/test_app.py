"""The web process's composition root (webhook/web/app.py): create_app wires the extensions, blueprints and middleware."""

import threading

from webhook import create_app, defaults
from webhook.health import HealthChecks
from webhook.services import Services
from webhook.web.receive import Hooks
from webhook.web.serving import BufferedBodies
from webhook.worker import Dispatcher

from .helpers.configs import GITHUB_SECRET, repo_table
from .helpers.support import bearer


def test_the_extensions_are_the_processs_collaborators(make_config):
    config = make_config(repo_table("acme/app"), server={"max_body_bytes": 5000, "max_log_followers": 3})
    app = create_app(config)
    services, dispatcher, health = (app.extensions[k] for k in ("pushbuild", "pushbuild.dispatcher", "pushbuild.health"))
    assert isinstance(services, Services) and services.config is config
    assert isinstance(dispatcher, Dispatcher) and dispatcher.store is services.store
    assert isinstance(health, HealthChecks) and set(health.checks) == {"store", "broker"}
    assert (health.timeout_s, health.cache_s) == (defaults.HEALTH_TIMEOUT_S, defaults.HEALTH_CACHE_S)
    assert GITHUB_SECRET not in health.redact(GITHUB_SECRET)
    assert isinstance(app.extensions["pushbuild.followers"], type(threading.BoundedSemaphore()))
    assert app.config["MAX_CONTENT_LENGTH"] == 5000


def test_a_given_dispatcher_is_used(make_config, config):
    first = create_app(config)
    dispatcher = first.extensions["pushbuild.dispatcher"]
    assert create_app(config, dispatcher=dispatcher).extensions["pushbuild.dispatcher"] is dispatcher


def test_the_blueprints_the_hooks_and_the_body_buffer_are_in_place(app):
    """Deliveries are answered in front of Flask (webhook.web.receive), behind the body buffer."""
    assert set(app.blueprints) == {"api", "console", "metrics"}
    rules = {rule.rule for rule in app.url_map.iter_rules()}
    assert {"/healthz", "/api/builds"} <= rules
    assert isinstance(app.wsgi_app, BufferedBodies) and isinstance(app.wsgi_app.app, Hooks)


def test_an_unknown_path_is_json_401_without_a_token_and_404_with_one(app):
    """Access comes before routing: a stranger learns nothing of which paths exist; errors are JSON."""
    stranger = app.test_client().get("/no/such/path")
    assert (stranger.status_code, stranger.mimetype) == (401, "application/json") and "error" in stranger.json
    known = app.test_client().get("/no/such/path", headers=bearer())
    assert (known.status_code, known.mimetype) == (404, "application/json")
