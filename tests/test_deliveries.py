"""Delivery records (webhook/notify/deliveries.py): what is owed, claimed once, attempted, superseded, reopened."""

import pytest

from webhook.events import PushEvent
from webhook.notify.deliveries import Attempt, DeliveryState, DeliveryStore
from webhook.store import BuildStore, create_db_engine
from webhook.timestamps import iso_time


@pytest.fixture
def stores(tmp_path, clock):
    """A build store and a delivery store on one fresh SQLite database, and one build to owe things for."""
    db = create_db_engine(f"sqlite:///{tmp_path / 'state.sqlite'}")
    builds = BuildStore(db, clock=clock)
    builds.create_schema()
    [build], _ = builds.record([PushEvent(forge="github", repo="acme/app", ref="refs/heads/main", sha="a" * 40,
                                          before="0" * 40, pusher="p", delivery_id=None)])
    yield DeliveryStore(db, clock=clock), build
    db.dispose()


def owe(deliveries, build, *, kind="status", target="github", **extra):
    return deliveries.add(build_id=build.id, repo="acme/app", ref="refs/heads/main", kind=kind, target=target,
                          payload={"state": "pending", "n": [1, 2]}, **extra)


def test_a_new_delivery_is_pending_and_due_now(stores, clock):
    deliveries, build = stores
    owed = owe(deliveries, build)
    assert (owed.state, owed.attempts, owed.next_attempt_at, owed.created_at, owed.finished_at) == (
        DeliveryState.PENDING, 0, clock.now, clock.now, None)
    assert owed.payload == {"state": "pending", "n": [1, 2]} and deliveries.get(owed.id) == owed
    assert deliveries.of_build(build.id) == [owed] and deliveries.get(owed.id + 1) is None


def test_a_newer_status_supersedes_only_the_pending_ones_of_its_build_kind_and_target(stores):
    deliveries, build = stores
    old, hook, other_target = owe(deliveries, build), owe(deliveries, build, kind="hook", target="prod"), owe(deliveries, build, target="gitlab")
    newer = owe(deliveries, build, supersede_pending_of_build=True)
    states = {d.id: d.state for d in deliveries.of_build(build.id)}
    assert states == {old.id: DeliveryState.SUPERSEDED, hook.id: DeliveryState.PENDING,
                      other_target.id: DeliveryState.PENDING, newer.id: DeliveryState.PENDING}


def test_a_due_delivery_is_claimed_once_until_its_hold_runs_out(stores, clock):
    """Two pollers never take the same attempt: a claim pushes the next attempt ``hold_s`` ahead."""
    deliveries, build = stores
    owed = owe(deliveries, build)
    assert [d.id for d in deliveries.claim_due(hold_s=60)] == [owed.id]
    assert deliveries.claim_due(hold_s=60) == []
    assert deliveries.get(owed.id).next_attempt_at == clock.now + 60
    clock.now += 61
    assert [d.id for d in deliveries.claim_due(hold_s=60, build_id=build.id)] == [owed.id]
    assert deliveries.claim_due(hold_s=60, build_id=build.id + 1) == []


def test_claims_take_the_oldest_first_up_to_the_limit(stores):
    deliveries, build = stores
    owed = [owe(deliveries, build, target=f"t{i}") for i in range(3)]
    assert [d.id for d in deliveries.claim_due(hold_s=60, limit=2)] == [owed[0].id, owed[1].id]
    assert [d.id for d in deliveries.claim_due(hold_s=60, limit=2)] == [owed[2].id]


def test_attempts_are_recorded_with_where_the_delivery_stands(stores, clock):
    deliveries, build = stores
    owed = owe(deliveries, build)
    deliveries.record_attempt(owed, state=DeliveryState.PENDING, at=clock.now, duration_s=0.25, status_code=503,
                              error="503 Service Unavailable", retry_at=clock.now + 10)
    retrying = deliveries.get(owed.id)
    assert (retrying.state, retrying.attempts, retrying.next_attempt_at, retrying.last_error, retrying.finished_at) == (
        DeliveryState.PENDING, 1, clock.now + 10, "503 Service Unavailable", None)
    clock.now += 10
    deliveries.record_attempt(retrying, state=DeliveryState.DELIVERED, at=clock.now, duration_s=0.1, status_code=201, error=None)
    done = deliveries.get(owed.id)
    assert (done.state, done.attempts, done.last_error, done.finished_at) == (DeliveryState.DELIVERED, 2, None, clock.now)
    assert deliveries.attempts(owed.id) == [Attempt(clock.now - 10, 0.25, 503, "503 Service Unavailable"),
                                            Attempt(clock.now, 0.1, 201, None)]


def test_a_superseded_or_finished_delivery_can_be_reopened(stores, clock):
    """``pushbuild redeliver``: whatever its state, the delivery is pending and due now."""
    deliveries, build = stores
    owed = owe(deliveries, build)
    deliveries.supersede(owed)
    assert deliveries.get(owed.id).state is DeliveryState.SUPERSEDED and deliveries.claim_due(hold_s=60) == []
    clock.now += 100
    reopened = deliveries.reopen(owed.id)
    assert (reopened.state, reopened.next_attempt_at, reopened.finished_at) == (DeliveryState.PENDING, clock.now, None)
    assert [d.id for d in deliveries.claim_due(hold_s=60)] == [owed.id]


def test_the_api_shows_a_delivery_with_its_attempts_and_no_payload(stores, clock):
    """The next attempt is shown only while one is owed; the payload is not part of it."""
    deliveries, build = stores
    owed = owe(deliveries, build)
    pending = owed.to_json([])
    assert pending == {"id": owed.id, "build": build.id, "kind": "status", "target": "github", "state": "pending",
                       "attempts": [], "next_attempt_at": iso_time(clock.now), "last_error": None,
                       "created_at": iso_time(clock.now), "finished_at": None}
    deliveries.record_attempt(owed, state=DeliveryState.FAILED, at=clock.now, duration_s=1.23456, status_code=404, error="404")
    failed = deliveries.get(owed.id)
    shown = failed.to_json(deliveries.attempts(owed.id))
    assert shown["next_attempt_at"] is None and shown["state"] == "failed"
    assert shown["attempts"] == [{"at": iso_time(clock.now), "duration_s": 1.235, "status_code": 404, "error": "404"}]
