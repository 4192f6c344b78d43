"""Retention: old records are pruned without reopening replays or reordering pushes."""

import subprocess
import sys
import threading
import time
import uuid

import pytest

from webhook.config import parse_config
from webhook.errors import ConfigError
from webhook.events import PushEvent
from webhook.notify.deliveries import DeliveryState, DeliveryStore
from webhook.ordering import is_newer
from webhook.retention import DAY_S, Retention, RetentionPolicy
from webhook.store import BuildState, BuildStore, create_db_engine, seen_pushes

from .helpers.configs import SECRETS_ENV
from .helpers.service import write_toml
from .helpers.support import all_at_once, sqlite_plan, sqlite_statements

ZERO = "0" * 40
HOUR_S = 3600.0


@pytest.fixture
def store(db, clock):
    return BuildStore(db, clock=clock)


@pytest.fixture
def deliveries(db, clock):
    return DeliveryStore(db, clock=clock)


def pruner(db, clock, **policy):
    settings = {"retention_s": 90 * DAY_S, "keep_builds": None, "replay_memory_s": 365 * DAY_S, **policy}
    return Retention(db, RetentionPolicy(**settings), clock=clock)


def event(*, ref="refs/heads/main", repo="acme/app", sha=None, before=ZERO, delivery=None):
    return PushEvent(forge="github", repo=repo, ref=ref, sha=sha or uuid.uuid4().hex + "0" * 8, before=before,
                     pusher="p", delivery_id=delivery or str(uuid.uuid4()), default_branch="main")


def finished(store, clock, *, state=BuildState.SUCCEEDED, tags=(), log=(), **push):
    """Record a push from the forge, run it to ``state`` now, then let an hour pass."""
    [build], created = store.record([event(**push)], from_forge=True)
    assert created
    store.claim(build.id, owner="w", lease_s=60)
    for text in log:
        store.append_log(build.id, text)
    store.finish(build.id, state, owner="w", tags=tags)
    clock.now += HOUR_S
    return build


def ids(store):
    return sorted(b.id for b in store.list(limit=10_000))


# --- replay protection --------------------------------------------------------------------------

def test_a_replayed_old_delivery_is_still_a_duplicate_after_its_build_was_pruned(store, db, clock):
    """A captured delivery sent again, under its own id or another, builds nothing though its record is gone."""
    old = event(delivery="gh-delivery-1", sha="a" * 40)
    [original], _ = store.record([old], from_forge=True)
    store.claim(original.id, owner="w", lease_s=60)
    store.finish(original.id, BuildState.SUCCEEDED, owner="w")
    newer = finished(store, clock, before="a" * 40, sha="b" * 40)
    clock.now += 91 * DAY_S
    assert pruner(db, clock).prune().builds == 1
    assert ids(store) == [newer.id]

    [again], created = store.record([old], from_forge=True)
    assert (created, again.id, again.sha, again.state) == (False, original.id, "a" * 40, BuildState.SUCCEEDED)
    [renamed], created = store.record([event(delivery="another-id", sha="a" * 40)], from_forge=True)
    assert (created, renamed.id) == (False, original.id)
    assert ids(store) == [newer.id], "the replay recorded no build"


def test_a_pruned_delivery_sent_again_with_another_push_is_still_a_duplicate(store, db, clock):
    """A delivery id is remembered by itself too: a forge's delivery records once, whatever body comes with it."""
    first = finished(store, clock, delivery="gh-delivery-1", sha="a" * 40)
    newer = finished(store, clock, before="a" * 40, sha="b" * 40)
    clock.now += 91 * DAY_S
    assert pruner(db, clock).prune().builds == 1

    [again], created = store.record([event(delivery="gh-delivery-1", sha="c" * 40)], from_forge=True)
    assert (created, again.id) == (False, first.id)
    assert ids(store) == [newer.id], "the replay recorded no build"


