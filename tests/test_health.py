"""Health checks within a time budget (webhook/health.py): run side by side, hung ones not piled up, results reused."""

import threading

from webhook.health import HealthChecks


def test_a_hung_check_is_unhealthy_within_its_budget_and_is_not_started_twice():
    """A check that never returns counts as unhealthy after the budget; later runs do not pile up copies of it."""
    started, release = [], threading.Event()
    checks = HealthChecks({"stuck": lambda: started.append(1) or release.wait(30), "fine": lambda: None}, timeout_s=0.2)
    try:
        assert checks.run() == {"stuck": "unhealthy", "fine": "ok"}
        assert checks.run() == {"stuck": "unhealthy", "fine": "ok"}
        assert len(started) == 1
    finally:
        release.set()


def test_health_results_are_reused_for_a_moment():
    """Within cache_s the checks are not run again: /healthz cannot be turned into a flood of connections."""
    calls, now = [], [100.0]
    checks = HealthChecks({"store": lambda: calls.append(1)}, timeout_s=1, cache_s=2, clock=lambda: now[0])
    assert checks.run() == checks.run() == {"store": "ok"} and len(calls) == 1
    now[0] += 3
    checks.run()
    assert len(calls) == 2



def test_reasons_are_redacted_and_a_hung_check_says_it_did_not_answer():
    """Why a check failed is its exception, redacted; a check still running is "no answer within" the budget."""
    release = threading.Event()

    def refused():
        raise OSError("refused with password hunter2")

    checks = HealthChecks({"broker": refused, "stuck": lambda: release.wait(30), "store": lambda: None},
                          timeout_s=0.1, redact=lambda text: text.replace("hunter2", "***"))
    try:
        results = checks.run()
        assert results == {"broker": "unhealthy", "stuck": "unhealthy", "store": "ok"}
        assert checks.reasons(results) == {"broker": "OSError: refused with password ***", "stuck": "no answer within 0.1s"}
    finally:
        release.set()


def test_a_check_that_recovers_is_ok_and_has_no_reason_left():
    """Once a failing check passes again, it is ok and its old reason is forgotten."""
    failing = [True]

    def check():
        if failing[0]:
            raise RuntimeError("down")

    checks = HealthChecks({"store": check}, timeout_s=1)
    assert checks.run() == {"store": "unhealthy"}
    failing[0] = False
    results = checks.run()
    assert results == {"store": "ok"} and checks.reasons(results) == {}
