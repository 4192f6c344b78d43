"""Build records: the source of truth for what was accepted and how it ended.

One SQLAlchemy code path serves SQLite (the embedded default) and server databases. A build
moves ``queued → running → succeeded | failed``; a worker holds a running build under a
lease it renews, so a build whose worker died can be found and run again.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from . import defaults
from .events import PushEvent
from .fair_lock import FairLock
from .ordering import is_newer, superseded, superseded_reason
from .prepared import Prepared
from .refs import TAG_PREFIX, is_branch, short_name
from .timestamps import iso_time
from .write_groups import WriteGroups

metadata = sa.MetaData()

builds = sa.Table(
    "builds", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("repo", sa.String(512), nullable=False, index=True),
    sa.Column("forge", sa.String(32), nullable=False),
    sa.Column("ref", sa.String(1024), nullable=False),
    sa.Column("sha", sa.String(64), nullable=False),
    sa.Column("before", sa.String(64)),
    sa.Column("pusher", sa.String(256)),
    sa.Column("default_branch", sa.String(1024)),
    sa.Column("changed_paths", sa.Text),
    sa.Column("delivery_key", sa.String(512), unique=True),
    #: A hash of what a forge's push changed (forge, repository, ref, before, after): a replayed
    #: delivery under a new delivery id carries the same push and is recorded once.
    sa.Column("push_key", sa.String(64)),
    sa.Column("state", sa.String(16), nullable=False, index=True),
    sa.Column("tags", sa.Text, nullable=False, default="[]"),
    sa.Column("digest", sa.String(128)),
    sa.Column("error", sa.Text),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("lease_owner", sa.String(256)),
    sa.Column("lease_expires_at", sa.Float),
    sa.Column("dispatched_at", sa.Float),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("started_at", sa.Float),
    sa.Column("finished_at", sa.Float),
    #: Set when a pruner has chosen the build for deletion (see retention.py): its log is being
    #: deleted, and it can no longer be queued again.
    sa.Column("pruning_at", sa.Float),
    #: When the build last entered the queue: recorded, or queued again (``requeue``); its queue wait starts here.
    sa.Column("queued_at", sa.Float),
    #: How long each phase of its last run took, as JSON {phase: seconds} in the order they ran (build/timings.py).
    sa.Column("timings", sa.Text),
    #: The size of the tar stream its last run sent the engine as the build context.
    sa.Column("context_bytes", sa.BigInteger),
)

sa.Index("ix_builds_push_key", builds.c.push_key, unique=True)
sa.Index("ix_builds_forge_repo_ref", builds.c.forge, builds.c.repo, builds.c.ref)
#: A branch's queued builds, which each new push of it reads (BuildStore._supersede): without it the
#: lookup went through every queued build of every repository, 8.6 ms a delivery with 20,000 waiting.
sa.Index("ix_builds_forge_repo_ref_state", builds.c.forge, builds.c.repo, builds.c.ref, builds.c.state)
#: Each repository's builds that a forge's delivery recorded, newest last: its last delivery, for the
#: console's /repos (webhook.last_delivery), is one entry, however many manual builds came after it.
sa.Index("ix_builds_delivered", builds.c.forge, builds.c.repo, builds.c.id,
         sqlite_where=builds.c.push_key.is_not(None), postgresql_where=builds.c.push_key.is_not(None))
#: When the queued builds entered the queue, in order (BuildStore.oldest_queued_at, on every /metrics scrape).
sa.Index("ix_builds_state_queued_at", builds.c.state, builds.c.queued_at)
#: Whether a push of a branch followed a commit (named it as the one it replaced): one index entry (ordering.superseded).
sa.Index("ix_builds_forge_repo_ref_before", builds.c.forge, builds.c.repo, builds.c.ref, builds.c.before)

#: Which ref owns each tag made from a ref's name: the first to push it (see rules.BuildPlan.named_tags).
image_tags = sa.Table(
    "image_tags", metadata,
    sa.Column("tag", sa.String(512), primary_key=True),  # <image>:<tag>
    sa.Column("forge", sa.String(32), nullable=False),
    sa.Column("repo", sa.String(512), nullable=False),
    sa.Column("ref", sa.String(1024), nullable=False),
    sa.Column("claimed_at", sa.Float, nullable=False),
)

build_logs = sa.Table(
    "build_logs", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("build_id", sa.Integer, sa.ForeignKey("builds.id"), nullable=False, index=True),
    sa.Column("text", sa.Text, nullable=False),
)


#: What pruning remembers of each build it deletes, so a replayed delivery is still answered
#: "duplicate": the build's delivery and push keys (see :meth:`BuildStore.record`), its id and
#: state, and when it was accepted. Rows expire ``replay_memory_days`` after acceptance.
seen_pushes = sa.Table(
    "seen_pushes", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("delivery_key", sa.String(512), unique=True),
    sa.Column("push_key", sa.String(64), unique=True),
    sa.Column("build_id", sa.Integer, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False, index=True),
    sa.Column("pruned_at", sa.Float, nullable=False, index=True),
    #: What ordering needs of the push (which commit it made the ref point to, and from which):
    #: a pruned push still links an older push of the branch to the newer ones (ordering.is_newer).
    sa.Column("forge", sa.String(32)),
    sa.Column("repo", sa.String(512)),
    sa.Column("ref", sa.String(1024)),
    sa.Column("sha", sa.String(64)),
    sa.Column("before", sa.String(64)),
)

#: A branch's latest pruned pushes, newest first (BuildStore.of_ref, ordering): read in order, not
#: sorted from every push of the branch that pruning ever remembered. (It replaces an index on
#: (forge, repo, ref) alone, which databases made before keep: harmless.)
sa.Index("ix_seen_pushes_forge_repo_ref_build", seen_pushes.c.forge, seen_pushes.c.repo, seen_pushes.c.ref,
         seen_pushes.c.build_id)
sa.Index("ix_seen_pushes_forge_repo_ref_before", seen_pushes.c.forge, seen_pushes.c.repo, seen_pushes.c.ref,
         seen_pushes.c.before)


class BuildState(str, enum.Enum):
    """Where a build is in its life."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    #: Nothing under the repository's ``paths`` changed; ``error`` says so.
    SKIPPED = "skipped"
    #: A newer push to the same branch made it moot before it started; ``error`` says which.
    CANCELLED = "cancelled"


