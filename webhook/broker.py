"""How an idle worker learns of a queued build on a SQL broker, fast and without querying it all day.

kombu's SQLAlchemy transport asks the broker for a message once a second, each time a
write-locking transaction on SQLite: a build waited up to a second for an idle worker. Here:

* The embedded SQLite broker is a file on this host. The worker looks at the file (and its
  journal and WAL) every :data:`WATCH_S`, a ``stat`` each, and queries only when one of them
  changed, or when :data:`FALLBACK_S` passed without a query: a queued build waits about
  ``WATCH_S`` for an idle worker, and an idle worker costs next to nothing.
* Any other SQL broker (PostgreSQL) is queried every ``server.broker_poll_s``.

Publishing is one statement in one short transaction (:meth:`WatchingChannel._put`): kombu's own
goes through an ORM session that first selects the queue's row, then inserts, on every message
(about 1.5 ms of the webhook's path). The embedded SQLite broker is put in WAL mode by its first
publisher, as the state database is, and its commits do not wait for the disk
(:meth:`WatchingChannel._engine_from_config`): the build records are what must not be lost.

(kombu's own ``polling_interval`` option cannot be used: its SQLAlchemy transport hands every
transport option to ``create_engine``, which refuses it.) Redis blocks until a message comes
and needs none of this.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from queue import Empty
from typing import Any

import sqlalchemy as sa
from kombu import serialization
from kombu.transport.sqlalchemy import Channel as SQLChannel
from kombu.transport.sqlalchemy import Transport as SQLTransport
from kombu.transport.sqlalchemy import dumps
from sqlalchemy.engine import make_url

from .prepared import Prepared

log = logging.getLogger(__name__)

#: How often a worker looks at the SQLite broker's files.
WATCH_S = 0.02
#: The longest a worker goes without asking the SQLite broker itself (a change it could not see).
FALLBACK_S = 1.0
#: The Celery broker URL prefix of kombu's SQLAlchemy transport.
SQL_PREFIX = "sqla+"


def sqlite_files(url: str) -> tuple[str, ...] | None:
    """Return the files whose changes show a write to the SQLite database at ``url``, or ``None`` if it is no file."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return tuple(parsed.database + suffix for suffix in ("", "-journal", "-wal"))


def stamp(files: tuple[str, ...]) -> tuple[tuple[int, int] | None, ...]:
    """What the files look like now: each one's modification time and size (``None`` for a missing one)."""
    seen: list[tuple[int, int] | None] = []
    for path in files:
        try:
            status = os.stat(path)
        except FileNotFoundError:
            seen.append(None)
        else:
            seen.append((status.st_mtime_ns, status.st_size))
    return tuple(seen)


class Watch:
    """Says whether a SQLite broker may have a new message: its files changed, or the fallback came due."""

    def __init__(self, files: tuple[str, ...], *, fallback_s: float = FALLBACK_S, clock: Any = time.monotonic) -> None:
        self.files = files
        self.fallback_s = fallback_s
        self.clock = clock
        self._looked: dict[str, tuple[Any, float]] = {}

    def worth_asking(self, queue: str) -> bool:
        """Say whether to query ``queue`` now (and remember what the files looked like when it was)."""
        now, seen = self.clock(), stamp(self.files)
        before = self._looked.get(queue)
        if before is not None and before[0] == seen and now - before[1] < self.fallback_s:
            return False
        self._looked[queue] = (seen, now)
        return True


class WatchingChannel(SQLChannel):
    """kombu's SQLAlchemy channel, asking a SQLite broker only when its files say something changed, and publishing in one statement."""

    _put_statement: Any = None

    def _engine_from_config(self) -> sa.Engine:
        """kombu's engine; on SQLite in WAL mode, its commits do not wait for the disk (``synchronous=NORMAL``).

        In WAL mode that still survives any process dying; only the machine losing power can lose
        the last messages, and the build records (the source of truth, synced on every commit)
        then have the reconciler queue them again. A delivery's answer so waits for one sync to
        disk (its record), not two: about 0.7 ms less on this machine's disk, during which a web
        process serves nothing else.
        """
        engine = super()._engine_from_config()
        if engine.dialect.name == "sqlite":
            sa.event.listen(engine, "connect", _no_sync_wait)
        return engine

    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:
        """Store one message: the row kombu's ORM would insert, in one ``INSERT … SELECT`` naming the queue by name.

        A queue whose row does not exist yet inserts nothing; kombu's own way then creates it and
        stores the message. A failure raises, so the publish fails (the reconciler sends it again).
        """
        engine = self.ready_to_put()
        with engine.begin() as conn:
            stored = self._put_statement.count(conn, {"payload": dumps(payload), "queue": queue})
        if not stored:
            super()._put(queue, payload, **kwargs)

    def ready_to_put(self) -> sa.Engine:
        """Make the publishing statement (and see the broker in WAL mode) once; return the engine to publish on."""
        engine, _ = self._open()
        if self._put_statement is None:
            self._put_statement = _put_statement(self.message_cls.__table__, self.queue_cls.__table__)
            self.use_wal()  # already done at start (declare_queues), unless this process did not start it
        return engine

    def use_wal(self) -> None:
        """Put a SQLite broker in WAL mode (a commit syncs one file once); a broker busy just now stays as it is."""
        engine, _ = self._open()
        if engine.dialect.name != "sqlite":
            return
        try:
            with engine.connect() as conn:
                mode = conn.exec_driver_sql("PRAGMA journal_mode=WAL").scalar()
        except sa.exc.OperationalError:  # another process held it: a later start or publisher switches it
            log.info("the SQLite broker stays in its journal mode for now", exc_info=True)
            return
        if str(mode).lower() == "wal":
            engine.pool.dispose()  # connections opened before the switch wait for the disk: open new ones

    def _get(self, queue: str) -> Any:
        watch: Watch | None = self.connection.watch
        if watch is not None and not watch.worth_asking(queue):
            raise Empty()
        return super()._get(queue)