def test_a_pruned_delivery_of_two_branches_sent_again_is_still_a_duplicate(store, db, clock):
    """One delivery naming two refs (Bitbucket sends several changes in one, each its own delivery key) is remembered."""
    both = [event(ref=ref, delivery=f"bb-delivery-1:{ref}", sha="a" * 40) for ref in ("refs/heads/main", "refs/heads/dev")]
    originals, created = store.record(both, from_forge=True)
    assert created
    for build in originals:
        store.claim(build.id, owner="w", lease_s=60)
        store.finish(build.id, BuildState.SUCCEEDED, owner="w")
    newer = [finished(store, clock, ref=ref, before="a" * 40, sha="b" * 40) for ref in ("refs/heads/main", "refs/heads/dev")]
    clock.now += 91 * DAY_S
    assert pruner(db, clock).prune().builds == 2

    again, created = store.record(both, from_forge=True)
    assert (created, sorted(b.id for b in again)) == (False, sorted(b.id for b in originals))
    assert ids(store) == sorted(b.id for b in newer), "the replay recorded no build"


def test_a_pruned_push_is_remembered_for_replay_memory_days_after_its_pruning(store, db, clock):
    """The memory of a pruned push is bounded: it goes replay_memory_days after the push was pruned.

    Counted from the pruning, not the push: a replay memory shorter than the retention would
    otherwise be forgotten in the very run that wrote it.
    """
    old = event(sha="a" * 40)
    finished(store, clock, **{"sha": old.sha, "delivery": old.delivery_id})
    finished(store, clock)
    clock.now += 91 * DAY_S
    retention = pruner(db, clock)
    assert retention.prune().builds == 1
    clock.now += 364 * DAY_S
    assert retention.prune().memories_expired == 0
    assert store.record([old], from_forge=True)[1] is False
    clock.now += 2 * DAY_S
    assert retention.prune().memories_expired == 1
    with db.begin() as conn:
        assert conn.execute(seen_pushes.select()).first() is None


def test_a_replay_racing_the_pruner_is_still_a_duplicate(store, db, clock):
    """Whether the replay comes before, during or after its build is pruned, it is one build."""
    old = event()
    finished(store, clock, sha=old.sha, delivery=old.delivery_id)
    finished(store, clock)
    clock.now += 91 * DAY_S
    answers, done = [], threading.Event()

    def replay():
        while not done.is_set():
            answers.append(store.record([old], from_forge=True)[1])
        answers.append(store.record([old], from_forge=True)[1])  # and once after the prune

    replays = [threading.Thread(target=replay) for _ in range(4)]
    for thread in replays:
        thread.start()
    pruned = pruner(db, clock).prune().builds
    done.set()
    for thread in replays:
        thread.join()
    assert pruned == 1 and set(answers) == {False} and len(answers) >= 4
    assert len(ids(store)) == 1


# --- what is kept ------------------------------------------------------------------------------

def test_the_newest_build_of_each_ref_survives_any_retention(store, db, clock):
    """However old, the newest build of every branch and tag stays, with its log; older ones go."""
    main = [finished(store, clock, log=["main\n"]) for _ in range(3)]
    feature = finished(store, clock, ref="refs/heads/feature", log=["feature\n"])
    tag = finished(store, clock, ref="refs/tags/v1.0.0")
    other = finished(store, clock, repo="acme/other")
    failed = finished(store, clock, ref="refs/heads/broken", state=BuildState.FAILED)
    clock.now += 1000 * DAY_S
    report = pruner(db, clock, keep_builds=1).prune()
    assert report.builds == 2
    assert ids(store) == sorted([main[-1].id, feature.id, tag.id, other.id, failed.id])
    assert store.log(main[-1].id)[0] == "main\n" and store.log(feature.id)[0] == "feature\n"
    assert pruner(db, clock, keep_builds=1).prune().builds == 0