FINISHED = (BuildState.SUCCEEDED, BuildState.FAILED, BuildState.SKIPPED, BuildState.CANCELLED)
#: What may be queued again: builds that moved no tag and fired no hook. A succeeded build stays
#: succeeded for ever: the guards that keep branch tags and hooks from going back to an older push
#: count on it (rebuild what a ref holds with a new build instead).
RETRYABLE = (BuildState.FAILED, BuildState.SKIPPED, BuildState.CANCELLED)


@dataclass(frozen=True)
class Build:
    """One build record as stored."""

    id: int
    repo: str
    forge: str
    ref: str
    sha: str
    before: str | None
    pusher: str | None
    default_branch: str | None
    state: BuildState
    tags: tuple[str, ...]
    digest: str | None
    error: str | None
    attempts: int
    created_at: float
    started_at: float | None
    finished_at: float | None
    changed_paths: tuple[str, ...] | None = None
    #: When it last entered the queue (``None`` for records older than the column: ``created_at`` then).
    queued_at: float | None = None
    #: Seconds each phase of its last run took, in the order they ran; only phases that ran.
    timings: dict[str, float] = field(default_factory=dict, hash=False)
    #: Bytes of build context its last run sent the engine, if it sent one.
    context_bytes: int | None = None

    @classmethod
    def from_row(cls, row: Any) -> Build:
        """Build the value from a ``builds`` row."""
        return cls.from_mapping(row._mapping)

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any]) -> Build:
        """Build the value from a ``builds`` row's columns by name."""
        return cls(
            id=m["id"], repo=m["repo"], forge=m["forge"], ref=m["ref"], sha=m["sha"],
            before=m["before"], pusher=m["pusher"], default_branch=m["default_branch"],
            state=BuildState(m["state"]), tags=tuple(json.loads(m["tags"])), digest=m["digest"],
            error=m["error"], attempts=m["attempts"], created_at=m["created_at"],
            started_at=m["started_at"], finished_at=m["finished_at"],
            changed_paths=None if m["changed_paths"] is None else tuple(json.loads(m["changed_paths"])),
            queued_at=m["queued_at"], timings=json.loads(m["timings"]) if m["timings"] else {},
            context_bytes=m["context_bytes"],
        )

    @classmethod
    def remembered(cls, row: Any) -> Build:
        """Build the value of a pruned push from its ``seen_pushes`` row: what ordering needs, nothing more."""
        return cls(id=row.build_id, repo=row.repo, forge=row.forge, ref=row.ref, sha=row.sha, before=row.before,
                   pusher=None, default_branch=None, state=BuildState(row.state), tags=(), digest=None, error=None,
                   attempts=0, created_at=row.created_at, started_at=None, finished_at=None)

    def to_json(self) -> dict[str, Any]:
        """Return the record as the API shows it."""
        return {
            "id": self.id, "repo": self.repo, "forge": self.forge, "ref": self.ref, "sha": self.sha,
            "before": self.before, "pusher": self.pusher, "state": self.state.value,
            "tags": list(self.tags), "digest": self.digest, "error": self.error,
            "attempts": self.attempts, "created_at": iso_time(self.created_at),
            "started_at": iso_time(self.started_at), "finished_at": iso_time(self.finished_at),
            "timings": {phase: round(seconds, 3) for phase, seconds in self.timings.items()},
            "context_bytes": self.context_bytes,
        }


@dataclass(frozen=True)
class Recorded:
    """What :meth:`BuildStore.accept` did with a push: its builds (new, or recorded before), and what they replaced."""

    builds: tuple[Build, ...]
    #: ``False``: the push was recorded before (a duplicate), and ``builds`` are what it recorded then.
    created: bool
    #: (cancelled build, the new build that replaced it) for each queued build a new one superseded.
    cancelled: tuple[tuple[int, int], ...] = ()


def create_db_engine(url: str) -> sa.Engine:
    """Create an SQLAlchemy engine; SQLite gets WAL, a busy timeout and write-locking transactions."""
    if not url.startswith("sqlite"):
        # Ask for UTF-8 whatever the database's encoding: on an SQL_ASCII database the client
        # encoding defaults to SQL_ASCII too, and psycopg then returns text columns as bytes.
        is_postgres = sa.engine.make_url(url).get_backend_name() == "postgresql"
        return sa.create_engine(url, pool_pre_ping=True,
                                connect_args={"client_encoding": "utf8"} if is_postgres else {})
    engine = sa.create_engine(url, connect_args={"timeout": defaults.SQLITE_BUSY_TIMEOUT_MS / 1000})

    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # let the "begin" hook below issue BEGIN
        dbapi_connection.execute("PRAGMA journal_mode=WAL")
        dbapi_connection.execute(f"PRAGMA busy_timeout={defaults.SQLITE_BUSY_TIMEOUT_MS}")

    # Threads of one process take turns at the write lock here, in order, instead of in
    # SQLite's busy handler, which sleeps up to 100 ms between tries and makes a long tail.
    turns = FairLock()
    #: The connections holding the turn. Not in ``connection.info``: that is the DBAPI connection's,
    #: and an invalidated connection (a statement interrupted) cannot reach it to give the turn back.
    holding: set[Any] = set()

    def give_back(connection: Any) -> None:
        if connection in holding:  # once, whichever of a failed begin, a commit or a rollback comes first
            holding.discard(connection)
            turns.release()

    @sa.event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        turns.acquire()
        holding.add(connection)
        try:
            # Take the write lock up front: upgrading a read lock later can fail at once with
            # "database is locked" when two processes write, whatever the busy timeout.
            _BEGIN_IMMEDIATE.count(connection, {})
        except BaseException:
            give_back(connection)
            raise

    for name in ("commit", "rollback"):
        sa.event.listen(engine, name, give_back)

    return engine


