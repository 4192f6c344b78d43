"""Deliveries answered at the same moment share one commit; each answers only once it is on disk.

The scenarios run greenlets in a process gevent patched, as gunicorn's worker does, against a
real SQLite file (tests/helpers/greenlet_writes.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from webhook.fair_lock import FairLock
from webhook.write_groups import MAX_WRITES, WriteGroups, cooperative_pause

ROOT = Path(__file__).resolve().parent.parent


def scenario(name: str, tmp_path: Path, *flags: str) -> dict:
    done = subprocess.run([sys.executable, "-m", "tests.helpers.greenlet_writes", name, str(tmp_path / "state.db"), *flags],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["grouped"], "the scenario ran without write groups"
    return report


def test_writes_arriving_together_share_one_commit_and_each_answers_once_it_is_committed(tmp_path):
    report = scenario("burst", tmp_path)
    names = [f"i{n}" for n in range(10)]
    assert report["outcomes"] == names
    assert report["items"] == names
    assert report["commits"] == 1
    assert all(report["seen_by_others_when_answered"].values())


def test_a_write_that_fails_is_undone_alone_and_only_its_writer_sees_the_error(tmp_path):
    report = scenario("member_fails", tmp_path)
    assert report["outcomes"] == ["i0", "i1", "ValueError", "i3", "i4"]
    assert report["items"] == ["i0", "i1", "i3", "i4"]
    assert report["commits"] == 1


def test_a_failure_that_rolls_the_whole_transaction_back_fails_every_writer(tmp_path):
    """SQLite undoes a whole transaction on some errors (OR ROLLBACK, a full disk): no one may answer success then."""
    report = scenario("whole_transaction_rolled_back", tmp_path)
    assert report["outcomes"] == ["GroupCommitFailed", "GroupCommitFailed", "IntegrityError", "GroupCommitFailed"]
    assert (report["items"], report["commits"]) == ([], 0)


def test_a_write_that_lets_other_greenlets_run_keeps_the_transaction_to_its_group(tmp_path):
    """A write arriving meanwhile waits for the next group: it is never run inside another's savepoint."""
    report = scenario("yielding_write", tmp_path)
    assert report["outcomes"] == ["i0", "slow", "i2", "late"]
    assert (report["items"], report["commits"]) == (["i0", "i2", "late", "slow"], 2)


def test_when_the_shared_commit_fails_every_writer_fails_and_nothing_is_recorded(tmp_path):
    """A deferred foreign key a member broke fails the COMMIT itself."""
    report = scenario("commit_fails", tmp_path)
    assert report["outcomes"] == ["GroupCommitFailed"] * 5
    assert report["items"] == []


def test_a_delivery_and_its_replay_get_errors_when_their_shared_commit_fails(tmp_path):
    """Neither a 202 nor a duplicate's 200 for a build that is not recorded."""
    report = scenario("same_push_twice", tmp_path, "--failing")
    assert report["outcomes"] == ["GroupCommitFailed"] * 5
    assert report["builds"] == []


def test_a_leader_killed_before_it_commits_fails_its_members_and_records_nothing(tmp_path):
    report = scenario("leader_killed", tmp_path)
    assert report["outcomes"] == ["killed"] + ["GroupCommitFailed"] * 4
    assert (report["items"], report["commits"]) == ([], 0)


def test_writes_arriving_while_another_transaction_holds_the_turn_wait_to_share_one_commit(tmp_path):
    """Not each in the turn's queue, where each would lead a group of one (seven commits, not two)."""
    report = scenario("turn_held_elsewhere", tmp_path)
    assert report["outcomes"] == [f"i{n}" for n in range(6)]
    assert report["commits"] == 2


def test_a_transaction_takes_at_most_max_writes_and_the_rest_go_in_the_next(tmp_path):
    report = scenario("many", tmp_path)
    assert len(report["items"]) == 150 and report["outcomes"] == report["items"]
    assert report["commits"] == -(-150 // MAX_WRITES)


def test_each_write_runs_in_its_writers_context_whoever_leads(tmp_path):
    """A log line written inside a write says which delivery it is about, not the leader's."""
    assert scenario("context", tmp_path)["outcomes"] == ["d0", "d1", "d2"]


def test_a_delivery_and_its_replay_in_one_group_record_one_build(tmp_path):
    """The replay reads the build its original wrote in the same transaction: a duplicate, answered after the commit."""
    report = scenario("same_push_twice", tmp_path)
    assert report["builds"] == [[1, "refs/heads/main"], [2, "refs/heads/dev"]]
    assert report["outcomes"] == [[[1], True], [[1], False], [[2], True], [[1], False]]
    assert report["commits"] == 1


def test_outside_a_patched_process_each_write_is_its_own_transaction(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'plain.db'}")
    assert cooperative_pause(engine) is None
    groups = WriteGroups(engine)
    commits: list[int] = []
    sa.event.listen(engine, "commit", lambda conn: commits.append(1))
    groups.run(lambda conn: conn.exec_driver_sql("CREATE TABLE t (x)"))
    assert [groups.run(lambda conn, n=n: conn.exec_driver_sql("INSERT INTO t VALUES (?)", (n,)).rowcount)
            for n in range(3)] == [1, 1, 1]
    assert len(commits) == 4


def test_a_fair_lock_goes_to_its_waiters_in_the_order_they_asked():
    lock, order = FairLock(), []

    def take(name: str) -> None:
        with lock:
            order.append(name)

    lock.acquire()
    threads = []
    for name in ("first", "second", "third"):
        threads.append(threading.Thread(target=take, args=(name,)))
        threads[-1].start()
        wait_for(lambda: len(lock._waiters) == len(threads))
    lock.release()
    take("late")  # asks once the lock was handed on: after every waiter, however fast it asks
    for thread in threads:
        thread.join()
    assert order == ["first", "second", "third", "late"]


def test_a_waiter_that_gives_up_is_passed_over(tmp_path):
    report = scenario("fair_lock_waiter_killed", tmp_path)
    assert (report["order"], report["free"]) == (["first", "third"], True)


def test_a_waiter_that_gives_up_as_it_is_handed_the_lock_passes_it_on(tmp_path):
    report = scenario("fair_lock_waiter_killed", tmp_path, "--when-handed")
    assert (report["order"], report["free"]) == (["second", "third"], True)


def test_a_fair_lock_refuses_a_release_it_does_not_hold():
    with pytest.raises(RuntimeError, match="not held"):
        FairLock().release()


def wait_for(condition, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)
