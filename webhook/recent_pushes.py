"""The pushes this process accepted lately, so a replayed delivery is answered without the database.

Forges resend a delivery they think was lost, and anyone holding a captured delivery can send it
again at will (GitHub does not sign the delivery id header). The build records decide: a push
recorded once is answered "duplicate" for ever (:meth:`webhook.store.BuildStore.accept`). But on
SQLite each such answer took the write lock, in turn with every real delivery. What this process
accepted in the last :data:`~webhook.defaults.RECENT_PUSHES_S` is remembered here, by delivery and by
what the push changed, and answered the same way from memory.

Only what is certain is answered: a key here was recorded, and a record is never forgotten while
it is this young (pruning waits an hour after a build finished). Anything not here goes to the
database, which stays the only judge of what is new.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import replace

from . import defaults
from .events import PushEvent
from .store import Build, delivery_key, push_key


class RecentPushes:
    """A bounded, expiring memory of accepted pushes: delivery key or push key → the builds recorded for it."""

    def __init__(self, *, capacity: int = defaults.RECENT_PUSHES, ttl_s: float = defaults.RECENT_PUSHES_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = capacity
        self.ttl_s = ttl_s
        self.clock = clock
        self._builds: OrderedDict[str, tuple[float, tuple[Build, ...]]] = OrderedDict()
        self._lock = threading.Lock()

    def recorded(self, events: Sequence[PushEvent]) -> tuple[Build, ...] | None:
        """The builds recorded for this delivery (by its id or by a push it names), oldest first; ``None`` if unknown here."""
        now = self.clock()
        found: dict[int, Build] = {}
        with self._lock:
            for key in _keys(events):
                entry = self._builds.get(key)
                if entry is None:
                    continue
                if now - entry[0] > self.ttl_s:
                    del self._builds[key]
                    continue
                found.update((build.id, build) for build in entry[1])
        return tuple(found[build_id] for build_id in sorted(found)) if found else None

    def remember(self, events: Sequence[PushEvent], builds: Sequence[Build]) -> None:
        """Note that this delivery's ``events`` were just recorded as ``builds`` (one per event, in order).

        Only a delivery that recorded its builds itself is remembered: a duplicate's answer may
        name builds of another push (a delivery id recorded before, with a different body), whose
        keys no record holds. What is kept of a build is what an answer needs: its changed paths
        (megabytes, for a large push) are dropped.
        """
        now = self.clock()
        kept = tuple(replace(build, changed_paths=None) for build in builds)
        by_push = {(build.ref, build.sha): build for build in kept}
        with self._lock:
            for event in events:
                if event.delivery_id:
                    self._put(delivery_key(event), (now, kept))
                if (build := by_push.get((event.ref, event.sha))) is not None:
                    self._put(push_key(event), (now, (build,)))

    def _put(self, key: str, entry: tuple[float, tuple[Build, ...]]) -> None:
        self._builds[key] = entry
        self._builds.move_to_end(key)
        while len(self._builds) > self.capacity:
            self._builds.popitem(last=False)


def _keys(events: Sequence[PushEvent]) -> list[str]:
    return [key for event in events
            for key in ((delivery_key(event),) if event.delivery_id else ()) + (push_key(event),)]
