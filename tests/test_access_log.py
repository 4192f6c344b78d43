"""gunicorn's access log, escaped (webhook/web/access_log.py): what strangers send cannot forge a line."""

import datetime
from types import SimpleNamespace

import pytest
from gunicorn.config import Config

from webhook import gunicorn_conf
from webhook.web.access_log import AccessLogger


@pytest.fixture
def access_log(tmp_path):
    """gunicorn's real configuration, set from webhook/gunicorn_conf.py, logging accesses to a file; and a function to read it."""
    path = tmp_path / "access.log"
    cfg = Config()
    for name in ("access_log_format", "logger_class"):
        cfg.set(name, getattr(gunicorn_conf, name))
    cfg.set("accesslog", str(path))
    logger = cfg.logger_class(cfg)
    yield logger, path.read_text
    for handler in logger.access_log.handlers:
        handler.close()


def log_request(logger, path, *, user_agent="curl/8", query=""):
    environ = {"REMOTE_ADDR": "127.0.0.1", "REQUEST_METHOD": "GET", "RAW_URI": path, "PATH_INFO": path,
               "QUERY_STRING": query, "SERVER_PROTOCOL": "HTTP/1.1", "HTTP_USER_AGENT": user_agent}
    response = SimpleNamespace(status="404 NOT FOUND", sent=27, headers=[("Content-Type", "application/json")])
    logger.access(response, [("User-Agent", user_agent)], environ, datetime.timedelta(milliseconds=3))


def test_the_configured_logger_is_the_escaping_one(access_log):
    logger, _ = access_log
    assert type(logger) is AccessLogger


def test_a_newline_in_the_path_is_escaped_in_the_logged_line(access_log):
    """A decoded %0a in the path would otherwise start a line of the attacker's choosing."""
    logger, read = access_log
    log_request(logger, '/x\n127.0.0.1 - - [01/Jan/2026:00:00:00 +0000] "GET /admin HTTP/1.1" 200 0')
    [line] = read().splitlines()
    assert '"GET /x\\x0a127.0.0.1 - - [01/Jan/2026:00:00:00 +0000] \\"GET /admin' in line
    assert line.endswith('" 404 27 "-" "curl/8"')


def test_escape_sequences_in_headers_are_escaped_too(access_log):
    """A user agent with a terminal escape cannot drive whoever tails the log."""
    logger, read = access_log
    log_request(logger, "/healthz", user_agent="evil\x1b[2J\r")
    [line] = read().splitlines()
    assert line.endswith('"evil\\x1b[2J\\x0d"') and "\x1b" not in line


def test_the_query_string_is_never_logged(access_log):
    """A sign-in link carries ?token=: the format logs the path alone."""
    logger, read = access_log
    log_request(logger, "/", query="token=test-read-token-5d2f0c8e9a7b4c1d8e6f3a2b")
    assert "test-read-token" not in read() and '"GET / HTTP/1.1" 404' in read()


def test_a_format_naming_headers_and_variables_gets_them_escaped(access_log):
    """Only the atoms a format names are made; one naming a request header gets it (escaped), as gunicorn's does."""
    logger, read = access_log
    logger.cfg.set("access_log_format", '%(m)s %(U)s %({x-forge}i)s %({content-type}o)s %(L)s')
    environ = {"REMOTE_ADDR": "127.0.0.1", "REQUEST_METHOD": "POST", "RAW_URI": "/hooks/github",
               "PATH_INFO": "/hooks/github", "QUERY_STRING": "", "SERVER_PROTOCOL": "HTTP/1.1"}
    response = SimpleNamespace(status="202 ACCEPTED", sent=2, headers=[("Content-Type", "application/json")])
    logger.access(response, [("X-Forge", "git\x1bhub")], environ, datetime.timedelta(milliseconds=3))
    assert read().splitlines() == ["POST /hooks/github git\\x1bhub application/json 0.003000"]
