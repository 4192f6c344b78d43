"""Writes that arrive together share one transaction and one commit: one sync to disk, not one each.

On the embedded SQLite, each accepted delivery was a write transaction of its own, and its commit
waits for the disk (about 0.45 ms on this project's machine, half of it the sync) while the web
process, one event loop, serves nothing else. Under a burst of deliveries that is the largest
single cost of the intake. Here the deliveries being answered at the same moment share one:

* the first to write (the leader) opens a group and lets the other greenlets that can run do so,
  once (:attr:`WriteGroups.pause`); each of them that reaches a write meanwhile adds its write to
  the group and waits. So do those arriving while the leader then waits for the write turn;
* holding the turn, the leader runs every write of the group, one after another, each in a
  savepoint of its own, and commits. Nothing else runs meanwhile: the write lock is never held
  while other requests are served (a stranger's large body being verified cannot stretch it);
* every writer answers once that commit is on disk: a 202 is as durable as before.

A group takes at most :data:`MAX_WRITES` writes, so the time the leader holds the loop stays
bounded; each write runs in its writer's context (what its log lines are about), not the leader's.

A write that fails (it raises) is undone alone (its savepoint), and only its writer sees the error.
If the transaction cannot commit, or a failure took the whole transaction with it (SQLite rolls
it all back on a full disk, for one), every writer of the group fails (a 500; the forge delivers
again). A write reads what the writes before it in the group wrote, as it would have read their
committed rows from transactions of their own.

Only where writes take turns anyway and greenlets switch at known points: SQLite (one writer at a
time) in a process gevent has patched (the web process). Elsewhere :meth:`WriteGroups.run` is one
transaction per write, as before; PostgreSQL commits concurrent transactions together itself.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import sqlalchemy as sa

from .prepared import Prepared

T = TypeVar("T")

#: The most writes one transaction takes: the leader makes them all without letting anything else run.
MAX_WRITES = 64

_SAVEPOINT = Prepared(sa.text("SAVEPOINT member"))
_RELEASE = Prepared(sa.text("RELEASE SAVEPOINT member"))
_ROLLBACK_TO = Prepared(sa.text("ROLLBACK TO SAVEPOINT member"))


class GroupCommitFailed(Exception):
    """The transaction a write was made in, with others', did not commit: the write is not recorded."""


def cooperative_pause(db: sa.Engine) -> Callable[[], None] | None:
    """One turn of gevent's loop, for a SQLite database in a process gevent patched; ``None`` anywhere else."""
    if db.dialect.name != "sqlite":
        return None
    from gevent import monkey  # the web process's server; nothing else imports gevent

    if not (monkey.is_module_patched("socket") and monkey.is_module_patched("threading")):  # its waits are threading's
        return None
    import gevent

    return lambda: gevent.sleep(0)


class _Write:
    """One writer's work in a group, and what became of it."""

    def __init__(self, work: Callable[[sa.Connection], Any]) -> None:
        self.work = work
        #: The writer's context (what its log lines are about), for the leader to run its work in.
        self.context = contextvars.copy_context()
        self.result: Any = None
        self.error: Exception | None = None

    def outcome(self, group: _Group) -> Any:
        """What the writer gets: its result once the group committed, else the error."""
        if self.error is not None:
            raise self.error
        if group.failure is not None:
            raise GroupCommitFailed("the transaction this write was made in did not commit") from group.failure
        return self.result


class _Group:
    """The writes that will share one transaction, and its outcome."""

    def __init__(self) -> None:
        self.writes: list[_Write] = []
        self.done = threading.Event()  # gevent's, in the processes where groups form
        #: Why the transaction did not commit.
        self.failure: BaseException | None = None

    def add(self, work: Callable[[sa.Connection], Any]) -> _Write:
        self.writes.append(write := _Write(work))
        return write

    @property
    def full(self) -> bool:
        return len(self.writes) >= MAX_WRITES

    def write_all(self, conn: sa.Connection) -> None:
        """Run each write in a savepoint: kept when it returns, undone when it raises (the error kept for its writer)."""
        for write in self.writes:
            _SAVEPOINT.count(conn, {})
            try:
                write.result = write.context.run(write.work, conn)
            except Exception as exc:
                write.error = exc
                _ROLLBACK_TO.count(conn, {})  # fails if the error ended the whole transaction: the group fails
            _RELEASE.count(conn, {})  # fails too if SQLite rolled the whole transaction back: the group fails


class WriteGroups:
    """Runs writes in transactions they share with the writes ready at the same moment (see the module)."""

    def __init__(self, db: sa.Engine, *, pause: Callable[[], None] | None = None) -> None:
        """``pause``: let the other ready greenlets run once (:func:`cooperative_pause`); ``None``: a transaction per write."""
        self.db = db
        self.pause = pause
        #: A leader's group is being written: a write arriving now waits to lead or join the next one.
        self._leading = False
        #: The group a write arriving now joins, until its leader starts writing it.
        self._open: _Group | None = None
        #: Set (and replaced) when a leader is done: what writes arriving meanwhile wait for.
        self._changed = threading.Event()

    def run(self, work: Callable[[sa.Connection], T]) -> T:
        """Run ``work(conn)`` in a write transaction; return what it returned once the transaction committed.

        What ``work`` raises is raised, and what it wrote is undone. In a group, ``work`` runs in
        the leader's greenlet, holding the write turn: it should not wait on anything slow.
        """
        if self.pause is None:
            with self.db.begin() as conn:
                return work(conn)
        while True:
            if (group := self._open) is not None:
                write = group.add(work)
                if group.full:
                    self._open = None  # the next writer waits for this group, then leads the next one
                group.done.wait()
                return write.outcome(group)
            if not self._leading:
                return self._lead(work)
            self._changed.wait()

    def _lead(self, work: Callable[[sa.Connection], T]) -> T:
        self._leading = True
        group = self._open = _Group()
        own = group.add(work)
        try:
            self.pause()  # others reach their writes and join
            with self.db.begin() as conn:  # the turn: others may still join while another transaction holds it
                self._open = None
                group.write_all(conn)
        except BaseException as exc:
            group.failure = exc
            if not isinstance(exc, Exception):  # the leader itself was interrupted
                raise
        finally:
            self._open = None
            group.done.set()
            self._leading = False
            changed, self._changed = self._changed, threading.Event()
            changed.set()
        return own.outcome(group)
