"""Health checks that answer in bounded time, whatever the peer they check is doing.

Each check runs in a thread of its own and is given ``timeout_s``; a check still running after
that counts as unhealthy, and no second copy of it is started until the first returns, so a
hung database or broker cannot pile up threads. Results say only ``ok`` or ``unhealthy``: the
reasons go to the log, and (redacted) to :meth:`HealthChecks.reasons` for whoever is signed in.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping

from celery import Celery

log = logging.getLogger(__name__)
OK, UNHEALTHY = "ok", "unhealthy"


class HealthChecks:
    """Named checks (each raises when its peer is not usable), run together within a time budget."""

    def __init__(self, checks: Mapping[str, Callable[[], None]], *, timeout_s: float, cache_s: float = 0.0,
                 redact: Callable[[str], str] = str, clock: Callable[[], float] = time.monotonic) -> None:
        self.checks = dict(checks)
        self.timeout_s = timeout_s
        self.cache_s = cache_s
        self.redact = redact
        self.clock = clock
        self._last: tuple[float, dict[str, str]] | None = None
        self._running: dict[str, threading.Thread] = {}
        self._reasons: dict[str, str] = {}
        self._lock = threading.Lock()

    def run(self) -> dict[str, str]:
        """Return ``ok`` or ``unhealthy`` for each check, after ``timeout_s`` at the most.

        Results younger than ``cache_s`` are answered again: whoever can reach ``/healthz`` cannot
        turn it into a stream of database and broker connections.
        """
        last = self._last
        if last is not None and self.clock() - last[0] < self.cache_s:
            return dict(last[1])
        results: dict[str, str] = {}
        with self._lock:
            threads = {name: self._start(name, check, results) for name, check in self.checks.items()}
        for thread in threads.values():
            thread.join(self.timeout_s)  # they run side by side, so the budget is shared, not summed
        answer = {name: results.get(name, UNHEALTHY) for name in self.checks}
        self._last = (self.clock(), answer)
        return dict(answer)

    def reasons(self, results: Mapping[str, str]) -> dict[str, str]:
        """Say why each unhealthy check in ``results`` failed (redacted), or that it did not answer in time."""
        return {name: self._reasons.get(name, f"no answer within {self.timeout_s:g}s")
                for name, result in results.items() if result != OK}

    def _start(self, name: str, check: Callable[[], None], results: dict[str, str]) -> threading.Thread:
        """Start ``check``, or hand back the copy of it still running from an earlier call."""
        running = self._running.get(name)
        if running is not None and running.is_alive():
            log.warning("health check %s is still running from an earlier request", name)
            return running

        def attempt() -> None:
            try:
                check()
                results[name] = OK
                self._reasons.pop(name, None)
            except Exception as exc:  # any failure is "unhealthy"; the reason is for the log and signed-in users
                self._reasons[name] = self.redact(f"{type(exc).__name__}: {exc}")[:500]
                log.warning("health check %s failed: %s", name, self._reasons[name])
                results[name] = UNHEALTHY

        thread = threading.Thread(target=attempt, name=f"health-{name}", daemon=True)
        self._running[name] = thread
        thread.start()
        return thread


def broker_ping(celery: Celery, *, timeout_s: float) -> None:
    """Raise unless the Celery broker accepts a connection within ``timeout_s``."""
    with celery.connection_for_write() as connection:
        connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=timeout_s)
