"""Bitbucket Cloud and Data Center push payloads, parsed into PushEvents (webhook/forges/bitbucket.py)."""

import hashlib

import pytest

from webhook.errors import BadRequest
from webhook.events import Ignored
from webhook.forges.bitbucket import parse_bitbucket

from ..helpers.support import fixture


def test_bitbucket_cloud_push_becomes_one_event_per_changed_ref():
    """Bitbucket's documented repo:push builds new.target.hash of each change."""
    [event] = parse_bitbucket({"x-event-key": "repo:push", "x-request-uuid": "u-1"}, fixture("bitbucket/repo_push.json"))
    assert (event.forge, event.repo, event.ref, event.sha, event.before, event.pusher, event.message) == (
        "bitbucket", "team_name/repo_name", "refs/heads/name-of-branch", "709d658dc5b6d6afcd46049c2f332ee3f515a67d",
        "1e65c05c1d5171631d92438a13901ca7dae9618c", "Emma", "new commit message\n")
    assert event.delivery_id == "u-1:refs/heads/name-of-branch"


def test_bitbucket_cloud_push_of_several_refs_and_deletions():
    """One push may create a tag, update a branch and delete another: deletions build nothing."""
    payload = fixture("bitbucket/repo_push.json")
    change = payload["push"]["changes"][0]
    tag = {**change, "new": {**change["new"], "type": "tag", "name": "v2.0.0"}}
    deleted = {**change, "new": None, "closed": True}
    payload["push"]["changes"] = [change, tag, deleted]
    events = parse_bitbucket({"x-event-key": "repo:push"}, payload)
    assert [e.ref for e in events] == ["refs/heads/name-of-branch", "refs/tags/v2.0.0"]
    payload["push"]["changes"] = [deleted]
    assert parse_bitbucket({"x-event-key": "repo:push"}, payload) == Ignored("ref deleted")


def test_bitbucket_data_center_refs_changed():
    """Data Center's repo:refs_changed names the repo PROJECT/slug; its example is a deletion."""
    payload = fixture("bitbucket/refs_changed_server.json")
    assert parse_bitbucket({"x-event-key": "repo:refs_changed"}, payload) == Ignored("ref deleted")
    payload["changes"][0].update(type="UPDATE", toHash="a" * 40)
    [event] = parse_bitbucket({"x-event-key": "repo:refs_changed", "x-request-id": "r-1"}, payload)
    assert (event.repo, event.ref, event.sha, event.before, event.pusher) == (
        "~gopher/webhook-test", "refs/heads/feature/wip", "a" * 40, "32a0b8a740c2963c6f56bd8baf3dc05683d299e0", "gopher")


@pytest.mark.parametrize("event, reason", [("diagnostics:ping", "ping"), ("pullrequest:created", "event 'pullrequest:created' is not a push")])
def test_bitbucket_other_events_are_ignored(event, reason):
    """Bitbucket's ping and pull request events build nothing."""
    assert parse_bitbucket({"x-event-key": event}, {}) == Ignored(reason)


def test_a_long_bitbucket_ref_is_hashed_into_the_delivery_id():
    """Bitbucket's delivery id names each ref; a long one by its SHA-256, so the id stays within the delivery key."""
    payload = fixture("bitbucket/repo_push.json")
    payload["push"]["changes"][0]["new"]["name"] = "b" * 1000
    [event] = parse_bitbucket({"x-event-key": "repo:push", "x-request-uuid": "u-1"}, payload)
    ref = "refs/heads/" + "b" * 1000
    assert event.ref == ref and event.delivery_id == "u-1:" + hashlib.sha256(ref.encode()).hexdigest()


def test_a_bitbucket_ref_that_is_not_a_string_is_a_bad_request():
    """A Data Center change whose ref id is a number is refused, not a crash while naming the delivery."""
    payload = fixture("bitbucket/refs_changed_server.json")
    payload["changes"][0].update(type="UPDATE", toHash="a" * 40, ref={"id": 7})
    with pytest.raises(BadRequest, match="ref must start with"):
        parse_bitbucket({"x-event-key": "repo:refs_changed", "x-request-id": "r-1"}, payload)