#: The dialects whose INSERT takes ON CONFLICT DO UPDATE (no driver is imported for them).
_UPSERTS = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}


def upsert(conn: sa.Connection, table: sa.Table, row: Mapping[str, Any], *, keys: Sequence[str],
           add: Sequence[str] = ()) -> None:
    """Insert ``row``, or update the row with its ``keys``: columns in ``add`` are added to, the others replaced.

    One statement on SQLite and PostgreSQL (``INSERT … ON CONFLICT DO UPDATE``), so processes
    writing the same row at once never collide; elsewhere an update, else an insert in a
    savepoint, updating after all when another process inserted the row meanwhile.
    """
    def new_value(name: str, given: Any) -> Any:
        return table.c[name] + given if name in add else given

    if (insert := _UPSERTS.get(conn.dialect.name)) is not None:
        statement = insert(table).values(**row)
        changes = {name: new_value(name, statement.excluded[name]) for name in row if name not in keys}
        conn.execute(statement.on_conflict_do_update(index_elements=[table.c[k] for k in keys], set_=changes))
        return
    where = sa.and_(*(table.c[k] == row[k] for k in keys))
    changes = {name: new_value(name, value) for name, value in row.items() if name not in keys}
    if conn.execute(table.update().where(where).values(**changes)).rowcount:
        return
    try:
        with conn.begin_nested():
            conn.execute(table.insert().values(**row))
    except IntegrityError:
        conn.execute(table.update().where(where).values(**changes))


