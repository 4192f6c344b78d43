"""Build records: deduplication, leases, and finding lost builds."""

import sqlite3
import threading

import pytest
import sqlalchemy as sa

from webhook import defaults
from webhook.events import PushEvent
from webhook.store import BuildState, BuildStore, builds, create_db_engine

from .helpers.support import all_at_once, can_write, sqlite_plan, sqlite_statements

SHA = "6113728f27ae82c7b1a177c8d03f9e96e0adf246"


@pytest.fixture
def store(db_url, clock):
    """The same store tests on SQLite (the default) and on PostgreSQL (when ./dev test runs one)."""
    engine = create_db_engine(db_url)
    store = BuildStore(engine, clock=clock)
    store.create_schema()
    yield store
    engine.dispose()


def push(delivery="d1", sha=SHA, repo="acme/app"):
    return [PushEvent(forge="github", repo=repo, ref="refs/heads/main", sha=sha, before="0" * 40,
                      pusher="someone", delivery_id=delivery)]


def test_a_delivery_is_recorded_once(store):
    """The same delivery id returns the first build instead of a second one."""
    [first], created = store.record(push())
    [again], created_again = store.record(push())
    assert (created, created_again, again.id) == (True, False, first.id)
    assert first.state is BuildState.QUEUED
    assert len(store.list()) == 1


