"""The build worker: Celery delivers build ids; build records decide what actually runs.

Celery gives at-least-once delivery (``acks_late``); the record's lease makes running a
build idempotent: a worker runs a build only after claiming it, renews its lease while it
works, and a reconciler re-dispatches builds whose lease expired or whose message was lost
(the embedded SQLite transport never redelivers an unacknowledged message by itself).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
import warnings
from collections.abc import Callable

from celery import Celery
from celery.exceptions import SecurityWarning
from sqlalchemy.exc import IntegrityError, OperationalError

from . import broker, defaults
from .build.housekeeping import Housekeeper
from .config import Config
from .errors import EngineError
from .logs import configure_logging, log_context
from .retention import Retention, RetentionPolicy
from .services import Services
from .store import BuildState, BuildStore

TASK_NAME = "pushbuild.build"
log = logging.getLogger(__name__)


def make_celery(config: Config) -> Celery:
    """Create the Celery app for ``config``'s broker; the web side only sends, the worker consumes.

    A SQL broker goes through :mod:`webhook.broker`'s transport, so an idle worker hears of a
    queued build within milliseconds on the embedded SQLite broker (``broker_poll_s`` on another).
    """
    url = config.server.celery_broker_url
    app = Celery("pushbuild", broker=url.removeprefix(broker.SQL_PREFIX), set_as_current=False)
    if url.startswith(broker.SQL_PREFIX):
        app.conf.broker_transport = broker.transport_for(config.server.broker_poll_s)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],  # never pickle: a message is a build id, nothing a broker could turn into code
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
    )
    if not url.startswith(broker.SQL_PREFIX):
        # Redis and SQS redeliver unacknowledged messages after this long; it must outlast a
        # build. (The SQLAlchemy transport passes these options to create_engine instead.)
        app.conf.broker_transport_options = {"visibility_timeout": max(3600, int(config.server.lease_s * 4))}
    return app


def declare_queues(celery: Celery, *, attempts: int = 5) -> None:
    """Create the broker's queues now, once, whoever else is creating them at the same moment (and a SQLite broker's WAL).

    On the SQLite broker kombu creates its tables, then selects a queue's row and inserts it if
    missing: processes starting together (``pushbuild serve``'s web and worker) both create and
    insert, and the loser's start failed ("table kombu_queue already exists", or the unique
    constraint), ending the whole service. Losing that race is harmless: look again.
    """
    for attempt in range(1, attempts + 1):
        try:
            with celery.connection_for_write() as connection:
                channel = connection.default_channel
                for queue in celery.amqp.queues.values():
                    queue.bind(channel).declare()
                if isinstance(channel, broker.WatchingChannel):
                    channel.use_wal()  # at start, not on a webhook's first publish
            return
        except (IntegrityError, OperationalError):
            if attempt == attempts:
                raise
            log.info("another process created the broker's queues at the same moment; looking again")
            time.sleep(0.1 * attempt)


class Dispatcher:
    """Hands recorded builds to the queue; a failure here only delays the build."""

    def __init__(self, celery: Celery, store: BuildStore) -> None:
        self.celery = celery
        self.store = store
        #: A SQL broker is published to directly (:class:`webhook.broker.SQLPublisher`); any other through ``send_task``.
        self._sql = broker.SQLPublisher(celery) if _publishes_directly(celery) else None

    def dispatch(self, build_id: int, *, marked: bool = False, countdown_s: float | None = None) -> bool:
        """Queue ``build_id``; say whether the broker took it (the reconciler retries if not).

        ``marked`` says the record already notes the dispatch (the webhook path records it with
        the build, saving a write per delivery); a failure then clears the mark.
        """
        try:
            self._send(build_id, countdown_s)
        except Exception:  # any broker failure: the record is durable, the reconciler resends
            log.warning("could not queue build %s; it will be re-dispatched", build_id, exc_info=True)
            if marked:
                self.store.mark_dispatched(build_id, at=None)
            return False
        if not marked:
            self.store.mark_dispatched(build_id)
        return True

    def warm(self) -> None:
        """Open the embedded SQLite broker's channel now, not on the first build (tens of ms that delivery waited).

        Only a broker that is a file here: a networked one could keep a starting process waiting.
        A failure is only logged; the first build opens the channel then, as it would have.
        """
        if self._sql is None or broker.sqlite_files(self.celery.conf.broker_url) is None:
            return
        try:
            self._sql.warm()
        except Exception:
            log.info("could not open the broker at start; the first build will", exc_info=True)

    def _send(self, build_id: int, countdown_s: float | None) -> None:
        if self._sql is not None:
            try:
                self._sql.send(TASK_NAME, [build_id], countdown_s=countdown_s)
                return
            except Exception:  # a busy or broken broker: Celery's own publishing, which retries, has a go
                log.info("publishing build %s directly failed; trying Celery's send_task", build_id, exc_info=True)
        self.celery.send_task(TASK_NAME, args=[build_id], countdown=countdown_s)


def _publishes_directly(celery: Celery) -> bool:
    """Say whether builds go to a SQL broker through SQLPublisher: no routing it would skip (make_celery sets none)."""
    transport = celery.conf.broker_transport
    return (isinstance(transport, type) and issubclass(transport, broker.WatchingSQLTransport)
            and not celery.conf.task_routes and celery.conf.task_serializer == "json")


class Leases:
    """The builds this process is running, and the thread that keeps their leases alive."""

    def __init__(self, store: BuildStore, *, owner: str, lease_s: float) -> None:
        self.store = store
        self.owner = owner
        self.lease_s = lease_s
        self._held: dict[int, threading.Event] = {}
        self._lock = threading.Lock()

    def hold(self, build_id: int) -> threading.Event:
        """Start renewing ``build_id``'s lease; the event is set once the build is no longer ours (cancelled)."""
        with self._lock:
            return self._held.setdefault(build_id, threading.Event())

    def release(self, build_id: int) -> None:
        """Stop renewing ``build_id``'s lease."""
        with self._lock:
            self._held.pop(build_id, None)

    def renew(self) -> None:
        """Extend every held lease once; tell the builds whose lease was taken from them (cancelled) to stop."""
        with self._lock:
            held = dict(self._held)
        still = self.store.renew(held, owner=self.owner, lease_s=self.lease_s)
        for build_id, lost in held.items():
            if build_id not in still:
                lost.set()