def test_unfinished_builds_their_refs_and_pending_deliveries_are_kept(store, deliveries, db, clock):
    """Queued and running builds stay, so do the builds of their refs, and builds the notifier still owes."""
    queued_ref = [finished(store, clock, ref="refs/heads/busy") for _ in range(2)]
    [queued], _ = store.record([event(ref="refs/heads/busy")], from_forge=True)
    owed = finished(store, clock)
    delivery = deliveries.add(build_id=owed.id, repo="acme/app", ref="refs/heads/main", kind="status",
                              target="github", payload={})
    finished(store, clock)
    clock.now += 100 * DAY_S
    retention = pruner(db, clock)
    assert retention.prune().builds == 0
    assert set(ids(store)) >= {queued.id, owed.id, *(b.id for b in queued_ref)}

    store.cancel(queued.id, "test")
    deliveries.record_attempt(delivery, state=DeliveryState.DELIVERED, at=clock.now, duration_s=0.1,
                              status_code=201, error=None)
    clock.now += 2 * HOUR_S
    report = retention.prune()
    assert (report.builds, report.deliveries, report.attempts) == (3, 1, 1)
    assert deliveries.get(delivery.id) is None


def test_a_build_is_kept_for_an_hour_after_it_finishes(store, db, clock):
    """Statuses and hooks are recorded just after a build finishes: a build that just ended is never pruned."""
    [late], _ = store.record([event()], from_forge=True)
    finished(store, clock)
    clock.now += 100 * DAY_S
    store.claim(late.id, owner="w", lease_s=60)
    store.finish(late.id, BuildState.SUCCEEDED, owner="w")
    assert pruner(db, clock).prune().builds == 0
    clock.now += HOUR_S + 1
    assert pruner(db, clock).prune().builds == 1


def test_the_release_builds_of_the_ordering_window_are_kept(store, db, clock):
    """Succeeded git-tag builds that may hold release tags (store.releases) stay, whatever their age."""
    first = finished(store, clock, ref="refs/tags/v1.0.0", tags=["r/app:latest"])
    again = finished(store, clock, ref="refs/tags/v1.0.0", tags=["r/app:latest"])
    failed = finished(store, clock, ref="refs/tags/v2.0.0", state=BuildState.FAILED)
    finished(store, clock, ref="refs/tags/v2.0.0", state=BuildState.FAILED)
    releases = [b.id for b in store.releases("github", "acme/app")]
    clock.now += 1000 * DAY_S
    assert pruner(db, clock, keep_builds=1).prune().builds == 1
    assert failed.id not in ids(store) and {first.id, again.id} <= set(ids(store))
    assert [b.id for b in store.releases("github", "acme/app")] == releases


def test_keep_builds_counts_each_repository_on_its_own(store, db, clock):
    """Beyond the newest keep_builds of a repository, finished builds go even when young."""
    apps = [finished(store, clock) for _ in range(5)]
    others = [finished(store, clock, repo="acme/other") for _ in range(3)]
    report = pruner(db, clock, retention_s=None, keep_builds=3).prune()
    assert report.builds == 2
    assert ids(store) == sorted([b.id for b in apps[2:]] + [b.id for b in others])


def test_off_keeps_every_record(store, db, clock):
    """With retention_days and keep_builds off, nothing is pruned however old."""
    for _ in range(4):
        finished(store, clock)
    clock.now += 10_000 * DAY_S
    assert pruner(db, clock, retention_s=None, keep_builds=None).prune().builds == 0
    assert len(ids(store)) == 4


# --- batches, concurrency, claims ----------------------------------------------------------------