class BuildStore:
    """Reads and writes build records and their logs."""

    def __init__(self, db: sa.Engine, *, clock: Callable[[], float] = time.time,
                 ended: Callable[[BuildState], None] | None = None, writes: WriteGroups | None = None) -> None:
        self.db = db
        #: How accepted pushes are written: a transaction each, or shared with those arriving together (the web process).
        self.writes = writes or WriteGroups(db)
        self.clock = clock
        #: Told each time a build ends (finished, failed, cancelled), once per ending: what metrics count.
        self.ended = ended or (lambda state: None)

    def create_schema(self) -> None:
        """Create the tables if they do not exist, and add columns and indexes newer versions added.

        Web and worker processes start together and each does this: on PostgreSQL they take
        turns under an advisory lock (two concurrent CREATE TABLEs collide in its catalogue);
        SQLite's write lock serialises them already.
        """
        with self.db.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(_ADVISORY_LOCK, {"key": _SCHEMA_LOCK_KEY})
            metadata.create_all(conn)
            _add_missing_columns(conn)

    def ping(self) -> None:
        """Raise if the database cannot be reached."""
        with self.db.connect() as conn:
            conn.execute(sa.select(1))

    def record(self, events: Sequence[PushEvent], *, dispatching: bool = False,
               from_forge: bool = False) -> tuple[list[Build], bool]:
        """Record the refs of one accepted push as queued builds, all or none; return them and whether they are new.

        See :meth:`accept`, which this is without cancelling anything.
        """
        recorded = self.accept(events, dispatching=dispatching, from_forge=from_forge)
        return list(recorded.builds), recorded.created

    def accept(self, events: Sequence[PushEvent], *, dispatching: bool = False, from_forge: bool = False,
               supersede: bool = False) -> Recorded:
        """Record the refs of one accepted push as queued builds, all or none, in one transaction; say what became of it.

        A delivery already recorded (same forge, repository and delivery id) returns the
        existing builds, not created: forges resend deliveries, and each builds once. With
        ``from_forge``, so does a push already recorded (same forge, repository, ref, before and
        after), whatever its delivery id: a captured delivery replayed under a new id.

        With ``supersede``, each new build of a branch cancels the queued builds of that branch
        it is newer than (:func:`webhook.ordering.superseded`), in the same transaction: one
        commit (one sync to disk) per accepted delivery, and no moment at which the new build is
        recorded but the builds it replaces still look runnable to a worker.

        A build pruned since is still remembered (``seen_pushes``): its delivery is a duplicate
        too, answered with the build as remembered (id, state, acceptance time, and the push).
        The memory is looked up after the insert, in its transaction: on PostgreSQL a pruner
        deleting the original row makes the insert wait for its commit, which also commits the
        memory this lookup then sees.
        """
        if from_forge:  # one delivery naming the same change twice records it once
            unique: dict[str, PushEvent] = {}
            for event in events:
                unique.setdefault(push_key(event), event)
            events = list(unique.values())
        keys = [delivery_key(e) if e.delivery_id else None for e in events]
        push_keys = [push_key(e) if from_forge else None for e in events]
        now = self.clock()
        rows = [dict(
            repo=e.repo, forge=e.forge, ref=e.ref, sha=e.sha, before=e.before, pusher=e.pusher,
            default_branch=e.default_branch, delivery_key=key, push_key=content, state=BuildState.QUEUED.value,
            changed_paths=None if e.changed_paths is None else json.dumps(list(e.changed_paths)),
            tags="[]", attempts=0, created_at=now, queued_at=now,
            dispatched_at=now if dispatching else None,
        ) for e, key, content in zip(events, keys, push_keys, strict=True)]
        delivery_keys, content_keys = [k for k in keys if k], [k for k in push_keys if k]
        insert = _insert_new(self.db.dialect.name) if self.db.dialect.insert_returning else None  # SQLite < 3.35

        def record(conn: sa.Connection) -> Recorded:
            if supersede and conn.dialect.name == "postgresql":
                # SQLite runs write transactions one at a time; PostgreSQL's would not see each
                # other's new builds, and two pushes of a branch at once would both stay queued.
                for key in sorted({_branch_lock_key(e) for e in events if is_branch(e.ref)}):
                    conn.execute(_ADVISORY_LOCK, {"key": key})
            made: list[Build] = []
            for row in rows:
                if insert is None:
                    made.append(_inserted(conn.execute(_INSERT, row).inserted_primary_key[0], row))
                    continue
                new = insert.rows(conn, row)
                if not new and not made:  # recorded before: answered in this transaction, which wrote nothing
                    return recall(conn)
                if not new:
                    raise _Seen()  # all or none: undo what this delivery inserted
                made.append(_inserted(new[0].id, row))
            if (delivery_keys or content_keys) and _seen_before(conn, delivery_keys, content_keys):
                raise _Seen()
            cancelled: list[tuple[int, int]] = []
            if supersede:
                for build in made:
                    if is_branch(build.ref):
                        cancelled += ((old, build.id) for old in self._supersede(conn, build))
            return Recorded(builds=tuple(made), created=True, cancelled=tuple(cancelled))

        def recall(conn: sa.Connection) -> Recorded:
            return Recorded(builds=tuple(self._recorded(conn, events, keys, push_keys)), created=False)

        try:
            recorded = self.writes.run(record)
        except (IntegrityError, _Seen):
            recalled = self.writes.run(recall)
            if not recalled.builds:  # the conflict was not with a recorded push (a commit that failed)
                raise
            return recalled
        for _ in recorded.cancelled:
            self.ended(BuildState.CANCELLED)
        return recorded

    def _supersede(self, conn: sa.Connection, newest: Build) -> list[int]:
        """Cancel, in ``conn``'s transaction, the queued builds of ``newest``'s branch that it replaces; return their ids.

        The same pushes as :meth:`of_ref` reads, with only what ordering needs of them (id, commit,
        ``before``); the whole window is read only when something of the branch is queued.
        """
        window = {"forge": newest.forge, "repo": newest.repo, "ref": newest.ref}
        waiting = sorted((p for p in _QUEUED_WINDOW.rows(conn, window) if p.id != newest.id), key=lambda p: p.id)
        if not waiting:
            return []  # nothing to compare
        replaced = superseded(newest, waiting, lambda: _pushes_of_ref(conn, window),
                              followed=lambda: bool(_FOLLOWED.rows(conn, {**window, "sha": newest.sha})[0][0]))
        reason = superseded_reason(newest.id, newest.sha, newest.ref)
        return [push.id for push in replaced
                if _CANCEL_QUEUED.count(conn, {"build_id": push.id, "reason": reason, "finished_at": self.clock()}) == 1]

    def _recorded(self, conn: sa.Connection, events: Sequence[PushEvent], keys: Sequence[str | None],
                  push_keys: Sequence[str | None]) -> list[Build]:
        """Return the builds, kept or pruned, that earlier deliveries of these events recorded, oldest first."""
        delivery_keys, content_keys = [k for k in keys if k], [k for k in push_keys if k]
        if len(delivery_keys) <= 1 and len(content_keys) <= 1:  # a push of one ref: the statements without lists
            one = {"delivery_key": next(iter(delivery_keys), None), "push_key": next(iter(content_keys), None)}
            found = {row.id: Build.from_mapping(row._asdict()) for row in _RECORDED_ONE.rows(conn, one)}
            pruned: Sequence[Any] = _REMEMBERED_ONE.rows(conn, one)
        else:
            seen_keys = {"delivery_keys": delivery_keys, "push_keys": content_keys}
            found = {row.id: Build.from_row(row) for row in conn.execute(_RECORDED, seen_keys)}
            pruned = conn.execute(_REMEMBERED, seen_keys).all()
        for row in pruned:
            event = next((e for e, key, content in zip(events, keys, push_keys, strict=True)
                          if (key and key == row.delivery_key) or (content and content == row.push_key)), None)
            if event is not None and row.build_id not in found:
                found[row.build_id] = Build(
                    id=row.build_id, repo=event.repo, forge=event.forge, ref=event.ref, sha=event.sha,
                    before=event.before, pusher=event.pusher, default_branch=event.default_branch,
                    state=BuildState(row.state), tags=(), digest=None, error=None, attempts=0,
                    created_at=row.created_at, started_at=None, finished_at=None)
        return [found[build_id] for build_id in sorted(found)]

    def get(self, build_id: int) -> Build | None:
        """Return one build, or ``None``."""
        with self.db.begin() as conn:
            row = conn.execute(builds.select().where(builds.c.id == build_id)).first()
        return Build.from_row(row) if row else None

    def list(self, *, repo: str | None = None, ref: str | None = None, state: BuildState | None = None,
             limit: int = 50, before_id: int | None = None) -> list[Build]:
        """Return builds newest first, optionally of one repository, ref or state, or older than ``before_id``.

        ``ref`` is a full ref (``refs/heads/main``) or a branch's or tag's short name (``main``).
        """
        query = builds.select().order_by(builds.c.id.desc()).limit(limit)
        if repo is not None:
            query = query.where(builds.c.repo == repo)
        if ref is not None:
            query = query.where(builds.c.ref.in_([ref, f"refs/heads/{ref}", f"refs/tags/{ref}"]))
        if state is not None:
            query = query.where(builds.c.state == state.value)
        if before_id is not None:
            query = query.where(builds.c.id < before_id)
        with self.db.begin() as conn:
            return [Build.from_row(row) for row in conn.execute(query)]

    def _update(self, build_id: int, condition: Any, **values: Any) -> bool:
        """Update one build if ``condition`` holds; say whether it did."""
        with self.db.begin() as conn:
            result = conn.execute(builds.update().where(builds.c.id == build_id, condition).values(**values))
        return result.rowcount == 1

    def mark_dispatched(self, build_id: int, *, at: float | None | bool = True) -> None:
        """Note that a message for the build was handed to the queue now (``at=None``: that it was not)."""
        self._update(build_id, sa.true(), dispatched_at=self.clock() if at is True else at)

    def claim(self, build_id: int, *, owner: str, lease_s: float, max_running: int | None = None) -> Build | None:
        """Take the build for ``owner`` if it is queued or its lease expired; ``None`` if not.

        With ``max_running``, only while fewer builds of its repository are running (leases alive);
        the count and the claim are one statement, so two workers cannot both take the last place.
        """
        now = self.clock()
        claimable = sa.or_(
            builds.c.state == BuildState.QUEUED.value,
            sa.and_(builds.c.state == BuildState.RUNNING.value, builds.c.lease_expires_at < now),
        )
        if max_running is not None:
            others, this = builds.alias("others"), builds.alias("this")
            running = (sa.select(sa.func.count()).select_from(others)
                       .where(sa.tuple_(others.c.forge, others.c.repo).in_(
                                  sa.select(this.c.forge, this.c.repo).where(this.c.id == build_id)),
                              others.c.state == BuildState.RUNNING.value, others.c.lease_expires_at >= now,
                              others.c.id != build_id)
                       .scalar_subquery())
            claimable = sa.and_(claimable, running < max_running)
        taken = self._update(
            build_id, claimable,
            state=BuildState.RUNNING.value, lease_owner=owner, lease_expires_at=now + lease_s,
            attempts=builds.c.attempts + 1, started_at=sa.func.coalesce(builds.c.started_at, now),
        )
        return self.get(build_id) if taken else None

    def renew(self, build_ids: Iterable[int], *, owner: str, lease_s: float) -> set[int]:
        """Extend the leases ``owner`` holds on running builds; return the ids it still holds (not cancelled)."""
        ids = list(build_ids)
        if not ids:
            return set()
        held = sa.and_(builds.c.id.in_(ids), builds.c.lease_owner == owner, builds.c.state == BuildState.RUNNING.value)
        with self.db.begin() as conn:
            conn.execute(builds.update().where(held).values(lease_expires_at=self.clock() + lease_s))
            return {row.id for row in conn.execute(sa.select(builds.c.id).where(held))}

    def finish(self, build_id: int, state: BuildState, *, owner: str | None = None,
               tags: Iterable[str] = (), digest: str | None = None, error: str | None = None,
               timings: Mapping[str, float] | None = None, context_bytes: int | None = None) -> bool:
        """End a running build as ``state``; only the lease holder (if given) may. Say whether it did.

        ``timings`` (seconds per phase, in order) and ``context_bytes`` say how the run went.

        A build cancelled while it ran, after its push had begun, still ends as what it did: its tags
        moved in the registry, and the record (which ordering reads) must say so.
        """
        condition = builds.c.state == BuildState.RUNNING.value
        if owner is not None:
            condition = sa.and_(condition, builds.c.lease_owner == owner)
        if state is BuildState.SUCCEEDED:
            cancelled_too_late = sa.and_(builds.c.state == BuildState.CANCELLED.value, builds.c.started_at.is_not(None),
                                         builds.c.digest.is_(None))
            condition = sa.or_(condition, cancelled_too_late)
            error = error or sa.case((cancelled_too_late, "cancelled after its push had begun: the image was pushed"),
                                     else_=None)
        finished = self._update(
            build_id, condition,
            state=state.value, tags=json.dumps(list(tags)), digest=digest, error=error,
            finished_at=self.clock(), lease_owner=None, lease_expires_at=None,
            timings=json.dumps(dict(timings)) if timings else None, context_bytes=context_bytes,
        )
        if finished:
            self.ended(state)
        elif timings:  # cancelled while it ran: the record keeps what the run did until it stopped
            self._update(build_id, sa.and_(builds.c.state == BuildState.CANCELLED.value, builds.c.timings.is_(None)),
                         timings=json.dumps(dict(timings)), context_bytes=context_bytes)
        return finished

    def fail(self, build_id: int, error: str) -> bool:
        """End a build that is not finished as failed with ``error``, whoever holds it."""
        failed = self._update(
            build_id, builds.c.state.in_([BuildState.QUEUED.value, BuildState.RUNNING.value]),
            state=BuildState.FAILED.value, error=error, finished_at=self.clock(),
            lease_owner=None, lease_expires_at=None,
        )
        if failed:
            self.ended(BuildState.FAILED)
        return failed

    def of_ref(self, forge: str, repo: str, ref: str, *, state: BuildState | None = None,
               recent: int = defaults.ORDERING_WINDOW) -> list[Build]:
        """Return the ``recent`` latest pushes of one branch or tag (optionally in one state), oldest first.

        Pruned pushes are among them, as remembered (``seen_pushes``: commit, ``before``, final
        state): which push is newer, and whether a newer one succeeded, must not change when
        retention deletes the records between them.
        """
        query = (builds.select().where(builds.c.forge == forge, builds.c.repo == repo, builds.c.ref == ref)
                 .order_by(builds.c.id.desc()).limit(recent))
        pruned = (seen_pushes.select()
                  .where(seen_pushes.c.forge == forge, seen_pushes.c.repo == repo, seen_pushes.c.ref == ref)
                  .order_by(seen_pushes.c.build_id.desc()).limit(recent))
        if state is not None:
            query = query.where(builds.c.state == state.value)
            pruned = pruned.where(seen_pushes.c.state == state.value)
        with self.db.begin() as conn:
            found = {row.id: Build.from_row(row) for row in conn.execute(query)}
            # Only finished builds are pruned: asking for queued or running ones would walk every push
            # of the branch pruning remembered, to find none.
            for row in conn.execute(pruned) if state is None or state in FINISHED else ():
                found.setdefault(row.build_id, Build.remembered(row))
        return [found[build_id] for build_id in sorted(found)[-recent:]]

    def newer_success(self, build: Build) -> Build | None:
        """Return the latest push of ``build``'s branch that is newer than it and succeeded, if any.

        Such a push holds the branch's tags and fired its hooks: ``build``, delivered late or run
        again, must not take them back. (Tags have no "newer push": see ordering.higher_release.)
        """
        if not is_branch(build.ref):
            return None
        pushes = self.of_ref(build.forge, build.repo, build.ref)
        return next((p for p in reversed(pushes) if p.state is BuildState.SUCCEEDED and is_newer(p, build, pushes)),
                    None)

    def releases(self, forge: str, repo: str, *, recent: int = defaults.ORDERING_WINDOW) -> list[Build]:
        """Return the ``recent`` latest succeeded builds of a repository's git tags, newest first."""
        query = (builds.select()
                 .where(builds.c.forge == forge, builds.c.repo == repo, builds.c.ref.startswith(TAG_PREFIX),
                        builds.c.state == BuildState.SUCCEEDED.value)
                 .order_by(builds.c.id.desc()).limit(recent))
        with self.db.begin() as conn:
            return [Build.from_row(row) for row in conn.execute(query)]

    def newest_of_each_ref(self, *, state: BuildState | None = None) -> list[Build]:
        """Return the newest build (optionally in one state) of every ref of every repository."""
        newest = sa.select(sa.func.max(builds.c.id)).group_by(builds.c.forge, builds.c.repo, builds.c.ref)
        if state is not None:
            newest = newest.where(builds.c.state == state.value)
        with self.db.begin() as conn:
            return [Build.from_row(row) for row in conn.execute(builds.select().where(builds.c.id.in_(newest)))]

    def unfinished_shas(self) -> set[str]:
        """Return the commits of builds queued or running now."""
        query = sa.select(builds.c.sha).where(builds.c.state.in_([BuildState.QUEUED.value, BuildState.RUNNING.value]))
        with self.db.begin() as conn:
            return set(conn.execute(query.distinct()).scalars())

    def tag_owner(self, tag: str) -> tuple[str, str, str] | None:
        """Return who owns ``tag`` (forge, repository, ref or commit id), if anyone does."""
        with self.db.begin() as conn:
            row = conn.execute(sa.select(image_tags).where(image_tags.c.tag == tag)).first()
        return None if row is None else (row.forge, row.repo, row.ref)

    def claim_tag(self, tag: str, *, forge: str, repo: str, owner: str) -> str | None:
        """Make ``owner`` (a ref, or a commit id for commit tags) own ``tag`` unless another does; return that other."""
        for _ in range(2):  # a second look only when another build claimed it between the two statements
            found = self.tag_owner(tag)
            if found is None:
                try:
                    with self.db.begin() as conn:
                        conn.execute(image_tags.insert().values(tag=tag, forge=forge, repo=repo, ref=owner,
                                                                claimed_at=self.clock()))
                    return None
                except IntegrityError:
                    continue
            if found == (forge, repo, owner):
                return None
            return f"{short_name(found[2])} ({found[0]}:{found[1]})"
        raise AssertionError("unreachable: the tag was claimed, so it has an owner")

    def cancel(self, build_id: int, reason: str, *, running: bool = False) -> bool:
        """End a build that has not started (or, with ``running``, has not finished) as cancelled; say whether it did.

        A running build's worker notices at its next lease renewal or before it pushes, and stops.
        """
        states = [BuildState.QUEUED.value] + ([BuildState.RUNNING.value] if running else [])
        cancelled = self._update(build_id, builds.c.state.in_(states), state=BuildState.CANCELLED.value,
                                 error=reason, finished_at=self.clock(), lease_owner=None, lease_expires_at=None)
        if cancelled:
            self.ended(BuildState.CANCELLED)
        return cancelled

    def refs_of_commit(self, forge: str, repo: str, sha: str) -> list[str]:
        """Return the branches and tags pushes of commit ``sha`` were recorded for."""
        query = (sa.select(builds.c.ref).distinct()
                 .where(builds.c.forge == forge, builds.c.repo == repo, builds.c.sha == sha, builds.c.ref != "")
                 .limit(100))
        with self.db.begin() as conn:
            return [row.ref for row in conn.execute(query)]

    def has_build(self, forge: str, repo: str, ref: str, sha: str) -> bool:
        """Say whether a push of ``sha`` to ``ref`` was ever recorded."""
        query = (sa.select(builds.c.id)
                 .where(builds.c.forge == forge, builds.c.repo == repo, builds.c.ref == ref, builds.c.sha == sha)
                 .limit(1))
        with self.db.begin() as conn:
            return conn.execute(query).first() is not None

    def requeue(self, build_id: int) -> bool:
        """Queue a failed, skipped or cancelled build to run again from the start; say whether it was one (and not being pruned)."""
        return self._update(
            build_id, sa.and_(builds.c.state.in_([s.value for s in RETRYABLE]), builds.c.pruning_at.is_(None)),
            state=BuildState.QUEUED.value, tags="[]", digest=None, error=None, attempts=0, started_at=None,
            finished_at=None, dispatched_at=None, lease_owner=None, lease_expires_at=None,
            queued_at=self.clock(), timings=None, context_bytes=None,
        )

    def count_by_state(self) -> dict[BuildState, int]:
        """Return how many build records are kept in each state (every state, zero included)."""
        query = sa.select(builds.c.state, sa.func.count()).group_by(builds.c.state)
        with self.db.begin() as conn:
            counted = {BuildState(state): count for state, count in conn.execute(query)}
        return {state: counted.get(state, 0) for state in BuildState}

    def oldest_queued_at(self) -> float | None:
        """Return when the build waiting longest in the queue entered it, or ``None`` when none waits.

        Two reads at the ends of an index (``/metrics`` asks on every scrape): a minimum over
        ``coalesce(queued_at, created_at)`` went through every queued build, 6–10 ms with 20,000
        waiting. Records older than ``queued_at`` have none, and entered the queue when made.
        """
        with self.db.begin() as conn:
            entered = [conn.execute(query).scalar_one() for query in _OLDEST_QUEUED]
        return min((at for at in entered if at is not None), default=None)

    def lost(self, *, redispatch_after_s: float) -> list[Build]:
        """Return builds that need dispatching again: expired leases, or queued too long."""
        now = self.clock()
        query = builds.select().where(sa.or_(
            sa.and_(builds.c.state == BuildState.RUNNING.value, builds.c.lease_expires_at < now),
            sa.and_(builds.c.state == BuildState.QUEUED.value, sa.or_(
                builds.c.dispatched_at.is_(None), builds.c.dispatched_at < now - redispatch_after_s,
            )),
        )).order_by(builds.c.id)
        with self.db.begin() as conn:
            return [Build.from_row(row) for row in conn.execute(query)]

    def append_log(self, build_id: int, text: str) -> int | None:
        """Add a chunk of text to a build's log; return the chunk's id (``None`` for no text)."""
        if not text:
            return None
        with self.db.begin() as conn:
            return conn.execute(build_logs.insert().values(build_id=build_id, text=text)).inserted_primary_key[0]

    def replace_log_chunk(self, chunk_id: int, text: str) -> None:
        """Rewrite one chunk of a log (the note saying how much was cut)."""
        with self.db.begin() as conn:
            conn.execute(build_logs.update().where(build_logs.c.id == chunk_id).values(text=text))

    def drop_log_chunks(self, chunk_ids: Iterable[int]) -> None:
        """Delete chunks of a log (its oldest tail, when the log is over its size)."""
        ids = list(chunk_ids)
        if ids:
            with self.db.begin() as conn:
                conn.execute(build_logs.delete().where(build_logs.c.id.in_(ids)))

    def log_size(self, build_id: int) -> int:
        """Return how many characters of a build's log are stored."""
        query = sa.select(sa.func.coalesce(sa.func.sum(sa.func.length(build_logs.c.text)), 0)).where(
            build_logs.c.build_id == build_id)
        with self.db.begin() as conn:
            return int(conn.execute(query).scalar_one())

    def log(self, build_id: int, *, after: int = 0, limit_chars: int = defaults.LOG_PAGE_CHARS) -> tuple[str, int]:
        """Return the log written after chunk ``after``, about ``limit_chars`` of it at most, and the cursor for the next page.

        Rows are read a few at a time, so a long log is never loaded whole; a page ends at a
        chunk boundary (one chunk is at most a write batch) and always holds one chunk at least.
        """
        query = (sa.select(build_logs.c.id, build_logs.c.text)
                 .where(build_logs.c.build_id == build_id, build_logs.c.id > after)
                 .order_by(build_logs.c.id))
        parts: list[str] = []
        size, cursor = 0, after
        with self.db.connect() as conn:
            for chunk_id, text in conn.execution_options(yield_per=16).execute(query):
                if parts and size + len(text) > limit_chars:
                    break
                parts.append(text)
                size += len(text)
                cursor = chunk_id
        return "".join(parts), cursor


    def log_tail(self, build_id: int, *, limit_chars: int) -> tuple[str, int, bool]:
        """Return the end of a build's log, about ``limit_chars`` of it, the cursor after it, and whether more came before.

        The text starts at a chunk boundary (holding one chunk at least), so it continues with
        :meth:`log` from the cursor.
        """
        query = (sa.select(build_logs.c.id, build_logs.c.text)
                 .where(build_logs.c.build_id == build_id).order_by(build_logs.c.id.desc()))
        parts: list[str] = []
        size, cursor, earlier = 0, 0, False
        with self.db.connect() as conn:
            for chunk_id, text in conn.execution_options(yield_per=16).execute(query):
                if parts and size + len(text) > limit_chars:
                    earlier = True
                    break
                parts.append(text)
                size += len(text)
                cursor = max(cursor, chunk_id)
        return "".join(reversed(parts)), cursor, earlier

