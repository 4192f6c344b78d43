"""The composition root of the web process: the Flask app, its extensions and blueprints."""

from __future__ import annotations

import functools
import threading

from flask import Flask

from .. import defaults
from ..config import Config, load_config
from ..health import HealthChecks, broker_ping
from ..logs import configure_logging
from ..services import Services
from ..worker import Dispatcher, make_celery
from . import access, answer_headers, api, console, http_errors, metrics
from .receive import Hooks
from .serving import BufferedBodies


def create_app(test_config: Config | None = None, *, dispatcher: Dispatcher | None = None) -> Flask:
    """Create the web app from ``test_config``, or from ``$PUSHBUILD_CONFIG`` (defaults if unset)."""
    config = test_config if test_config is not None else load_config()
    configure_logging(log_format=config.server.log_format)
    services = Services(config)
    app = Flask("webhook")
    app.config["MAX_CONTENT_LENGTH"] = config.server.max_body_bytes
    app.extensions["pushbuild"] = services
    app.extensions["pushbuild.dispatcher"] = dispatcher = dispatcher or Dispatcher(make_celery(config), services.store)
    app.extensions["pushbuild.health"] = HealthChecks(
        {"store": services.store.ping,
         "broker": functools.partial(broker_ping, dispatcher.celery, timeout_s=defaults.HEALTH_TIMEOUT_S)},
        timeout_s=defaults.HEALTH_TIMEOUT_S, cache_s=defaults.HEALTH_CACHE_S, redact=services.redact)
    app.extensions["pushbuild.followers"] = threading.BoundedSemaphore(config.server.max_log_followers)
    access.install(app, config.auth.authenticator())
    app.after_request(answer_headers.add_to)
    http_errors.register(app)
    app.register_blueprint(api.bp)
    app.register_blueprint(metrics.bp)
    app.register_blueprint(console.bp)
    app.wsgi_app = BufferedBodies(Hooks(app.wsgi_app, services, dispatcher), timeout_s=config.server.request_timeout_s,
                                  max_bytes=config.server.max_body_bytes,
                                  max_buffered_bytes=config.server.max_buffered_bytes)
    return app