def test_builds_logs_and_attempts_go_in_small_batches(store, deliveries, db, clock):
    """Each transaction deletes at most a batch of builds and of log chunks, and the counts add up."""
    builds = [finished(store, clock, log=[f"{i}.{n}\n" for n in range(5)]) for i in range(7)]
    for build in builds:
        owed = deliveries.add(build_id=build.id, repo="acme/app", ref="refs/heads/main", kind="hook",
                              target="prod", payload={})
        deliveries.record_attempt(owed, state=DeliveryState.FAILED, at=clock.now, duration_s=0.1,
                                  status_code=500, error="x")
    clock.now += 100 * DAY_S
    statements = []
    retention = pruner(db, clock, batch=2, log_rows=3)
    original = retention._delete
    retention._delete = lambda chosen, report: (statements.append(len(chosen)), original(chosen, report))
    report = retention.prune()
    assert statements == [2, 2, 2]
    assert (report.builds, report.log_chunks, report.deliveries, report.attempts) == (6, 30, 6, 6)
    assert ids(store) == [builds[-1].id] and store.log(builds[-1].id)[0] == "".join(f"6.{n}\n" for n in range(5))


def test_two_workers_pruning_at_once_delete_each_build_once(db_url, store, db, clock):
    """Concurrent pruners (each with its own connections) neither fail nor count a build twice."""
    for _ in range(40):
        finished(store, clock, log=["x\n", "y\n"])
    clock.now += 100 * DAY_S
    engines = [create_db_engine(db_url) for _ in range(3)]
    reports, failures = all_at_once(lambda engine: pruner(engine, clock, batch=5, log_rows=3).prune(), engines)
    for engine in engines:
        engine.dispose()
    assert failures == []
    assert sum(r.builds for r in reports) == 39 and sum(r.log_chunks for r in reports) == 78
    assert len(ids(store)) == 1
    with db.begin() as conn:
        assert len(conn.execute(seen_pushes.select()).all()) == 39


def test_a_build_being_pruned_cannot_be_retried_and_a_dead_pruners_claim_is_finished(store, deliveries, db, clock):
    """A claimed build stays claimed (no retry, no redelivery); another worker deletes it once the claim is stale."""
    old = finished(store, clock, log=["old\n"])
    owed = deliveries.add(build_id=old.id, repo="acme/app", ref="refs/heads/main", kind="hook", target="prod",
                          payload={})
    deliveries.supersede(owed)
    finished(store, clock)
    clock.now += 100 * DAY_S
    dying = pruner(db, clock)
    assert dying._claim("github", "acme/app") == [old.id]  # then the worker dies
    assert not store.requeue(old.id)
    assert deliveries.reopen(owed.id).state is DeliveryState.SUPERSEDED
    assert pruner(db, clock).prune().builds == 0, "a fresh claim is left to its pruner"
    clock.now += 2 * HOUR_S
    assert pruner(db, clock).prune().builds == 1
    assert store.get(old.id) is None


def test_a_dry_run_counts_what_a_prune_deletes(store, deliveries, db, clock):
    """--dry-run reports the same numbers the prune then deletes, and deletes nothing."""
    for _ in range(3):
        build = finished(store, clock, log=["a\n", "b\n"])
        deliveries.add(build_id=build.id, repo="acme/app", ref="refs/heads/main", kind="status", target="github",
                       payload={})
        deliveries.supersede(deliveries.of_build(build.id)[0])
    clock.now += 100 * DAY_S
    retention = pruner(db, clock)
    dry = retention.dry_run()
    assert len(ids(store)) == 3
    assert str(dry) == str(retention.prune()) == "2 builds (4 log chunks, 2 deliveries, 0 delivery attempts), 0 expired replay memories"


def test_a_database_from_before_retention_gains_its_column_and_table(tmp_path, clock):
    """A state database the previous version made (no pruning_at, no seen_pushes) is extended in place and pruned."""
    import sqlite3

    path = tmp_path / "state.sqlite"
    engine = create_db_engine(f"sqlite:///{path}")
    store = BuildStore(engine, clock=clock)
    store.create_schema()
    old, kept = finished(store, clock), finished(store, clock)
    engine.dispose()
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE seen_pushes")
        conn.execute("ALTER TABLE builds DROP COLUMN pruning_at")
    engine = create_db_engine(f"sqlite:///{path}")
    store = BuildStore(engine, clock=clock)
    store.create_schema()
    clock.now += 100 * DAY_S
    assert pruner(engine, clock).prune().builds == 1
    assert ids(store) == [kept.id] and old.id not in ids(store)
    engine.dispose()


