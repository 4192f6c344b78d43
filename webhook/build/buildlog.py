"""A build's log as it is written: in batches, and bounded to its head and its tail.

A step printing 200,000 lines must neither cost a database transaction a line nor fill the
database: text is written a batch at a time (every ``flush_s``, or sooner once ``flush_bytes``
wait), and past ``max_bytes`` the log keeps its first half and its latest half, with a line in
between saying how much was cut. The build itself is never affected.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable

from .. import defaults
from ..store import BuildStore

log = logging.getLogger(__name__)
#: What stands where the middle of a long log was cut.
CUT_NOTE = "\n[... {cut} bytes of this log were cut here (server.max_log_bytes) ...]\n\n"


class BuildLog:
    """Writes one build's log to the store; :meth:`close` writes what is still waiting."""

    def __init__(self, store: BuildStore, build_id: int, *, max_bytes: int = defaults.MAX_LOG_BYTES,
                 flush_s: float = defaults.LOG_FLUSH_S, flush_bytes: int = defaults.LOG_FLUSH_CHARS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.build_id = build_id
        self.head_bytes = max_bytes // 2
        self.tail_bytes = max_bytes - self.head_bytes
        self.flush_s = flush_s
        self.flush_bytes = flush_bytes
        self.clock = clock
        # An earlier attempt's text counts as head: a build run again continues its log, adding
        # at most a tail's worth (its own cut note says what it cut).
        self._head_used = store.log_size(build_id)
        self._tail: collections.deque[tuple[int, int]] = collections.deque()  # (chunk id, bytes)
        self._tail_used = 0
        self._cut = 0
        self._note_id: int | None = None
        self._waiting: list[str] = []
        self._waiting_bytes = 0
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._flusher = threading.Thread(target=self._flush_now_and_then, name=f"log-{build_id}", daemon=True)
        self._flusher.start()

    def write(self, text: str) -> None:
        """Add text to the log; it is stored with the next batch."""
        if not text:
            return
        with self._lock:
            self._waiting.append(text)
            self._waiting_bytes += len(text.encode("utf-8", "surrogateescape"))
            if self._waiting_bytes >= self.flush_bytes:
                self._flush()

    def close(self) -> None:
        """Store what is waiting and stop the background flushes."""
        self._closed.set()
        self._flusher.join()
        with self._lock:
            self._flush()

    def _flush_now_and_then(self) -> None:
        while not self._closed.wait(self.flush_s):
            try:
                with self._lock:
                    self._flush()
            except Exception:  # the store is unwell: the build's own writes and close() try again
                log.exception("storing the log of build %s failed; trying again", self.build_id)

    def _flush(self) -> None:
        """Store the waiting text as head while there is room, then as tail, dropping the oldest tail."""
        if not self._waiting:
            return
        text, size = "".join(self._waiting), self._waiting_bytes
        self._waiting, self._waiting_bytes = [], 0
        if self._head_used < self.head_bytes:
            room = self.head_bytes - self._head_used
            head = text.encode("utf-8", "surrogateescape")[:room].decode("utf-8", "ignore")
            self.store.append_log(self.build_id, head)
            head_size = len(head.encode("utf-8", "surrogateescape"))
            self._head_used += head_size
            text, size = text[len(head):], size - head_size
            if not text:
                return
        if self._note_id is None:  # its place, between head and tail; it says something once a cut is made
            self._note_id = self.store.append_log(self.build_id, "\n")
        if size > self.tail_bytes:  # one batch longer than the whole tail keeps its end
            kept = text.encode("utf-8", "surrogateescape")[-self.tail_bytes:].decode("utf-8", "ignore")
            self._cut += size - len(kept.encode("utf-8", "surrogateescape"))
            text, size = kept, len(kept.encode("utf-8", "surrogateescape"))
        # Stored in pieces of an eighth of the tail at most, so dropping the oldest whole piece
        # never takes more than that from the tail's budget.
        piece = max(1, self.tail_bytes // 8)
        for start in range(0, len(text), piece):
            part = text[start:start + piece]
            part_size = len(part.encode("utf-8", "surrogateescape"))
            self._tail.append((self.store.append_log(self.build_id, part), part_size))
            self._tail_used += part_size
        dropped = []
        while self._tail_used > self.tail_bytes and len(self._tail) > 1:
            old_id, old_size = self._tail.popleft()
            dropped.append(old_id)
            self._tail_used -= old_size
            self._cut += old_size
        self.store.drop_log_chunks(dropped)
        if self._cut:
            self.store.replace_log_chunk(self._note_id, CUT_NOTE.format(cut=self._cut))
