"""The counts behind ``/metrics``: added up in memory by each process, kept in the database, read by any.

Web and worker processes (several of each, possibly on several hosts) all count, and whichever
web process a scrape reaches must answer for all of them; counters in one process's memory
would each tell a part. So every process adds its counts up in memory (one dictionary, under
a lock) and a daemon thread, started with the first count, adds them to ``metric_counts`` every
``METRICS_FLUSH_S`` in one transaction, and once more at exit. A flood of refused deliveries
costs one write every few seconds, not one each. A web process writes its own counts before it
answers a scrape; another process's last few seconds show at the next scrape. A process killed
outright (``SIGKILL``) loses at most its last few seconds of counts.

Every series and each of its label's values is declared here (:data:`SERIES`), so the table
holds a bounded number of rows and a scrape lists every series, zeros included. Gauges (builds
by state, the queue) are not counted: they are read from the build records at scrape time.
"""

from __future__ import annotations

import atexit
import itertools
import json
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from . import defaults, forges
from .build.timings import PHASES
from .outcomes import OUTCOMES
from .store import FINISHED, BuildState, BuildStore, metadata, upsert

log = logging.getLogger(__name__)

#: One row per series and label values: ``labels`` is their canonical JSON (sorted keys).
metric_counts = sa.Table(
    "metric_counts", metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("labels", sa.String(256), primary_key=True),
    sa.Column("value", sa.Float, nullable=False),
)

#: The ``forge`` label of a delivery to an endpoint no forge answers to.
OTHER_FORGE = "other"
#: What became of one attempt at a commit status or redeploy hook.
NOTIFICATION_OUTCOMES = ("delivered", "retrying", "failed")
#: Upper bounds of the phase duration histogram's buckets, in seconds: from a cached fetch to an hour's build.
PHASE_BUCKETS_S = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)


@dataclass(frozen=True)
class Series:
    """One counter or histogram: its name, what it means, and every value each of its labels may take."""

    name: str
    help: str
    labels: Mapping[str, tuple[str, ...]]
    #: Bucket upper bounds for a histogram; ``None`` for a counter.
    buckets: tuple[float, ...] | None = None

    def key(self, values: Mapping[str, str]) -> str:
        """Return the stored key of these label values; a label or value not declared is a defect (``ValueError``)."""
        if set(values) != set(self.labels) or any(v not in self.labels[k] for k, v in values.items()):
            raise ValueError(f"{self.name}: labels {dict(values)} are not among the declared ones")
        return json.dumps(dict(values), sort_keys=True, separators=(",", ":"))

    def combinations(self) -> Iterator[dict[str, str]]:
        """Yield every combination of label values, in declaration order."""
        for values in itertools.product(*self.labels.values()):
            yield dict(zip(self.labels, values, strict=True))


DELIVERIES = Series("pushbuild_deliveries", "Webhook deliveries received, by forge and what became of them",
                    {"forge": (*forges.FORGES, OTHER_FORGE), "outcome": OUTCOMES})
BUILDS_FINISHED = Series("pushbuild_builds_finished", "Build runs that ended, by how",
                         {"state": tuple(state.value for state in FINISHED)})
PUSH_RETRIES = Series("pushbuild_push_retries", "Registry pushes tried again after a temporary failure", {})
NOTIFICATIONS = Series("pushbuild_notifications", "Attempts at commit statuses and redeploy hooks, by outcome",
                       {"kind": ("status", "hook"), "outcome": NOTIFICATION_OUTCOMES})
PHASE_DURATION = Series("pushbuild_phase_duration_seconds", "How long each phase of a finished build took",
                        {"phase": PHASES}, buckets=PHASE_BUCKETS_S)
#: Every counted series.
SERIES = (DELIVERIES, BUILDS_FINISHED, PUSH_RETRIES, NOTIFICATIONS, PHASE_DURATION)


def bucket_of(buckets: Sequence[float], value: float) -> str:
    """Return the ``le`` label of the smallest bucket holding ``value`` (``+Inf`` beyond the last)."""
    return next((_le(bound) for bound in buckets if value <= bound), "+Inf")