# --- configuration ------------------------------------------------------------------------------

def test_retention_defaults_and_off():
    """Defaults are 90 days, 100 builds, a year of replay memory, hourly, 10 GiB, 10 images; 0 and "off" mean no limit."""
    config = parse_config({}, {})
    assert (config.server.retention_days, config.server.keep_builds, config.server.replay_memory_days,
            config.server.housekeeping_every_s) == (90, 100, 365, 3600.0)
    assert (config.engine.max_build_cache_bytes, config.engine.keep_images) == (10 * 1024**3, 10)
    off = parse_config({"server": {"retention_days": "off", "keep_builds": 0, "housekeeping_every_s": "off"},
                        "engine": {"max_build_cache_bytes": "off", "keep_images": 0}}, {})
    assert (off.server.retention_days, off.server.keep_builds, off.server.housekeeping_every_s) == (None, None, None)
    assert RetentionPolicy.of(off.server).prunes is False
    with pytest.raises(ConfigError) as problems:
        parse_config({"server": {"retention_days": -1, "keep_builds": "never"}, "engine": {"keep_images": True}}, {})
    assert problems.value.problems == [
        'server.retention_days: must be a number of at least 0, or "off" (0 and "off" mean no limit)',
        'server.keep_builds: must be a number of at least 0, or "off" (0 and "off" mean no limit)',
        'engine.keep_images: must be a number of at least 0, or "off" (0 and "off" mean no limit)',
    ]