class _Seen(Exception):
    """Raised inside :meth:`BuildStore.record`'s transaction to undo it: a pruned build remembers the delivery."""


def _inserted(build_id: int, row: Mapping[str, Any]) -> Build:
    """The build just inserted as ``row``, as :meth:`BuildStore.get` would read it back (without reading it)."""
    return Build(
        id=build_id, repo=row["repo"], forge=row["forge"], ref=row["ref"], sha=row["sha"], before=row["before"],
        pusher=row["pusher"], default_branch=row["default_branch"], state=BuildState(row["state"]), tags=(),
        digest=None, error=None, attempts=row["attempts"], created_at=row["created_at"], started_at=None,
        finished_at=None,
        changed_paths=None if row["changed_paths"] is None else tuple(json.loads(row["changed_paths"])),
        queued_at=row["queued_at"],
    )


def _window(table: sa.Table, id_column: sa.ColumnElement[int], *, queued: bool) -> sa.Select:
    """A branch's ``ORDERING_WINDOW`` latest pushes in ``table`` (optionally the queued ones): id, commit, ``before``."""
    query = (sa.select(id_column.label("id"), table.c.sha, table.c.before)
             .where(table.c.forge == sa.bindparam("forge"), table.c.repo == sa.bindparam("repo"),
                    table.c.ref == sa.bindparam("ref"))
             .order_by(id_column.desc()).limit(defaults.ORDERING_WINDOW))
    return query.where(table.c.state == BuildState.QUEUED.value) if queued else query


