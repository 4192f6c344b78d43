"""A replay of a push this process accepted lately is answered from memory, the database untouched."""

import json
import time
from dataclasses import replace

import pytest

from webhook import forges
from webhook.events import PushEvent
from webhook.intake import receive
from webhook.recent_pushes import RecentPushes
from webhook.services import Services
from webhook.store import Build, BuildState
from webhook.worker import Dispatcher, make_celery

from .helpers.configs import GITHUB_SECRET, Clock, repo_table
from .helpers.support import github_headers, github_push, queued, sqlite_statements

REPO = "Codertocat/Hello-World"
A, B = "a" * 40, "b" * 40


@pytest.fixture
def service(make_config):
    """intake.receive as the web layer calls it, with a memory of recent pushes and a count of SQL statements run."""
    config = make_config(repo_table(REPO))
    services = Services(config)
    dispatcher = Dispatcher(make_celery(config), services.store)
    clock = Clock()
    recent = RecentPushes(capacity=4, ttl_s=600, clock=clock)

    def deliver(payload, delivery):
        body = json.dumps(payload).encode()
        headers = {k.lower(): v for k, v in github_headers(body, GITHUB_SECRET, delivery=delivery).items()}
        return receive(config, services.store, dispatcher, forges.forge("github"), headers=headers, body=body,
                       content_type="application/json", now=time.time(), recent=recent)

    with sqlite_statements(services.store.db) as statements:
        deliver.config, deliver.store, deliver.clock, deliver.statements = config, services.store, clock, statements
        yield deliver


@pytest.mark.parametrize("delivery", ["d-1", "made-up"])
def test_a_replay_is_the_same_build_and_runs_no_sql_whatever_its_delivery_id(service, delivery):
    """GitHub signs the body, not the delivery id header: a captured delivery comes back under any id."""
    first = service(github_push(repo=REPO, sha=A), "d-1")
    service.statements.clear()
    again = service(github_push(repo=REPO, sha=A), delivery)
    assert (again.created, [b.id for b in again.builds]) == (False, [first.builds[0].id])
    assert service.statements == []
    assert queued(service.config) == [first.builds[0].id]


def test_a_new_push_still_goes_to_the_database(service):
    service(github_push(repo=REPO, sha=A), "d-1")
    service.statements.clear()
    second = service(github_push(repo=REPO, sha=B, before=A), "d-2")
    assert second.created and service.statements
    assert [b.sha for b in service.store.list()] == [B, A]


def test_past_its_time_a_replay_is_answered_by_the_database_as_before(service):
    first = service(github_push(repo=REPO, sha=A), "d-1")
    service.clock.now += 601
    service.statements.clear()
    again = service(github_push(repo=REPO, sha=A), "d-1")
    assert (again.created, [b.id for b in again.builds]) == (False, [first.builds[0].id])
    assert service.statements  # asked the database, which still says duplicate


def build(build_id, ref, sha):
    return Build(id=build_id, repo="acme/app", forge="github", ref=ref, sha=sha, before=None, pusher=None,
                 default_branch=None, state=BuildState.QUEUED, tags=(), digest=None, error=None, attempts=0,
                 created_at=0.0, started_at=None, finished_at=None)


def event(ref, sha, delivery):
    return PushEvent(forge="github", repo="acme/app", ref=ref, sha=sha, before="0" * 40, pusher="p", delivery_id=delivery)


def test_two_refs_at_one_commit_are_remembered_each_with_its_own_build():
    recent = RecentPushes(capacity=10, ttl_s=60, clock=Clock())
    main, tag = event("refs/heads/main", A, "d"), event("refs/tags/v1", A, "d")
    recent.remember([main, tag], [build(1, main.ref, A), build(2, tag.ref, A)])
    assert [b.id for b in recent.recorded([event("refs/tags/v1", A, "other")])] == [2]
    assert [b.id for b in recent.recorded([main, tag])] == [1, 2]
    assert recent.recorded([event("refs/heads/dev", A, "other")]) is None


def test_the_memory_holds_at_most_its_capacity_forgetting_the_oldest():
    recent = RecentPushes(capacity=4, ttl_s=60, clock=Clock())
    for i in range(1, 4):  # two keys each: the delivery and the push
        pushed = event("refs/heads/main", f"{i:040x}", f"d-{i}")
        recent.remember([pushed], [build(i, pushed.ref, pushed.sha)])
    assert len(recent._builds) == 4
    assert recent.recorded([event("refs/heads/main", f"{1:040x}", "d-1")]) is None
    assert [b.id for b in recent.recorded([event("refs/heads/main", f"{3:040x}", "x")])] == [3]


def test_a_duplicate_teaches_the_memory_nothing(service):
    """The review's case: B's bytes under A's recorded delivery id are a duplicate of A, not a record of B.

    Had the memory noted B's push as A's build, the forge's own delivery of B would be answered
    duplicate and never built.
    """
    x, y, w = "1" * 40, "2" * 40, "3" * 40
    service(github_push(repo=REPO, sha=x, before=y), "d-A")
    service(github_push(repo=REPO, sha=w, before=x), "d-C")
    service.clock.now += 601  # this process no longer remembers d-A (or: another process, a restart)
    replay = service(github_push(repo=REPO, sha=x, before=w), "d-A")
    assert not replay.created
    legit = service(github_push(repo=REPO, sha=x, before=w), "d-B")
    assert legit.created and legit.builds[0].before == w


def test_what_is_remembered_of_a_build_is_what_an_answer_needs():
    """A push's changed paths (megabytes for a large one) are not kept for ten minutes."""
    recent = RecentPushes(capacity=10, ttl_s=60, clock=Clock())
    pushed = event("refs/heads/main", A, "d")
    recent.remember([pushed], [replace(build(1, pushed.ref, A), changed_paths=("a/" * 1000,) * 1000)])
    [kept] = recent.recorded([pushed])
    assert (kept.id, kept.changed_paths) == (1, None)