def _le(bound: float) -> str:
    return repr(float(bound))


def _bucket_key(le: str, values: Mapping[str, str]) -> str:
    """The stored key of one histogram bucket: the series' label values and its ``le``."""
    return json.dumps({"le": le, **values}, sort_keys=True, separators=(",", ":"))


class Metrics:
    """This process's counts, added up in memory and added to the database in batches."""

    def __init__(self, db: sa.Engine | None, *, flush_every_s: float = defaults.METRICS_FLUSH_S) -> None:
        self.db = db
        self.flush_every_s = flush_every_s
        self._pending: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()
        self._flusher: threading.Thread | None = None

    @classmethod
    def discarding(cls) -> Metrics:
        """Counts that go nowhere (a pipeline or notifier made without a database to count in)."""
        return cls(None)

    # --- what is counted ---------------------------------------------------------

    def delivery(self, forge: str | None, outcome: str) -> None:
        """Count one delivery to ``/hooks/<forge>`` (``None``: an endpoint no forge answers to)."""
        forge_label = forge if forge in forges.REGISTRY else OTHER_FORGE
        self._add(DELIVERIES.name, DELIVERIES.key({"forge": forge_label, "outcome": outcome}))

    def build_ended(self, state: BuildState) -> None:
        """Count a build that ended as ``state`` (:attr:`webhook.store.BuildStore.ended`)."""
        self._add(BUILDS_FINISHED.name, BUILDS_FINISHED.key({"state": state.value}))

    def phases(self, timings: Mapping[str, float]) -> None:
        """Observe how long each phase of a build run took, however the run ended."""
        for phase, seconds in timings.items():
            self._observe(PHASE_DURATION, {"phase": phase}, seconds)

    def push_retried(self) -> None:
        """Count one registry push tried again."""
        self._add(PUSH_RETRIES.name, PUSH_RETRIES.key({}))

    def notification(self, kind: str, outcome: str) -> None:
        """Count one attempt at a commit status or hook (``kind``) and what became of it."""
        self._add(NOTIFICATIONS.name, NOTIFICATIONS.key({"kind": kind, "outcome": outcome}))

    def _observe(self, series: Series, values: Mapping[str, str], value: float) -> None:
        """Add one observation to a histogram: one to the bucket holding it, ``value`` to its sum."""
        self._add(f"{series.name}_sum", series.key(values), value)
        self._add(f"{series.name}_bucket", _bucket_key(bucket_of(series.buckets or (), value), values))

    # --- storing -----------------------------------------------------------------

    def _add(self, name: str, labels: str, amount: float = 1.0) -> None:
        """Add ``amount`` to one series in memory; the first count starts the thread that stores them."""
        if self.db is None:
            return
        with self._lock:
            self._pending[name, labels] = self._pending.get((name, labels), 0.0) + amount
            if self._flusher is None:
                self._flusher = _start_flusher(self)

    def flush(self) -> None:
        """Add what this process counted since the last flush to the database, in one transaction.

        Rows are written in key order, so two processes flushing at once lock them in the same
        order (no deadlock on PostgreSQL). On failure the counts are kept for the next flush.
        """
        with self._lock:
            pending, self._pending = self._pending, {}
        if not pending or self.db is None:
            return
        try:
            with self.db.begin() as conn:
                _add_counts(conn, sorted(pending.items()))
        except Exception:
            with self._lock:
                for key, amount in pending.items():
                    self._pending[key] = self._pending.get(key, 0.0) + amount
            raise

    def stored(self) -> dict[tuple[str, str], float]:
        """Return every stored count by (name, labels), this process's pending ones written first."""
        self.flush()
        with self.db.begin() as conn:
            return {(row.name, row.labels): row.value for row in conn.execute(sa.select(metric_counts))}


