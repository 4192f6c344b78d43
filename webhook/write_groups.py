"""Writes that arrive together share one transaction and one commit: one sync to disk, not one each.

On the embedded SQLite, each accepted delivery was a write transaction of its own, and its commit
waits for the disk (about 0.45 ms on this project's machine, half of it the sync) while the web
process, one event loop, serves nothing else. Under a burst of deliveries that is the largest
single cost of the intake. Here the deliveries being answered at the same moment write into one
transaction:

* the first (the leader) takes the write turn, writes its delivery, and then lets the other
  connections that have a request ready run (:attr:`WriteGroups.pause`, one turn of the event loop);
* each of them that reaches a write meanwhile (a member) writes its delivery into the open
  transaction, in a savepoint of its own, and waits;
* the leader commits, and every one of them answers once that commit is on disk: a 202 is as
  durable as before. If the commit fails, each of them fails (a 500, and the forge delivers again).

A member's write that fails is undone alone (its savepoint), and only that member sees the error.
A member reads what the members before it wrote, as it would have read their committed rows: the
writes of a group run one after another, never interleaved, as separate transactions would.

Only where writes take turns anyway and greenlets switch at known points: SQLite (one writer at a
time) in a process gevent has patched (the web process). Elsewhere :meth:`WriteGroups.run` is one
transaction per write, as before; PostgreSQL commits concurrent transactions together itself.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

import sqlalchemy as sa

from .prepared import Prepared

T = TypeVar("T")

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

    if not monkey.is_module_patched("socket"):
        return None
    import gevent

    return lambda: gevent.sleep(0)


class _Group:
    """One open transaction and the writes made in it, waiting for its commit."""

    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn
        self.members = 0
        self.done = threading.Event()  # gevent's, in the processes where groups form
        #: Why the transaction cannot commit (a savepoint that could not be undone), or why it did not.
        self.failure: BaseException | None = None

    def write(self, work: Callable[[sa.Connection], T]) -> T:
        """Run ``work`` in a savepoint: kept when it returns, undone when it raises (and the error raised)."""
        _SAVEPOINT.count(self.conn, {})
        try:
            result = work(self.conn)
        except BaseException:
            try:
                _ROLLBACK_TO.count(self.conn, {})
                _RELEASE.count(self.conn, {})
            except BaseException as exc:  # the others' writes can no longer be told from this one's
                self.failure = exc
            raise
        _RELEASE.count(self.conn, {})
        return result


class WriteGroups:
    """Runs writes in transactions they share with the writes ready at the same moment (see the module)."""

    def __init__(self, db: sa.Engine, *, pause: Callable[[], None] | None = None) -> None:
        """``pause``: let the other ready greenlets run once (:func:`cooperative_pause`); ``None``: a transaction per write."""
        self.db = db
        self.pause = pause
        #: A leader is between taking the write turn and committing: a write arriving now waits to join its group.
        self._leading = False
        #: The group a write arriving now joins: set only while its leader pauses, and no member is writing.
        self._open: _Group | None = None
        #: Set (and replaced) when a group opens or its leader is done: what waiting writes wait for.
        self._changed = threading.Event()

    def run(self, work: Callable[[sa.Connection], T]) -> T:
        """Run ``work(conn)`` in a write transaction; return what it returned once the transaction committed.

        What ``work`` raises is raised, and what it wrote is undone. ``work`` must not wait on
        anything that lets other greenlets run (a SQLite statement does not).
        """
        if self.pause is None:
            with self.db.begin() as conn:
                return work(conn)
        # Those arriving while a leader waits for the write turn (another transaction holds it) wait
        # for its group to open, not in the turn's queue: each would lead a group of one there.
        while True:
            if (group := self._open) is not None:
                return self._join(group, work)
            if not self._leading:
                return self._lead(work)
            self._changed.wait()

    def _announce(self) -> None:
        changed, self._changed = self._changed, threading.Event()
        changed.set()

    def _lead(self, work: Callable[[sa.Connection], T]) -> T:
        self._leading = True
        group: _Group | None = None
        try:
            with self.db.begin() as conn:
                result = work(conn)  # alone so far: its failure undoes the whole transaction
                group = _Group(conn)
                self._open = group
                self._announce()
                try:
                    self.pause()
                finally:
                    self._open = None
                if group.failure is not None:
                    raise GroupCommitFailed("a write of this transaction could not be undone") from group.failure
        except BaseException as exc:
            if group is not None and group.members:
                group.failure = exc
                group.done.set()
            raise
        finally:
            self._leading = False
            self._announce()
        if group.members:
            group.done.set()
        return result

    def _join(self, group: _Group, work: Callable[[sa.Connection], T]) -> T:
        self._open = None  # one member writes at a time
        try:
            result = group.write(work)
        finally:
            if group.failure is None:
                self._open = group
                self._announce()
        group.members += 1
        group.done.wait()
        if group.failure is not None:
            raise GroupCommitFailed("the transaction this write was made in did not commit") from group.failure
        return result