def test_pushbuild_prune_dry_run_counts_and_prune_deletes(tmp_path, clock):
    """`pushbuild prune --dry-run` deletes nothing; `pushbuild prune` deletes what it counted."""
    data = tmp_path / "data"
    data.mkdir()
    engine = create_db_engine(f"sqlite:///{data / 'state.sqlite'}")
    store = BuildStore(engine, clock=clock)
    store.create_schema()
    clock.now = time.time() - 200 * DAY_S
    for _ in range(3):
        finished(store, clock)
    config = write_toml(tmp_path / "pushbuild.toml", {"server": {"data_dir": str(data), "mirror_dir": str(tmp_path / "m"),
                                                                 "keep_builds": "off"}})

    def pushbuild(*args):
        return subprocess.run([sys.executable, "-m", "webhook", "prune", "--config", str(config), *args],
                              capture_output=True, text=True, env=SECRETS_ENV | {"PATH": "/usr/bin:/bin"}, timeout=120)

    dry = pushbuild("--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.startswith("would prune 2 builds") and len(ids(store)) == 3
    done = pushbuild()
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("pruned 2 builds") and len(ids(store)) == 1
    engine.dispose()


def test_a_workers_housekeeping_prunes_records_even_when_its_engine_is_away(make_config, clock, caplog):
    """The worker's housekeeping loop prunes records, and an engine that does not answer only skips the engine part."""
    from webhook.services import Services
    from webhook.worker import BuildWorker

    services = Services(make_config(engine={"base_url": "unix:///nonexistent/docker.sock"}))
    store = BuildStore(services.store.db, clock=clock)
    clock.now = time.time() - 200 * DAY_S
    builds = [finished(store, clock) for _ in range(3)]
    BuildWorker(services, dispatcher=None).housekeep()
    assert ids(store) == [builds[-1].id]
    assert "engine housekeeping skipped" in caplog.text


def _successes_newer_than(store, push):
    pushes = store.of_ref(push.forge, push.repo, push.ref)
    return [p.id for p in pushes if p.state is BuildState.SUCCEEDED and is_newer(p, push, pushes)]


def test_a_pruned_push_still_links_a_late_older_push_to_the_newer_ones(store, db, clock):
    """The review's case: B→C pruned, C→D kept; A→B delivered late is still older than C→D (it links through B→C)."""
    a, b, c, d = ("a" * 40, "b" * 40, "c" * 40, "d" * 40)
    middle = finished(store, clock, sha=c, before=b)
    newest = finished(store, clock, sha=d, before=c)
    clock.now += 91 * DAY_S
    assert pruner(db, clock).prune().builds == 1
    [late], _ = store.record([event(sha=b, before=a)], from_forge=True)
    pushes = store.of_ref("github", "acme/app", "refs/heads/main")
    assert is_newer(newest, late, pushes) and not is_newer(late, newest, pushes)
    assert _successes_newer_than(store, late) == [middle.id, newest.id]  # so it moves no branch tag, fires no hook


def test_a_pruned_success_still_outranks_a_late_older_push_when_newer_builds_failed(store, db, clock):
    """A→B succeeded (pruned), B→C failed (kept, newest): E→A delivered late finds that a newer push succeeded."""
    a, b, c, e = ("a" * 40, "b" * 40, "c" * 40, "e" * 40)
    success = finished(store, clock, sha=b, before=a)
    finished(store, clock, sha=c, before=b, state=BuildState.FAILED)
    clock.now += 91 * DAY_S
    assert pruner(db, clock).prune().builds == 1
    [late], _ = store.record([event(sha=a, before=e)], from_forge=True)
    assert _successes_newer_than(store, late) == [success.id]


def test_a_late_older_push_does_not_cancel_a_queued_newer_one_it_links_to_only_through_a_pruned_push(store, db, clock):
    """B→C pruned, C→D kept, D→E queued: A→B delivered late is older (it links through B→C), so E stays queued."""
    a, b, c, d, e = ("a" * 40, "b" * 40, "c" * 40, "d" * 40, "e" * 40)
    finished(store, clock, sha=c, before=b)
    finished(store, clock, sha=d, before=c)
    clock.now += 91 * DAY_S
    assert pruner(db, clock).prune().builds == 1
    [queued] = store.accept([event(sha=e, before=d)], from_forge=True, supersede=True).builds
    late = store.accept([event(sha=b, before=a)], from_forge=True, supersede=True)
    assert late.created and late.cancelled == ()
    assert store.get(queued.id).state is BuildState.QUEUED


def test_a_branchs_latest_pruned_pushes_are_read_in_order_not_sorted_from_all_it_ever_had(store, db, db_url, clock):
    """Ordering reads a branch's 200 latest pushes, pruned ones too; a year of pruned pushes must not be sorted each time."""
    if not db_url.startswith("sqlite"):
        pytest.skip("SQLite's query plan")
    finished(store, clock, sha="a" * 40)
    finished(store, clock, before="a" * 40, sha="b" * 40)
    clock.now += 91 * DAY_S
    assert pruner(db, clock).prune().builds == 1
    with sqlite_statements(db) as statements:
        store.of_ref("github", "acme/app", "refs/heads/main")
    [read] = [s for s in statements if "FROM seen_pushes" in s and "ORDER BY" in s]
    plan = sqlite_plan(db, read)
    assert "TEMP B-TREE" not in plan, plan


def test_asking_for_a_branchs_queued_builds_does_not_read_what_pruning_remembered(store, db, db_url, clock):
    """Only finished builds are pruned: the memory of pruned pushes is read for finished states, never for queued ones."""
    if not db_url.startswith("sqlite"):
        pytest.skip("SQLite's trace of the statements run")
    old = finished(store, clock, sha="a" * 40)
    finished(store, clock, before="a" * 40, sha="b" * 40)
    clock.now += 91 * DAY_S
    assert pruner(db, clock).prune().builds == 1
    with sqlite_statements(db) as statements:
        assert store.of_ref("github", "acme/app", "refs/heads/main", state=BuildState.QUEUED) == []
    assert not [s for s in statements if "seen_pushes" in s]
    succeeded = store.of_ref("github", "acme/app", "refs/heads/main", state=BuildState.SUCCEEDED)
    assert old.id in [b.id for b in succeeded]  # the pruned push, as remembered