class WatchingSQLTransport(SQLTransport):
    """kombu's SQLAlchemy transport: a SQLite broker watched (see the module), any other polled."""

    Channel = WatchingChannel
    #: Set per Celery app by :func:`transport_for` (``server.broker_poll_s``).
    polling_interval = 0.05

    def __init__(self, client: Any, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        files = sqlite_files(client.hostname)
        self.watch = None if files is None else Watch(files)
        if self.watch is not None:
            self.polling_interval = WATCH_S


class SQLPublisher:
    """Puts task messages on a SQL broker straight from Celery's message, in one held channel.

    ``send_task`` goes through kombu's producer: a connection and channel taken from a pool,
    retry and declare wrappers, signals, then the channel's ``basic_publish``; about 0.6 ms of a
    delivery's answer. Here Celery still makes the message (``amqp.create_task_message``) and kombu
    its envelope (``prepare_message``, ``basic_publish``), on a channel held for the process: the
    row stored is the one ``send_task`` stores (a test compares them), for half the time. The queue
    was declared at start (:func:`webhook.worker.declare_queues`); if it is missing, kombu's own
    ``_put`` creates it. A failure raises and drops the channel (the next message opens another):
    the dispatcher then tries ``send_task``, whose retries outlast a broker busy for longer than
    its busy timeout, and failing that leaves the build to the reconciler.
    """

    def __init__(self, celery: Any) -> None:
        self.celery = celery
        self.queue: str = celery.conf.task_default_queue
        self._connection: Any = None
        self._lock = threading.Lock()

    @property
    def ready(self) -> bool:
        """Whether the channel is open and its publishing statement made (:meth:`warm`, or a message sent)."""
        return self._connection is not None and self._connection.default_channel._put_statement is not None

    def warm(self) -> None:
        """Do now what the first message would: open the channel, make the statement (kombu builds its table
        models: about 70 ms on this project's machine, which the first deliveries after a start waited for)."""
        with self._lock:
            try:
                self._channel().ready_to_put()
            except Exception:
                self._close()
                raise

    def send(self, name: str, args: list[Any], *, countdown_s: float | None = None) -> None:
        """Publish one message of task ``name`` with ``args`` to the default queue."""
        task_id = str(uuid.uuid4())
        headers, properties, body, _ = self.celery.amqp.create_task_message(
            task_id, name, args, {}, countdown=countdown_s, ignore_result=None, reply_to=self.celery.thread_oid,
            argsrepr=repr(args), kwargsrepr="{}")  # Celery's saferepr of a build id, without its cost
        content_type, content_encoding, data = serialization.dumps(body, serializer="json")
        with self._lock:
            try:
                channel = self._channel()
                message = channel.prepare_message(data, 0, content_type, content_encoding, headers,
                                                  {**properties, "delivery_mode": PERSISTENT})
                channel.basic_publish(message, exchange="", routing_key=self.queue)
            except Exception:
                self._close()
                raise

    def _channel(self) -> WatchingChannel:
        if self._connection is None:
            self._connection = self.celery.connection_for_write()
        return self._connection.default_channel

    def _close(self) -> None:
        if self._connection is not None:
            try:
                self._connection.release()
            finally:
                self._connection = None


#: kombu's delivery mode of a message kept across broker restarts (what Celery asks for).
PERSISTENT = 2


def _no_sync_wait(dbapi_connection: Any, _record: Any) -> None:
    """``synchronous=NORMAL`` on a broker connection in WAL mode; in a rollback journal it could corrupt on power loss."""
    if dbapi_connection.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal":
        dbapi_connection.execute("PRAGMA synchronous=NORMAL")


def _put_statement(messages: sa.Table, queues: sa.Table) -> Prepared:
    """``INSERT INTO <messages> … SELECT … FROM <queues> WHERE name = :queue``: a visible message of version 1, as kombu's model makes."""
    row = sa.select(sa.true(), sa.bindparam("payload", type_=sa.Text), sa.literal(1, sa.SmallInteger), queues.c.id)
    return Prepared(messages.insert().from_select(["visible", "payload", "version", "queue_id"],
                                                  row.where(queues.c.name == sa.bindparam("queue", type_=sa.String))))


def transport_for(poll_s: float) -> type[WatchingSQLTransport]:
    """The transport class for a Celery app whose SQL broker, if not a SQLite file, is asked every ``poll_s``."""
    return type("WatchingSQLTransport", (WatchingSQLTransport,), {"polling_interval": poll_s})
