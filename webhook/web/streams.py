"""Following a build's log as it is written: shared by the API's text stream and the console's events.

A follower holds one of ``server.max_log_followers`` places while it reads, and gives it back
when the server closes the response, however it ended.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from flask import current_app

from ..errors import TooManyRequests
from ..store import FINISHED, BuildState, BuildStore

#: How often a followed log polls for new lines.
POLL_S = 0.5
#: A followed log ends after this long even if the build has not: a client that went away
#: cannot be noticed while nothing is written, and must not hold a place for ever.
MAX_S = 600.0


def follow(store: BuildStore, build_id: int, after: int, *, max_s: float = MAX_S) -> Iterator[tuple[str, int, BuildState]]:
    """Yield ``(text, cursor, state)`` as the log grows past chunk ``after``, until the build ends or ``max_s`` passes.

    ``text`` is empty when nothing new was written since the last poll (a chance to send a
    keep-alive); the last item is yielded after the build has finished and its log was read whole.
    """
    cursor = after
    deadline = time.monotonic() + max_s
    while time.monotonic() < deadline:
        build = store.get(build_id)
        state = build.state if build is not None else BuildState.CANCELLED
        wrote = False
        while True:  # page by page: a long log is never read whole
            text, cursor = store.log(build_id, after=cursor)
            if not text:
                break
            wrote = True
            yield text, cursor, state
        if state in FINISHED:
            if not wrote:
                yield "", cursor, state
            return
        if not wrote:
            yield "", cursor, state
        time.sleep(POLL_S)


def holding_place(chunks: Iterator[Any]) -> Holding:
    """Take one of the followers' places for ``chunks`` (429 when none is free) and give it back on close."""
    followers: threading.BoundedSemaphore = current_app.extensions["pushbuild.followers"]
    if not followers.acquire(blocking=False):
        limit = current_app.extensions["pushbuild"].config.server.max_log_followers
        raise TooManyRequests(f"{limit} clients follow logs here already; read the log without following, "
                              "or try again later")
    return Holding(chunks, followers.release)


class Holding:
    """A response body that gives back its follower's place when the server closes it, however it ended."""

    def __init__(self, chunks: Iterator[Any], release: Callable[[], None]) -> None:
        self._chunks = chunks
        self._release: Callable[[], None] | None = release

    def __iter__(self) -> Iterator[Any]:
        return self._chunks

    def close(self) -> None:
        try:
            close = getattr(self._chunks, "close", None)
            if close is not None:
                close()
        finally:
            if self._release is not None:
                self._release, release = None, self._release
                release()
