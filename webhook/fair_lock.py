"""A lock its waiters get in the order they asked for it.

``threading.Lock`` (and gevent's, which replaces it in the web process) lets whoever asks at the
moment it is released take it, ahead of those already waiting. When the holders follow each
other closely, a waiter can be passed over again and again: in the intake bench, a delivery's
note of its repository's last delivery waited 13 s for the state database's write turn while
accepted deliveries kept taking it.
"""

from __future__ import annotations

import collections
import threading


class FairLock:
    """A lock handed from its holder straight to the longest waiter: it is never free while someone waits."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._held = False
        #: One locked lock per waiter, oldest first; releasing it hands that waiter the lock.
        self._waiters: collections.deque[threading.Lock] = collections.deque()

    def acquire(self) -> None:
        """Take the lock, after everyone who asked before."""
        with self._mutex:
            if not self._held:
                self._held = True
                return
            waiter = threading.Lock()
            waiter.acquire()
            self._waiters.append(waiter)
        try:
            waiter.acquire()
        except BaseException:  # interrupted while waiting (a timeout, a greenlet killed)
            with self._mutex:
                handed = waiter not in self._waiters
                if not handed:
                    self._waiters.remove(waiter)
            if handed:  # it came meanwhile: pass it on
                self.release()
            raise

    def release(self) -> None:
        """Hand the lock to the longest waiter, or free it."""
        with self._mutex:
            if not self._held:
                raise RuntimeError("release of a FairLock that is not held")
            if self._waiters:
                self._waiters.popleft().release()
            else:
                self._held = False

    def __enter__(self) -> FairLock:
        self.acquire()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.release()
