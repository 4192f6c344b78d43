"""Pruning build records: old builds, their logs, deliveries and attempts go; what other features need stays.

A build is **prunable** when all of these hold (see docs/operations.md, "Retention and disk"):

- it finished (succeeded, failed, skipped, cancelled) at least ``PRUNE_MIN_AGE_S`` ago;
- it is older than ``retention_days``, or beyond the newest ``keep_builds`` of its repository;
- it is not the newest build of its ref (forge, repository, ref): that one carries the ref's
  newest push keys, and ordering a late or replayed push against the ref starts from it;
- no build of its ref is queued or running: decisions about those (superseding, which push is
  newer) read the ref's recent builds, and must read the same ones;
- it is not one of the newest ``ORDERING_WINDOW`` succeeded git-tag builds of its repository
  (``store.releases``, which keeps release tags moving only forward);
- none of its deliveries is pending (the notifier is still trying them).

A build is deleted in three steps, each its own short transaction, so several workers can prune
at once on SQLite and PostgreSQL: **claim** (mark up to ``PRUNE_BATCH_BUILDS`` builds
``pruning_at``; on PostgreSQL rows another pruner is claiming are skipped), **delete the log**
``PRUNE_LOG_ROWS`` chunks at a time, then **delete the build** with its deliveries and attempts
while recording its keys in ``seen_pushes``. The last step counts what it deleted itself, so two
pruners finishing the same claim never count a build twice. A claimed build cannot be queued
again (``store.requeue``) nor have a delivery reopened (``deliveries.reopen``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from . import defaults
from .config import ServerConfig
from .notify.deliveries import DeliveryState, deliveries, delivery_attempts
from .refs import TAG_PREFIX
from .store import FINISHED, BuildState, build_logs, builds, seen_pushes

log = logging.getLogger(__name__)
DAY_S = 86400.0
_FINISHED = [state.value for state in FINISHED]
_UNFINISHED = [BuildState.QUEUED.value, BuildState.RUNNING.value]


@dataclass(frozen=True)
class RetentionPolicy:
    """How long build records are kept; ``None`` means no limit of that kind."""

    retention_s: float | None = defaults.RETENTION_DAYS * DAY_S
    keep_builds: int | None = defaults.KEEP_BUILDS
    replay_memory_s: float | None = defaults.REPLAY_MEMORY_DAYS * DAY_S
    batch: int = defaults.PRUNE_BATCH_BUILDS
    log_rows: int = defaults.PRUNE_LOG_ROWS
    min_age_s: float = defaults.PRUNE_MIN_AGE_S
    stale_claim_s: float = defaults.PRUNE_STALE_CLAIM_S

    @classmethod
    def of(cls, server: ServerConfig) -> RetentionPolicy:
        """The policy the ``[server]`` configuration sets."""
        return cls(
            retention_s=None if server.retention_days is None else server.retention_days * DAY_S,
            keep_builds=server.keep_builds,
            replay_memory_s=None if server.replay_memory_days is None else server.replay_memory_days * DAY_S,
        )

    @property
    def prunes(self) -> bool:
        """Whether any build can ever be pruned under this policy."""
        return self.retention_s is not None or self.keep_builds is not None


@dataclass
class PruneReport:
    """What one pruning run deleted (or, dry, would delete)."""

    builds: int = 0
    log_chunks: int = 0
    deliveries: int = 0
    attempts: int = 0
    memories_expired: int = 0

    def __str__(self) -> str:
        return (f"{self.builds} builds ({self.log_chunks} log chunks, {self.deliveries} deliveries, "
                f"{self.attempts} delivery attempts), {self.memories_expired} expired replay memories")


class Retention:
    """Prunes the build records of one database under a :class:`RetentionPolicy`."""

    def __init__(self, db: sa.Engine, policy: RetentionPolicy, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.policy = policy
        self.clock = clock

    def prune(self, *, stop: threading.Event | None = None) -> PruneReport:
        """Delete every prunable build, batch by batch, and forget expired replay memories."""
        report = PruneReport()
        stopped = stop.is_set if stop is not None else (lambda: False)
        while not stopped() and (stale := self._stale_claims()):
            self._delete(stale, report)
        if self.policy.prunes:
            for forge, repo in self._repositories():
                while not stopped() and (claimed := self._claim(forge, repo)):
                    before = report.builds
                    self._delete(claimed, report)
                    if report.builds == before:  # all kept after all (deliveries reopened): next run
                        break
        while not stopped() and (expired := self._expire_memories()):
            report.memories_expired += expired
        if report.builds or report.memories_expired:
            log.info("pruned %s", report)
        return report

    def dry_run(self) -> PruneReport:
        """Count what :meth:`prune` would delete now, deleting nothing."""
        report = PruneReport()
        with self.db.begin() as conn:
            for forge, repo in self._repositories(conn) if self.policy.prunes else []:
                ids = sa.select(builds.c.id).where(*self._prunable(conn, forge, repo))
                report.builds += conn.execute(sa.select(sa.func.count()).select_from(ids.subquery())).scalar_one()
                report.log_chunks += conn.execute(sa.select(sa.func.count()).where(build_logs.c.build_id.in_(ids))).scalar_one()
                chosen = sa.select(deliveries.c.id).where(deliveries.c.build_id.in_(ids))
                report.deliveries += conn.execute(sa.select(sa.func.count()).select_from(chosen.subquery())).scalar_one()
                report.attempts += conn.execute(sa.select(sa.func.count()).where(
                    delivery_attempts.c.delivery_id.in_(chosen))).scalar_one()
            if (cutoff := self._memory_cutoff()) is not None:
                report.memories_expired = conn.execute(sa.select(sa.func.count()).where(
                    seen_pushes.c.pruned_at < cutoff)).scalar_one()
        return report

    def _repositories(self, conn: sa.Connection | None = None) -> list[tuple[str, str]]:
        """Every (forge, repository) with builds, configured or not any more."""
        query = sa.select(builds.c.forge, builds.c.repo).distinct().order_by(builds.c.forge, builds.c.repo)
        if conn is not None:
            return [tuple(row) for row in conn.execute(query)]
        with self.db.begin() as own:
            return [tuple(row) for row in own.execute(query)]

    def _nth_newest_id(self, conn: sa.Connection, n: int, *conditions: sa.ColumnElement[bool]) -> int | None:
        """The id of the ``n``-th newest build meeting ``conditions``, or ``None`` if there are fewer."""
        query = sa.select(builds.c.id).where(*conditions).order_by(builds.c.id.desc()).offset(n - 1).limit(1)
        return conn.execute(query).scalar()

    def _prunable(self, conn: sa.Connection, forge: str, repo: str) -> list[sa.ColumnElement[bool]]:
        """The conditions a build of one repository meets when it may be pruned now (module docstring)."""
        policy, now = self.policy, self.clock()
        same_repo = (builds.c.forge == forge, builds.c.repo == repo)
        expired: list[sa.ColumnElement[bool]] = []
        if policy.retention_s is not None:
            expired.append(builds.c.created_at < now - policy.retention_s)
        if policy.keep_builds is not None and (cutoff := self._nth_newest_id(conn, policy.keep_builds, *same_repo)):
            expired.append(builds.c.id < cutoff)
        release = sa.and_(builds.c.state == BuildState.SUCCEEDED.value, builds.c.ref.startswith(TAG_PREFIX))
        oldest_held = self._nth_newest_id(conn, defaults.ORDERING_WINDOW, *same_repo, release) or 0
        other = builds.alias("other")
        same_ref = (other.c.forge == builds.c.forge, other.c.repo == builds.c.repo, other.c.ref == builds.c.ref)
        return [
            *same_repo,
            builds.c.state.in_(_FINISHED),
            builds.c.pruning_at.is_(None),
            sa.func.coalesce(builds.c.finished_at, builds.c.created_at) < now - policy.min_age_s,
            sa.or_(*expired) if expired else sa.false(),
            sa.exists().where(*same_ref, other.c.id > builds.c.id),
            ~sa.exists().where(*same_ref, other.c.state.in_(_UNFINISHED)),
            ~sa.and_(release, builds.c.id >= oldest_held),
            ~sa.exists().where(deliveries.c.build_id == builds.c.id,
                               deliveries.c.state == DeliveryState.PENDING.value),
        ]

    def _claim(self, forge: str, repo: str) -> list[int]:
        """Mark up to a batch of prunable builds of one repository as being pruned; return their ids."""
        with self.db.begin() as conn:
            chosen = (sa.select(builds.c.id).where(*self._prunable(conn, forge, repo))
                      .order_by(builds.c.id).limit(self.policy.batch).with_for_update(skip_locked=True))
            ids = list(conn.execute(chosen).scalars())
            if not ids:
                return []
            claimed = conn.execute(
                builds.update().where(builds.c.id.in_(ids), builds.c.pruning_at.is_(None),
                                      builds.c.state.in_(_FINISHED))
                .values(pruning_at=self.clock()).returning(builds.c.id))
            return sorted(claimed.scalars())

    def _stale_claims(self) -> list[int]:
        """Builds another pruner claimed long ago and never deleted (it died): a batch of them to finish."""
        query = (sa.select(builds.c.id)
                 .where(builds.c.pruning_at < self.clock() - self.policy.stale_claim_s)
                 .order_by(builds.c.id).limit(self.policy.batch))
        with self.db.begin() as conn:
            return list(conn.execute(query).scalars())

    def _delete(self, ids: Sequence[int], report: PruneReport) -> None:
        """Delete claimed builds: their logs chunk by chunk, then the rows, remembering their keys."""
        while True:
            with self.db.begin() as conn:
                chunk = sa.select(build_logs.c.id).where(build_logs.c.build_id.in_(ids)).limit(self.policy.log_rows)
                deleted = conn.execute(build_logs.delete().where(build_logs.c.id.in_(chunk))).rowcount
            report.log_chunks += deleted
            if deleted < self.policy.log_rows:
                break
        with self.db.begin() as conn:
            rows = conn.execute(
                sa.select(builds.c.id, builds.c.delivery_key, builds.c.push_key, builds.c.state, builds.c.created_at,
                          builds.c.forge, builds.c.repo, builds.c.ref, builds.c.sha, builds.c.before)
                .where(builds.c.id.in_(ids), builds.c.pruning_at.is_not(None)).with_for_update()).all()
            pending = set(conn.execute(sa.select(deliveries.c.build_id).where(
                deliveries.c.build_id.in_([r.id for r in rows]),
                deliveries.c.state == DeliveryState.PENDING.value)).scalars())
            if pending:  # a delivery reopened just as the build was claimed: keep the build after all
                conn.execute(builds.update().where(builds.c.id.in_(pending)).values(pruning_at=None))
            rows = [r for r in rows if r.id not in pending]
            gone = [r.id for r in rows]
            if not gone:
                return
            owed = sa.select(deliveries.c.id).where(deliveries.c.build_id.in_(gone))
            report.attempts += conn.execute(
                delivery_attempts.delete().where(delivery_attempts.c.delivery_id.in_(owed))).rowcount
            report.deliveries += conn.execute(deliveries.delete().where(deliveries.c.build_id.in_(gone))).rowcount
            report.log_chunks += conn.execute(build_logs.delete().where(build_logs.c.build_id.in_(gone))).rowcount
            # Every pruned push is remembered: its keys answer a replay "duplicate", and its commit and
            # `before` keep linking older pushes of its ref to newer ones (store.of_ref).
            conn.execute(seen_pushes.delete().where(sa.or_(
                seen_pushes.c.delivery_key.in_([r.delivery_key for r in rows if r.delivery_key]),
                seen_pushes.c.push_key.in_([r.push_key for r in rows if r.push_key]))))
            now = self.clock()
            conn.execute(seen_pushes.insert(), [
                {"delivery_key": r.delivery_key, "push_key": r.push_key, "build_id": r.id, "state": r.state,
                 "created_at": r.created_at, "pruned_at": now, "forge": r.forge, "repo": r.repo, "ref": r.ref,
                 "sha": r.sha, "before": r.before} for r in rows])
            report.builds += conn.execute(builds.delete().where(builds.c.id.in_(gone))).rowcount

    def _memory_cutoff(self) -> float | None:
        """Memories of pushes pruned before this are forgotten (``None``: kept for ever)."""
        return None if self.policy.replay_memory_s is None else self.clock() - self.policy.replay_memory_s

    def _expire_memories(self) -> int:
        """Forget one batch of expired replay memories; return how many."""
        if (cutoff := self._memory_cutoff()) is None:
            return 0
        with self.db.begin() as conn:
            chunk = sa.select(seen_pushes.c.id).where(seen_pushes.c.pruned_at < cutoff).limit(self.policy.log_rows)
            return conn.execute(seen_pushes.delete().where(seen_pushes.c.id.in_(chunk))).rowcount
