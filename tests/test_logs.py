"""Process-wide logging (webhook/logs.py): on standard error unless the host already configured logging."""

import json
import logging
import sys

import pytest

from webhook.logs import FORMAT, JsonFormatter, configure_logging, log_context


@pytest.fixture
def bare_root():
    """Make the root logger bare (no handlers), as a fresh process has it; give back what was there afterwards.

    Called in the test's body: pytest adds its capturing handlers for each phase of a test.
    """
    root, webhook = logging.getLogger(), logging.getLogger("webhook")
    saved: list = []

    def bare() -> logging.Logger:
        saved.append((root.handlers[:], root.level, webhook.level))
        root.handlers.clear()
        return root

    yield bare
    for handlers, level, webhook_level in saved:
        for handler in root.handlers:
            if handler not in handlers:
                handler.close()
        root.handlers[:] = handlers
        root.setLevel(level)
        webhook.setLevel(webhook_level)


def test_a_bare_process_logs_one_formatted_line_per_event_to_stderr(bare_root, capsys):
    root = bare_root()
    configure_logging()
    [handler] = root.handlers
    assert isinstance(handler, logging.StreamHandler) and handler.formatter._fmt == FORMAT
    logging.getLogger("webhook.intake").info("accepted build=%s", 7)
    logging.getLogger("webhook.intake").debug("not shown")
    err = capsys.readouterr().err
    assert err.endswith(" INFO webhook.intake accepted build=7\n") and "not shown" not in err


def test_a_host_that_configured_logging_keeps_its_handlers(bare_root):
    """Under gunicorn or pytest, no second handler is added (every line would show twice), but the level is set."""
    root, own = bare_root(), logging.NullHandler()
    root.addHandler(own)
    configure_logging(logging.DEBUG)
    assert root.handlers == [own]
    assert logging.getLogger("webhook").level == logging.DEBUG


def test_json_lines_carry_what_they_are_about(capsys):
    """log_format = "json": one object a line, with the build, repository, forge and delivery a line is about."""
    record = logging.LogRecord("webhook.worker", logging.INFO, __file__, 1, "build %s done", (7,), None)
    formatter = JsonFormatter()
    with log_context(build=7, repo="acme/app", forge="github"):
        with log_context(delivery="d-1", repo=None):
            inside = json.loads(formatter.format(record))
    outside = json.loads(formatter.format(record))
    assert {k: inside[k] for k in ("level", "logger", "message", "build", "repo", "forge", "delivery")} == {
        "level": "INFO", "logger": "webhook.worker", "message": "build 7 done", "build": 7, "repo": "acme/app",
        "forge": "github", "delivery": "d-1"}
    assert inside["time"].endswith("Z") and "build" not in outside


def test_an_exception_stays_on_its_json_line():
    try:
        raise ValueError("bad\nthing")
    except ValueError:
        record = logging.LogRecord("webhook", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    line = JsonFormatter().format(record)
    assert "\n" not in line and "ValueError: bad" in json.loads(line)["error"]