def _gave_up(interruptions: int) -> str:
    """The error of a build whose workers kept dying."""
    return f"the build was interrupted {interruptions} times (worker lost); giving up"


def every(interval_s: float, action: Callable[[], None], stop: threading.Event, name: str, *,
          first_s: float | None = None) -> threading.Thread:
    """Run ``action`` every ``interval_s`` (first after ``first_s``, if given) in a daemon thread until ``stop`` is set.

    Errors are logged, and the action runs again at its next turn.
    """

    def loop() -> None:
        wait_s = interval_s if first_s is None else first_s
        while not stop.wait(wait_s):
            wait_s = interval_s
            try:
                action()
            except Exception:
                log.exception("%s failed; trying again in %ss", name, interval_s)

    thread = threading.Thread(target=loop, name=name, daemon=True)
    thread.start()
    return thread


class BuildWorker:
    """Runs the builds Celery delivers to this process, and recovers lost ones."""

    def __init__(self, services: Services, dispatcher: Dispatcher, *, owner: str | None = None) -> None:
        server = services.config.server
        self.services = services
        self.dispatcher = dispatcher
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.leases = Leases(services.store, owner=self.owner, lease_s=server.lease_s)

    def run_build(self, build_id: int) -> None:
        """Claim and run one build; a build someone else holds or that already ended is skipped."""
        store, server = self.services.store, self.services.config.server
        record = store.get(build_id)
        repo = self.services.config.repo(record.forge, record.repo) if record else None
        limit = repo.max_concurrent_builds if repo else None
        build = store.claim(build_id, owner=self.owner, lease_s=server.lease_s, max_running=limit)
        if build is None:
            if limit is not None and (current := store.get(build_id)) and current.state is BuildState.QUEUED:
                log.info("build %s waits: %s already runs %s builds", build_id, record.repo, limit)
                self.dispatcher.dispatch(build_id, countdown_s=defaults.CONCURRENCY_RETRY_S)
                return
            log.info("build %s is finished or held by another worker; skipping", build_id)
            return
        if build.attempts > server.max_attempts:
            store.fail(build_id, _gave_up(build.attempts - 1))
            return
        lost = self.leases.hold(build_id)
        try:
            with log_context(build=build.id, repo=build.repo, forge=build.forge):
                outcome = self.services.pipeline().run(build, owner=self.owner, stop=lost)
        finally:
            self.leases.release(build_id)
        log.info("build=%s repo=%s sha=%s state=%s digest=%s", build.id, build.repo, build.sha,
                 outcome.state.value, outcome.digest)

    def reconcile(self) -> None:
        """Re-dispatch builds whose lease expired or that were queued too long ago."""
        server = self.services.config.server
        for build in self.services.store.lost(redispatch_after_s=server.redispatch_after_s):
            if build.state is BuildState.RUNNING and build.attempts >= server.max_attempts:
                self.services.store.fail(build.id, _gave_up(build.attempts))
                continue
            log.warning("re-dispatching build %s (%s, attempt %s)", build.id, build.state.value, build.attempts)
            self.dispatcher.dispatch(build.id)

    def start_background(self, stop: threading.Event) -> None:
        """Start the heartbeat and the reconciler (which runs once right away)."""
        server = self.services.config.server
        self.reconcile()
        every(server.heartbeat_s, self.leases.renew, stop, "lease-heartbeat")
        every(server.reconcile_every_s, self.reconcile, stop, "reconciler")
        every(defaults.DELIVERY_POLL_S, self.services.notifier.deliver_due, stop, "deliveries")
        if server.housekeeping_every_s is not None:
            every(server.housekeeping_every_s, lambda: self.housekeep(stop=stop), stop, "housekeeping",
                  first_s=min(defaults.HOUSEKEEPING_FIRST_S, server.housekeeping_every_s))

    def housekeep(self, *, stop: threading.Event | None = None) -> None:
        """Prune old build records, then clean the engine; an engine that does not answer is left for next time."""
        services = self.services
        Retention(services.store.db, RetentionPolicy.of(services.config.server)).prune(stop=stop)
        try:
            Housekeeper(services.config, services.store, services.engine).run()
        except EngineError as exc:
            log.warning("engine housekeeping skipped: %s", exc.message)


def run_worker(config: Config, *, concurrency: int | None = None, loglevel: str = "INFO") -> None:
    """Run a worker process until it is stopped: Celery consuming builds, plus the background loops."""
    configure_logging(log_format=config.server.log_format)
    services = Services(config)
    celery = make_celery(config)
    worker = BuildWorker(services, Dispatcher(celery, services.store))

    @celery.task(name=TASK_NAME)
    def build(build_id: int) -> None:
        """Run one recorded build."""
        worker.run_build(build_id)

    declare_queues(celery)
    # Celery warns every root worker to drop privileges; a pushbuild worker drives the Docker engine,
    # which is root-equivalent anyway (docs/security.md), and accepts JSON only (no pickle): the
    # warning only alarms whoever reads the output. So is its banner: one "ready" line says enough.
    warnings.filterwarnings("ignore", category=SecurityWarning)
    stop = threading.Event()
    worker.start_background(stop)
    try:
        celery.Worker(
            pool="threads", concurrency=concurrency or config.server.worker_concurrency,
            loglevel=loglevel, hostname=f"pushbuild@{socket.gethostname()}:{os.getpid()}",
            without_gossip=True, without_mingle=True, without_heartbeat=True, quiet=True,
        ).start()
    finally:
        stop.set()
