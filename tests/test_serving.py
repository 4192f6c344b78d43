"""webhook.web.serving without a server: bodies are read whole and handed on unchanged; the settings reach it.

The deadlines themselves need real sockets and gunicorn: tests/test_slow_clients.py.
"""

import gc
import io
import resource
import subprocess
import sys
from types import SimpleNamespace

import pytest

from webhook import create_app, defaults
from webhook.errors import ConfigError
from webhook.web.serving import BufferedBodies, Worker, raise_open_files_limit, read_body, request_timeout_of

from .helpers.configs import repo_table


class Trickle(io.RawIOBase):
    """A stream that hands out at most a few bytes per read, as a socket does."""

    def __init__(self, data: bytes, step: int = 3) -> None:
        self.data, self.step = data, step

    def read(self, size: int = -1) -> bytes:
        size = self.step if size < 0 else min(size, self.step)
        chunk, self.data = self.data[:size], self.data[size:]
        return chunk


@pytest.mark.parametrize("size, limit, expected", [(0, 10, 0), (10, 10, 10), (11, 10, 11), (100_000, 10, 11),
                                                   (200_000, 1_000_000, 200_000)])
def test_a_body_is_read_to_its_end_or_one_byte_past_the_limit(size, limit, expected):
    """One byte past the limit is enough for the app to tell a body that is too large (413)."""
    data = bytes(range(256)) * (size // 256 + 1)
    assert read_body(Trickle(data[:size]), max_bytes=limit) == data[:expected]


def test_the_app_gets_the_whole_body_and_answers_as_before(make_config):
    """Behind the middleware a delivery is verified over the same bytes; an oversized one is still 413."""
    app = create_app(make_config(repo_table("acme/app"), server={"max_body_bytes": 1000}))
    assert isinstance(app.wsgi_app, BufferedBodies)
    client = app.test_client()
    assert client.post("/hooks/github", data=b"{}", headers={"Content-Type": "application/json",
                                                             "X-GitHub-Event": "push"}).status_code == 401
    too_large = client.post("/hooks/github", data=b"x" * 1001, headers={"Content-Type": "application/json"})
    assert too_large.status_code == 413 and "error" in too_large.get_json()


def test_request_timeout_s_is_a_server_setting_that_reaches_the_worker(make_config):
    """``[server] request_timeout_s``: 10 s by default, positive, and what the gunicorn worker reads off the app."""
    assert make_config().server.request_timeout_s == defaults.REQUEST_TIMEOUT_S == 10
    app = create_app(make_config(server={"request_timeout_s": 2.5}))
    assert request_timeout_of(app) == 2.5
    assert request_timeout_of(object()) == defaults.REQUEST_TIMEOUT_S
    with pytest.raises(ConfigError, match="server.request_timeout_s"):
        make_config(server={"request_timeout_s": 0})


def test_the_web_worker_leaves_the_loaded_app_out_of_later_garbage_collections(make_config):
    """A full collection visits what is not frozen; the app and all that loading made is frozen once loaded."""
    app = create_app(make_config())
    worker = object.__new__(Worker)  # only what load_wsgi uses: gunicorn's application, which makes the app
    worker.app = SimpleNamespace(wsgi=lambda: app)
    assert any(tracked is app for tracked in gc.get_objects())
    try:
        worker.load_wsgi()
        assert worker.wsgi is app
        assert not any(tracked is app for tracked in gc.get_objects())  # collections no longer visit it
        assert gc.get_freeze_count() > 10_000  # nor Flask's, SQLAlchemy's and Celery's objects
    finally:
        gc.unfreeze()


def test_the_web_worker_opens_the_embedded_broker_before_its_first_delivery(make_config):
    """What the first build's publish would open (kombu's channel and table models) is open once loaded, and frozen with the app."""
    app = create_app(make_config())
    publisher = app.extensions["pushbuild.dispatcher"]._sql
    assert not publisher.ready
    worker = object.__new__(Worker)
    worker.app = SimpleNamespace(wsgi=lambda: app)
    try:
        worker.load_wsgi()
        assert publisher.ready
        opened = (publisher._connection, publisher._connection.default_channel)  # made by the warm-up, then frozen
        assert not any(tracked is made for tracked in gc.get_objects() for made in opened)
    finally:
        gc.unfreeze()


def test_the_open_files_limit_is_raised_toward_the_hard_limit_never_past_it():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, 512), hard))
        wanted = 4096 if hard == resource.RLIM_INFINITY else hard + 1
        assert raise_open_files_limit(wanted) == (wanted if hard == resource.RLIM_INFINITY else hard)
        assert raise_open_files_limit(10) == resource.getrlimit(resource.RLIMIT_NOFILE)[0]  # never lowered
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_gunicorns_master_imports_nothing_its_gevent_workers_must_patch_first():
    """The master loads the settings and the worker class only: git, the database drivers, Celery and
    the app are imported by each worker after gevent's patch, so their sockets, sleeps and
    subprocesses cooperate (GitPython imported before it kept a subprocess module that fails)."""
    code = ("import sys, webhook.gunicorn_conf, webhook.web.serving, webhook.web.access_log; "
            "print(sorted(m for m in ('git', 'flask', 'psycopg', 'sqlalchemy', 'celery', 'kombu', 'requests', "
            "'webhook.web.app', 'webhook.services') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("chunked", [False, True])
def test_only_deliveries_may_send_large_bodies(make_config, chunked):
    """Anything but /hooks/ takes at most 64 KiB: a stranger's megabytes are refused (413), not buffered for a 401."""
    app = create_app(make_config(repo_table("acme/app")))
    big = b"x" * (defaults.MAX_API_BODY_BYTES + 1)
    sent = ({"input_stream": io.BytesIO(big), "headers": {"Transfer-Encoding": "chunked"}} if chunked
            else {"data": big})
    response = app.test_client().post("/api/builds", content_type="application/json", **sent)
    assert response.status_code == 413 and response.headers["Connection"] == "close"
    assert app.test_client().post("/hooks/github", data=big, content_type="application/json").status_code == 401


def test_bodies_held_at_once_are_bounded_and_given_back(make_config):
    """Thousands of connections each sending a large body before any signature is checked: past
    max_buffered_bytes the next one is 503 with Retry-After, and what was held is given back after."""
    seen = []

    def app(environ, start_response):
        seen.append(middleware.buffered)
        if environ["PATH_INFO"] == "/hooks/outer":  # a second body arriving while this one is held
            inner = {"PATH_INFO": "/hooks/inner", "CONTENT_LENGTH": "60", "wsgi.input": io.BytesIO(b"y" * 60)}
            seen.append(middleware(inner, lambda status, headers: seen.append((status, dict(headers)))))
        start_response("202 Accepted", [])
        return [b""]

    middleware = BufferedBodies(app, timeout_s=5, max_bytes=1000, max_buffered_bytes=100)
    outer = {"PATH_INFO": "/hooks/outer", "CONTENT_LENGTH": "60", "wsgi.input": io.BytesIO(b"x" * 60)}
    middleware(outer, lambda status, headers: None)
    status, headers = seen[1]
    assert status.startswith("503") and headers["Retry-After"] == "5" and seen[0] == 60
    assert middleware.buffered == 0
    again = {"PATH_INFO": "/hooks/again", "CONTENT_LENGTH": "60", "wsgi.input": io.BytesIO(b"x" * 60)}
    middleware(again, lambda status, headers: None)
    assert seen[-1] == 60  # after the first body was given back, another fits