#: The statements of the webhook's path, made once: building one costs more than running it.
_INSERT = builds.insert()
_SEEN = sa.select(seen_pushes.c.id).where(
    sa.or_(seen_pushes.c.delivery_key.in_(sa.bindparam("delivery_keys", expanding=True)),
           seen_pushes.c.push_key.in_(sa.bindparam("push_keys", expanding=True)))).limit(1)
_RECORDED = builds.select().where(
    sa.or_(builds.c.delivery_key.in_(sa.bindparam("delivery_keys", expanding=True)),
           builds.c.push_key.in_(sa.bindparam("push_keys", expanding=True))))
_REMEMBERED = sa.select(seen_pushes).where(
    sa.or_(seen_pushes.c.delivery_key.in_(sa.bindparam("delivery_keys", expanding=True)),
           seen_pushes.c.push_key.in_(sa.bindparam("push_keys", expanding=True))))
_KEPT_WINDOW = _window(builds, builds.c.id, queued=False)
_PRUNED_WINDOW = _window(seen_pushes, seen_pushes.c.build_id, queued=False)
_QUEUED = builds.c.state == BuildState.QUEUED.value
_OLDEST_QUEUED = (sa.select(sa.func.min(builds.c.queued_at)).where(_QUEUED, builds.c.queued_at.is_not(None)),
                  sa.select(sa.func.min(builds.c.created_at)).where(_QUEUED, builds.c.queued_at.is_(None)))
