"""The web process's gunicorn settings (webhook/gunicorn_conf.py), read by gunicorn's own configuration."""

import importlib

import pytest
from gunicorn.config import Config

from webhook import defaults, gunicorn_conf
from webhook.web.access_log import AccessLogger
from webhook.web.serving import Worker


@pytest.fixture
def settings(monkeypatch):
    """Load the settings under an environment, as gunicorn does at start; loaded again as they were afterwards."""

    def load(**env):
        for name in ("PORT", "WEB_CONCURRENCY"):
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        module = importlib.reload(gunicorn_conf)
        cfg = Config()
        for name in ("bind", "workers", "worker_class", "worker_connections", "timeout", "accesslog",
                     "access_log_format", "logger_class", "control_socket_disable"):
            cfg.set(name, getattr(module, name))
        return cfg

    yield load
    monkeypatch.undo()
    importlib.reload(gunicorn_conf)


def test_the_defaults_and_the_classes_gunicorn_loads(settings):
    cfg = settings()
    assert cfg.bind == [defaults.BIND] and cfg.workers == defaults.WEB_WORKERS
    assert cfg.worker_connections == defaults.WEB_WORKER_CONNECTIONS
    assert cfg.worker_class is Worker and cfg.logger_class is AccessLogger
    assert cfg.control_socket_disable  # nothing written under the home directory, nothing shared between services


def test_port_and_web_concurrency_come_from_the_environment(settings):
    """Platforms that assign a port set $PORT; $WEB_CONCURRENCY sets the processes."""
    cfg = settings(PORT="8123", WEB_CONCURRENCY="5")
    assert cfg.bind == ["0.0.0.0:8123"] and cfg.workers == 5


def test_the_access_log_names_no_query_string_user_or_request_line(settings):
    """A query string may carry the sign-in link's token and the user atom a Basic-auth token: neither is logged."""
    log_format = settings().access_log_format
    for atom in ("%(q)s", "%(r)s", "%(u)s"):
        assert atom not in log_format
    assert "{authorization}i" not in log_format.lower()
    assert "%(U)s" in log_format and "%(s)s" in log_format