def _start_flusher(metrics: Metrics) -> threading.Thread:
    """Start the daemon thread that flushes ``metrics`` every ``flush_every_s``, and flush once more at exit.

    Both hold it weakly: a process's :class:`Metrics` lives as long as its services, and the
    thread ends once they are gone (tests make many).
    """
    ref = weakref.ref(metrics)
    atexit.register(_flush_quietly, ref)

    def loop(every_s: float) -> None:
        while True:
            time.sleep(every_s)
            if not _flush_quietly(ref):
                return

    thread = threading.Thread(target=loop, args=(metrics.flush_every_s,), name="metrics-flush", daemon=True)
    thread.start()
    return thread


def _flush_quietly(ref: weakref.ref[Metrics]) -> bool:
    """Flush the counts ``ref`` still points to, logging a failure; say whether they still exist."""
    metrics = ref()
    if metrics is None:
        return False
    try:
        metrics.flush()
    except Exception:  # the database is unwell: the counts wait for the next flush
        log.warning("storing metric counts failed; trying again in %ss", metrics.flush_every_s, exc_info=True)
    return True


def _add_counts(conn: sa.Connection, counts: Sequence[tuple[tuple[str, str], float]]) -> None:
    """Add each amount to its row, inserting rows not there yet; safe when other processes add at the same time."""
    for (name, labels), amount in counts:
        upsert(conn, metric_counts, {"name": name, "labels": labels, "value": amount}, keys=("name", "labels"),
               add=("value",))


# --- the exposition --------------------------------------------------------------


@dataclass(frozen=True)
class Gauges:
    """What is read from the build records at scrape time."""

    builds: Mapping[BuildState, int]
    queue_depth: int
    oldest_queued_age_s: float

    @classmethod
    def read(cls, store: BuildStore, *, now: float) -> Gauges:
        """Read the gauges from ``store`` as of ``now``."""
        builds = store.count_by_state()
        oldest = store.oldest_queued_at()
        return cls(builds=builds, queue_depth=builds[BuildState.QUEUED],
                   oldest_queued_age_s=0.0 if oldest is None else max(0.0, now - oldest))


def families(counts: Mapping[tuple[str, str], float], gauges: Gauges) -> list[Metric]:
    """Return every metric family: the declared series from ``counts`` (zeros for those never counted) and ``gauges``."""
    builds = GaugeMetricFamily("pushbuild_builds", "Build records kept, by state", labels=["state"])
    for state, count in gauges.builds.items():
        builds.add_metric([state.value], count)
    found: list[Metric] = [
        builds,
        GaugeMetricFamily("pushbuild_queue_depth", "Builds waiting in the queue", value=gauges.queue_depth),
        GaugeMetricFamily("pushbuild_queue_oldest_age_seconds",
                          "How long the build waiting longest has waited (0 when none waits)",
                          value=gauges.oldest_queued_age_s),
    ]
    for series in SERIES:
        found.append(_histogram(series, counts) if series.buckets else _counter(series, counts))
    return found


def _counter(series: Series, counts: Mapping[tuple[str, str], float]) -> Metric:
    family = CounterMetricFamily(series.name, series.help, labels=list(series.labels))
    for values in series.combinations():
        family.add_metric(list(values.values()), counts.get((series.name, series.key(values)), 0.0))
    return family


def _histogram(series: Series, counts: Mapping[tuple[str, str], float]) -> Metric:
    """The histogram of ``series``: its stored buckets count observations per bucket, cumulated here."""
    family = HistogramMetricFamily(series.name, series.help, labels=list(series.labels))
    for values in series.combinations():
        cumulative, buckets = 0.0, []
        for le in [*(_le(bound) for bound in series.buckets or ()), "+Inf"]:
            cumulative += counts.get((f"{series.name}_bucket", _bucket_key(le, values)), 0.0)
            buckets.append((le, cumulative))
        total = counts.get((f"{series.name}_sum", series.key(values)), 0.0)
        family.add_metric(list(values.values()), buckets, total)
    return family


def scrape(metrics: Metrics, store: BuildStore, *, clock: Callable[[], float] = time.time) -> list[Metric]:
    """Return every metric family as of now: this process's counts are written first."""
    return families(metrics.stored(), Gauges.read(store, now=clock()))