#: The statements a new delivery runs, on the driver's cursor (webhook.prepared).
_BEGIN_IMMEDIATE = Prepared(sa.text("BEGIN IMMEDIATE"), begins=True)
#: Only finished builds are pruned (webhook.retention): the queued ones are all among the kept.
_QUEUED_WINDOW = Prepared(_window(builds, builds.c.id, queued=True))
#: A duplicate of a one-ref delivery: what its delivery or its push recorded, kept or pruned (BuildStore._recorded).
_RECORDED_ONE, _REMEMBERED_ONE = (
    Prepared(sa.select(table).where(sa.or_(table.c.delivery_key == sa.bindparam("delivery_key", type_=sa.String),
                                           table.c.push_key == sa.bindparam("push_key", type_=sa.String))))
    for table in (builds, seen_pushes))
_SEEN_ONE = Prepared(sa.select(seen_pushes.c.id).where(
    sa.or_(seen_pushes.c.delivery_key == sa.bindparam("delivery_key", type_=sa.String),
           seen_pushes.c.push_key == sa.bindparam("push_key", type_=sa.String))).limit(1))
_FOLLOWED = Prepared(sa.select(sa.or_(*(sa.exists().where(
    table.c.forge == sa.bindparam("forge"), table.c.repo == sa.bindparam("repo"), table.c.ref == sa.bindparam("ref"),
    table.c.before == sa.bindparam("sha")) for table in (builds, seen_pushes)))))
