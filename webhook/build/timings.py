"""How long each phase of a build took, and how the build log says so. Performs no I/O.

The phases, in the order a build runs them:

- ``queue_wait``: from when the build entered the queue (recorded, or queued again by a retry) to
  when a worker claimed it. Re-dispatches (a lost message, a repository at its concurrency limit)
  do not restart it: the wait a user sees is the whole wait.
- ``fetch``: fetching the commit into the mirror (and, for ``paths`` filters, diffing it).
- ``context``: reading the Dockerfile and ``.dockerignore``, then streaming the filtered tar to the
  engine, from the first chunk it asks for to the last (the engine takes it while it starts).
- ``build``: the rest of the engine's build (cache pulls, the Dockerfile's steps), after the context.
- ``push``: pushing every tag, retries and their waits included.

A phase that runs twice (the engine restarted mid-build, and the build ran again) counts both times.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

QUEUE_WAIT, FETCH, CONTEXT, BUILD, PUSH = "queue_wait", "fetch", "context", "build", "push"
#: Every phase, in the order builds run them.
PHASES = (QUEUE_WAIT, FETCH, CONTEXT, BUILD, PUSH)


class PhaseTimer:
    """Adds up how long each phase of one run takes, and the size of the context it sent."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.seconds: dict[str, float] = {}
        self.context_bytes: int | None = None

    def add(self, phase: str, seconds: float) -> None:
        """Count ``seconds`` more for ``phase`` (a phase first counted is placed last)."""
        if phase not in PHASES:
            raise ValueError(f"no such build phase: {phase!r}")
        self.seconds[phase] = self.seconds.get(phase, 0.0) + max(0.0, seconds)

    @contextmanager
    def phase(self, phase: str, *, besides: str | None = None) -> Iterator[None]:
        """Count the time the ``with`` block takes for ``phase``, whether it returns or raises.

        Time counted meanwhile for the phase ``besides`` (the context streaming during a build) is
        left out: phases never overlap, and they add up to the run.
        """
        started, before = self.clock(), self.seconds.get(besides, 0.0) if besides else 0.0
        try:
            yield
        finally:
            overlap = self.seconds.get(besides, 0.0) - before if besides else 0.0
            self.add(phase, self.clock() - started - overlap)

    def context(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        """Pass a build context's ``chunks`` on, counting their bytes and, as ``context``, the time from the first to the last."""
        self.context_bytes = self.context_bytes or 0
        started = self.clock()
        try:
            for chunk in chunks:
                self.context_bytes += len(chunk)
                yield chunk
        finally:
            self.add(CONTEXT, self.clock() - started)


def queue_wait_s(queued_at: float | None, started_at: float | None) -> float | None:
    """Seconds a build waited between entering the queue and its start, if both are known."""
    if queued_at is None or started_at is None:
        return None
    return max(0.0, started_at - queued_at)


def summary(seconds: dict[str, float]) -> str:
    """The build log's last line: ``--- took 3.2 s (queued 0.5 s): fetch 0.4 s, build 2.1 s, push 0.6 s ---``."""
    ran = {phase: s for phase, s in seconds.items() if phase != QUEUE_WAIT}
    took = f"took {sum(ran.values()):.1f} s"
    if QUEUE_WAIT in seconds:
        took += f" (queued {seconds[QUEUE_WAIT]:.1f} s)"
    phases = ", ".join(f"{phase} {s:.1f} s" for phase, s in ran.items())
    return f"--- {took}{': ' + phases if phases else ''} ---\n"