def test_concurrent_copies_of_a_delivery_make_one_build(store):
    """Twenty simultaneous copies of one delivery record exactly one build."""
    results = []
    threads = [threading.Thread(target=lambda: results.append(store.record(push()))) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(created for _, created in results) == 1
    assert {b.id for [b], _ in results} == {store.list()[0].id}


def test_the_refs_of_one_push_are_recorded_together_and_deduplicated_together(store):
    """A Bitbucket push changing two branches records two builds; its redelivery records none."""
    two = [PushEvent(forge="bitbucket", repo="a/b", ref=f"refs/heads/{b}", sha=SHA, before="0" * 40,
                     pusher="p", delivery_id=f"uuid:refs/heads/{b}") for b in ("main", "dev")]
    first, created = store.record(two)
    again, created_again = store.record(two)
    assert (created, created_again) == (True, False)
    assert [b.ref for b in first] == ["refs/heads/main", "refs/heads/dev"]
    assert [b.id for b in again] == [b.id for b in first]


def test_builds_asked_for_outside_deliveries_are_not_deduplicated(store):
    """Manual and reconciled builds (not from a forge, no delivery id) are recorded each time."""
    store.record(push(delivery=None))
    store.record(push(delivery=None))
    assert len(store.list()) == 2


@pytest.mark.parametrize("replayed_id", ["d2", None])
def test_a_forges_push_replayed_under_another_delivery_id_is_recorded_once(store, replayed_id):
    """The same forge, repository, ref, before and after is one push, whatever delivery id (or none) it comes under."""
    [first], _ = store.record(push("d1"), from_forge=True)
    [again], created = store.record(push(replayed_id), from_forge=True)
    assert (created, again.id) == (False, first.id)
    [other], created = store.record(push("d3", sha="b" * 40), from_forge=True)
    assert created and other.id != first.id
    assert len(store.list()) == 2


def test_claim_takes_a_queued_build_once(store):
    """Only one worker can claim a queued build."""
    [build], _ = store.record(push())
    claimed = store.claim(build.id, owner="w1", lease_s=60)
    assert (claimed.state, claimed.attempts) == (BuildState.RUNNING, 1)
    assert store.claim(build.id, owner="w2", lease_s=60) is None


def test_an_expired_lease_can_be_claimed_again(store, clock):
    """When a worker stops renewing, its build is lost and another worker may take it."""
    [build], _ = store.record(push())
    store.mark_dispatched(build.id)
    store.claim(build.id, owner="w1", lease_s=60)
    clock.now += 30
    store.renew([build.id], owner="w1", lease_s=60)
    clock.now += 59
    assert store.lost(redispatch_after_s=120) == [], "a renewed lease is not lost"
    clock.now += 2
    assert [b.id for b in store.lost(redispatch_after_s=120)] == [build.id]
    reclaimed = store.claim(build.id, owner="w2", lease_s=60)
    assert reclaimed.attempts == 2
    assert not store.finish(build.id, BuildState.SUCCEEDED, owner="w1"), "the old owner must not finish it"
    assert store.finish(build.id, BuildState.SUCCEEDED, owner="w2", tags=["t"], digest="sha256:x")
    assert store.get(build.id).to_json()["state"] == "succeeded"


def test_queued_builds_are_lost_when_never_dispatched_or_stale(store, clock):
    """A record whose message never reached the queue, or sat too long, is dispatched again."""
    [undispatched], _ = store.record(push("a"))
    [dispatched], _ = store.record(push("b"))
    store.mark_dispatched(dispatched.id)
    assert [b.id for b in store.lost(redispatch_after_s=120)] == [undispatched.id]
    clock.now += 121
    assert [b.id for b in store.lost(redispatch_after_s=120)] == [undispatched.id, dispatched.id]


def test_finished_builds_cannot_be_claimed_or_failed(store):
    """A build that ended stays ended."""
    [build], _ = store.record(push())
    store.claim(build.id, owner="w1", lease_s=60)
    store.finish(build.id, BuildState.FAILED, owner="w1", error="boom")
    assert store.claim(build.id, owner="w2", lease_s=60) is None
    assert not store.fail(build.id, "again")
    assert store.get(build.id).error == "boom"


def test_logs_are_read_with_a_cursor(store):
    """A reader continues from the cursor it was given."""
    [build], _ = store.record(push())
    store.append_log(build.id, "one\n")
    store.append_log(build.id, "two\n")
    text, cursor = store.log(build.id)
    store.append_log(build.id, "three\n")
    assert text == "one\ntwo\n"
    assert store.log(build.id, after=cursor)[0] == "three\n"


def test_list_is_newest_first_and_filters_by_repo(store):
    """Listing pages newest first and filters by repository."""
    ids = [store.record(push(str(i), repo=repo))[0][0].id for i, repo in enumerate(["a/x", "b/y", "a/x"])]
    assert [b.id for b in store.list()] == ids[::-1]
    assert [b.id for b in store.list(repo="a/x")] == [ids[2], ids[0]]
    assert [b.id for b in store.list(before_id=ids[2], limit=1)] == [ids[1]]


def test_a_repository_limit_holds_back_claims_beyond_it(store, clock):
    """With max_running=1, a second build of the repository waits until the first ends; other repos do not."""
    [a], _ = store.record(push("a"))
    [b], _ = store.record(push("b"))
    [other], _ = store.record(push("c", repo="acme/other"))
    assert store.claim(a.id, owner="w1", lease_s=60, max_running=1) is not None
    assert store.claim(b.id, owner="w2", lease_s=60, max_running=1) is None
    assert store.claim(other.id, owner="w2", lease_s=60, max_running=1) is not None
    store.finish(a.id, BuildState.SUCCEEDED, owner="w1")
    assert store.claim(b.id, owner="w2", lease_s=60, max_running=1) is not None


def test_an_expired_lease_does_not_count_against_the_limit(store, clock):
    """A build whose worker died does not block its repository for ever."""
    [a], _ = store.record(push("a"))
    [b], _ = store.record(push("b"))
    store.claim(a.id, owner="dead", lease_s=10, max_running=1)
    clock.now += 11
    assert store.claim(b.id, owner="w2", lease_s=60, max_running=1) is not None


def test_a_delivery_naming_one_change_twice_records_it_once(store):
    """A forge payload repeating a change is one build, not a failed insert answered with no build at all."""
    change = push("d1")[0]
    builds, created = store.record([change, change], from_forge=True)
    assert created and len(builds) == 1 and len(store.list()) == 1


def test_a_tag_belongs_to_its_first_owner(store):
    """The first claim wins; the owner may claim again; another ref or forge is told who owns it."""
    assert store.claim_tag("r/app:main", forge="github", repo="acme/app", owner="refs/heads/main") is None
    assert store.claim_tag("r/app:main", forge="github", repo="acme/app", owner="refs/heads/main") is None
    assert store.claim_tag("r/app:main", forge="github", repo="acme/app", owner="refs/tags/main") == "main (github:acme/app)"
    assert store.claim_tag("r/app:main", forge="gitea", repo="acme/app", owner="refs/heads/main") == "main (github:acme/app)"
    assert store.tag_owner("r/app:main") == ("github", "acme/app", "refs/heads/main")


def test_state_written_by_the_previous_version_gains_the_new_column_and_keeps_its_builds(tmp_path):
    """A builds table without push_key (as the last release made it) is extended in place, records intact."""
    import sqlite3

    path = tmp_path / "state.sqlite"
    engine = create_db_engine(f"sqlite:///{path}")
    BuildStore(engine).create_schema()
    [old], _ = BuildStore(engine).record(push("d1"))
    engine.dispose()
    with sqlite3.connect(path) as db:  # back to the previous version's table: no push_key, no index on it
        db.execute("DROP INDEX ix_builds_push_key")
        db.execute("DROP INDEX ix_builds_delivered")
        db.execute("ALTER TABLE builds DROP COLUMN push_key")
    engine = create_db_engine(f"sqlite:///{path}")
    store = BuildStore(engine)
    store.create_schema()
    assert store.get(old.id).sha == SHA
    [first], _ = store.record(push("d2", sha="c" * 40), from_forge=True)
    [again], created = store.record(push("d3", sha="c" * 40), from_forge=True)
    assert (created, again.id) == (False, first.id)
    engine.dispose()


@pytest.mark.e2e
def test_processes_starting_together_create_the_schema_once_on_postgresql(fresh_postgres_url):
    """Web and workers each create the schema as they start; at the same moment on PostgreSQL none of them fails."""
    engines = [create_db_engine(fresh_postgres_url) for _ in range(4)]
    _, failures = all_at_once(lambda engine: BuildStore(engine).create_schema(), engines)
    for engine in engines:
        engine.dispose()
    assert failures == []


def test_housekeeping_reads_the_newest_build_of_each_ref_and_the_commits_still_building(store):
    """newest_of_each_ref and unfinished_shas: what engine housekeeping protects."""
    def on(ref, sha, delivery):
        return [PushEvent(forge="github", repo="acme/app", ref=ref, sha=sha, before="0" * 40, pusher="p",
                          delivery_id=delivery)]

    [old], _ = store.record(on("refs/heads/main", "a" * 40, "1"))
    [new], _ = store.record(on("refs/heads/main", "b" * 40, "2"))
    [feature], _ = store.record(on("refs/heads/feature", "c" * 40, "3"))
    for build in (old, feature):
        store.claim(build.id, owner="w", lease_s=60)
        store.finish(build.id, BuildState.SUCCEEDED, owner="w")
    assert sorted(b.id for b in store.newest_of_each_ref()) == [new.id, feature.id]
    assert sorted(b.id for b in store.newest_of_each_ref(state=BuildState.SUCCEEDED)) == [old.id, feature.id]
    assert store.unfinished_shas() == {"b" * 40}


def test_a_finished_build_keeps_its_phase_timings_and_a_retry_starts_them_afresh(store, clock):
    """Timings are the last run's: requeue clears them, and the new run's queue wait starts at the requeue."""
    [build], _ = store.record(push())
    clock.now += 3
    store.claim(build.id, owner="w", lease_s=60)
    store.finish(build.id, BuildState.FAILED, owner="w", error="boom",
                 timings={"queue_wait": 3.0, "fetch": 0.12345, "build": 1.5}, context_bytes=5 * 2**31)
    failed = store.get(build.id)
    assert list(failed.timings.items()) == [("queue_wait", 3.0), ("fetch", 0.12345), ("build", 1.5)]
    assert failed.to_json()["timings"] == {"queue_wait": 3.0, "fetch": 0.123, "build": 1.5}
    assert failed.to_json()["context_bytes"] == failed.context_bytes == 5 * 2**31
    clock.now += 60
    assert store.requeue(build.id)
    again = store.get(build.id)
    assert (again.timings, again.context_bytes, again.queued_at) == ({}, None, clock.now)
    assert again.to_json()["timings"] == {}


def test_counts_by_state_and_the_oldest_queued_build(store, clock):
    """What /metrics reads at scrape time: every state counted (zeros too), and when the longest wait began."""
    assert store.oldest_queued_at() is None
    [first], _ = store.record(push("d1"))
    clock.now += 10
    store.record(push("d2", sha="b" * 40))
    store.claim(first.id, owner="w", lease_s=60)
    counts = store.count_by_state()
    assert (counts[BuildState.QUEUED], counts[BuildState.RUNNING], counts[BuildState.FAILED]) == (1, 1, 0)
    assert store.oldest_queued_at() == clock.now
    [legacy], _ = store.record(push("d3", sha="c" * 40))
    with store.db.begin() as conn:  # a record made before queued_at existed: it entered the queue when made
        conn.execute(builds.update().where(builds.c.id == legacy.id).values(queued_at=None, created_at=clock.now - 5))
    assert store.oldest_queued_at() == clock.now - 5


def test_the_oldest_queued_build_is_read_at_the_end_of_an_index(tmp_path):
    """/metrics asks on every scrape; with a backlog, a scan of every queued build stalled the web process."""
    engine = create_db_engine(f"sqlite:///{tmp_path / 'state.sqlite'}")
    store = BuildStore(engine)
    store.create_schema()
    store.record(push("d1"))
    with sqlite_statements(engine) as statements:
        store.oldest_queued_at()
    plans = [sqlite_plan(engine, s) for s in statements if s.startswith("SELECT")]
    assert plans and all("ix_builds_state_queued_at (state=? AND queued_at" in plan for plan in plans), plans
    engine.dispose()


def branch_push(delivery, sha, before="0" * 40, ref="refs/heads/main"):
    return [PushEvent(forge="github", repo="acme/app", ref=ref, sha=sha, before=before, pusher="someone",
                      delivery_id=delivery)]


def test_accepting_a_newer_push_cancels_the_queued_one_it_replaces_in_the_same_transaction(store):
    """B (after A) is recorded and A cancelled at once; the result names the pair, and the ending is counted once."""
    ended = []
    store.ended = ended.append
    a = store.accept(branch_push("a", "a" * 40), dispatching=True, from_forge=True, supersede=True)
    b = store.accept(branch_push("b", "b" * 40, before="a" * 40), dispatching=True, from_forge=True, supersede=True)
    [old], [new] = a.builds, b.builds
    assert (a.cancelled, b.cancelled) == ((), ((old.id, new.id),))
    assert b.builds == (store.get(new.id),)  # the build returned is the one stored, though not read back
    assert store.get(old.id).state is BuildState.CANCELLED
    assert store.get(old.id).error == f"superseded by build {new.id} ({'b' * 12}) of refs/heads/main"
    assert ended == [BuildState.CANCELLED]


@pytest.mark.parametrize(("supersede", "ref", "cancelled"), [
    (False, "refs/heads/main", False),  # the repository opted out
    (True, "refs/tags/v1", False),      # tags are releases
    (True, "refs/heads/main", True),
])
def test_only_branch_builds_are_superseded_and_only_when_asked(store, supersede, ref, cancelled):
    """cancel_superseded = false and tag pushes leave the queued build alone."""
    [old] = store.accept(branch_push("a", "a" * 40, ref=ref), supersede=supersede).builds
    store.accept(branch_push("b", "b" * 40, before="a" * 40, ref=ref), supersede=supersede)
    assert store.get(old.id).state is (BuildState.CANCELLED if cancelled else BuildState.QUEUED)


def test_an_older_push_delivered_late_cancels_nothing(store):
    """A push that the queued one follows from is older: both stay queued."""
    [newer] = store.accept(branch_push("b", "b" * 40, before="a" * 40), from_forge=True, supersede=True).builds
    late = store.accept(branch_push("a", "a" * 40), from_forge=True, supersede=True)
    assert late.created and late.cancelled == ()
    assert store.get(newer.id).state is BuildState.QUEUED


def test_a_replayed_delivery_cancels_nothing_and_writes_nothing(store):
    """The duplicate of an accepted push returns its build, changes no record, and supersedes nothing."""
    store.accept(branch_push("a", "a" * 40), from_forge=True, supersede=True)
    [b] = store.accept(branch_push("b", "b" * 40, before="a" * 40), from_forge=True, supersede=True).builds
    before = store.list()
    again = store.accept(branch_push("b", "b" * 40, before="a" * 40), from_forge=True, supersede=True)
    replayed = store.accept(branch_push("b-replayed", "b" * 40, before="a" * 40), from_forge=True, supersede=True)
    assert (again.created, again.builds, again.cancelled) == (False, (b,), ())
    assert (replayed.created, replayed.builds) == (False, (b,))
    assert store.list() == before


def test_concurrent_deliveries_and_their_replays_are_each_recorded_exactly_once(store):
    """Forty threads at once: twenty pushes to one branch and a replay of each; twenty builds, one left queued."""
    pushes = [branch_push(f"d{i}", f"{i + 1:040x}") for i in range(20)]
    results, failures = all_at_once(
        lambda events: store.accept(events, dispatching=True, from_forge=True, supersede=True), pushes + pushes)
    assert failures == []
    assert sum(r.created for r in results) == 20
    recorded = store.list(limit=100)
    assert len(recorded) == 20 and {b.sha for b in recorded} == {e.sha for [e] in pushes}
    by_delivery = {}
    for result in results:
        by_delivery.setdefault(result.builds[0].sha, set()).add(result.builds[0].id)
    assert all(len(ids) == 1 for ids in by_delivery.values())  # a replay is answered with the original's build
    # The newest push supersedes every older queued one: exactly one build is left waiting.
    assert [b.id for b in recorded if b.state is BuildState.QUEUED] == [max(b.id for b in recorded)]
    assert sum(len(r.cancelled) for r in results) == 19


def test_an_accepted_push_survives_a_new_connection(db_url, clock):
    """What accept returned is on disk: another engine (another process) reads the same builds."""
    engine = create_db_engine(db_url)
    store = BuildStore(engine, clock=clock)
    store.create_schema()
    accepted = store.accept(branch_push("a", "a" * 40), dispatching=True, from_forge=True, supersede=True)
    engine.dispose()
    other = BuildStore(create_db_engine(db_url), clock=clock)
    assert [other.get(b.id) for b in accepted.builds] == list(accepted.builds)
    other.db.dispose()


def test_a_write_lock_held_elsewhere_fails_the_transaction_once_and_the_next_one_goes_through(tmp_path, monkeypatch):
    """``BEGIN IMMEDIATE`` refused (another process writing past the busy timeout): an error, and the turn given back once."""
    monkeypatch.setattr(defaults, "SQLITE_BUSY_TIMEOUT_MS", 200)
    path = tmp_path / "state.sqlite"
    engine = create_db_engine(f"sqlite:///{path}")
    BuildStore(engine).create_schema()
    other_process = sqlite3.connect(path, isolation_level=None)
    other_process.execute("BEGIN IMMEDIATE")
    with pytest.raises(sa.exc.OperationalError, match="locked"), engine.begin():
        pass
    other_process.execute("COMMIT")
    assert can_write(engine)
    other_process.close()
    engine.dispose()


def test_a_new_push_reads_only_its_branchs_queued_builds_however_many_wait_elsewhere(tmp_path):
    """Each push of a branch looks up that branch's queued builds. On SQLite that lookup went through every
    queued build of every repository (8.6 ms a delivery with 20,000 waiting, inside the write lock); its
    plan must search by repository, branch and state together."""
    engine = create_db_engine(f"sqlite:///{tmp_path / 'state.sqlite'}")
    store = BuildStore(engine)
    store.create_schema()
    for i in range(30):  # a backlog elsewhere: another repository's pushes, waiting for a worker
        store.accept([PushEvent(forge="github", repo="acme/busy", ref=f"refs/heads/b{i}", sha=f"{i + 1:040x}",
                                before="0" * 40, pusher="p", delivery_id=f"busy-{i}")], from_forge=True)
    with sqlite_statements(engine) as statements:
        store.accept(branch_push("quiet", SHA), from_forge=True, supersede=True)
    [lookup] = [s for s in statements if "state = 'queued'" in s and "ORDER BY" in s]
    plan = sqlite_plan(engine, lookup)
    assert "forge=? AND repo=? AND ref=? AND state=?" in plan, plan
    engine.dispose()