_CANCEL_QUEUED = Prepared(builds.update()
                          .where(builds.c.id == sa.bindparam("build_id"), builds.c.state == BuildState.QUEUED.value)
                          .values(state=BuildState.CANCELLED.value, error=sa.bindparam("reason"),
                                  finished_at=sa.bindparam("finished_at"), lease_owner=None, lease_expires_at=None))
#: The columns :meth:`BuildStore.accept` gives a new build.
_ACCEPTED_COLUMNS = ("repo", "forge", "ref", "sha", "before", "pusher", "default_branch", "delivery_key", "push_key",
                     "state", "changed_paths", "tags", "attempts", "created_at", "queued_at", "dispatched_at")


@functools.cache
def _insert_new(dialect: str) -> Prepared | None:
    """An insert of a build that inserts nothing when its delivery or push is recorded already, returning the new id.

    ``None`` on a database without ``ON CONFLICT DO NOTHING``: a plain insert then raises instead.
    """
    insert = _UPSERTS.get(dialect)
    return None if insert is None else Prepared(insert(builds).on_conflict_do_nothing().returning(builds.c.id),
                                                column_keys=_ACCEPTED_COLUMNS)


def _seen_before(conn: sa.Connection, delivery_keys: Sequence[str], push_keys: Sequence[str]) -> bool:
    """Say whether pruning remembers any of these deliveries or pushes (``seen_pushes``)."""
    if len(delivery_keys) <= 1 and len(push_keys) <= 1:  # a push of one ref: the statement without lists
        return bool(_SEEN_ONE.rows(conn, {"delivery_key": next(iter(delivery_keys), None),
                                          "push_key": next(iter(push_keys), None)}))
    return conn.execute(_SEEN, {"delivery_keys": delivery_keys, "push_keys": push_keys}).first() is not None


def _pushes_of_ref(conn: sa.Connection, window: Mapping[str, str]) -> list[Any]:
    """What :meth:`BuildStore.of_ref` returns, as rows of id, commit and ``before``."""
    found = {row.id: row for row in conn.execute(_KEPT_WINDOW, window).all()}
    for row in conn.execute(_PRUNED_WINDOW, window).all():
        found.setdefault(row.id, row)
    return [found[build_id] for build_id in sorted(found)[-defaults.ORDERING_WINDOW:]]


def delivery_key(event: PushEvent) -> str:
    """Identify the delivery that carried a push: forge, repository and the forge's delivery id."""
    return f"{event.forge}:{event.repo}:{event.delivery_id}"


def push_key(event: PushEvent) -> str:
    """Identify what a push changed, whatever delivery carried it (see :meth:`BuildStore.record`)."""
    content = "\0".join((event.forge, event.repo, event.ref, event.before, event.sha))
    return hashlib.sha256(content.encode("utf-8", "surrogateescape")).hexdigest()


_ADVISORY_LOCK = sa.text("SELECT pg_advisory_xact_lock(:key)")


def _branch_lock_key(event: PushEvent) -> int:
    """The PostgreSQL advisory lock under which pushes of one branch are accepted one at a time (a signed 64-bit key)."""
    digest = hashlib.sha256(f"{event.forge}\0{event.repo}\0{event.ref}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


#: The PostgreSQL advisory lock processes take turns under while creating the schema ("pushbld").
_SCHEMA_LOCK_KEY = 0x7075736862756C64


def _add_missing_columns(conn: sa.Connection) -> None:
    """Add the nullable columns, and the indexes, that a newer version declares to tables an older one made.

    Only additive changes are made this way; anything else needs a real migration.
    """
    inspector = sa.inspect(conn)
    for table in metadata.sorted_tables:
        present = {column["name"] for column in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name not in present:
                kind = column.type.compile(dialect=conn.dialect)
                conn.exec_driver_sql(f'ALTER TABLE {table.name} ADD COLUMN {column.name} {kind}')
        for index in table.indexes:
            index.create(conn, checkfirst=True)
