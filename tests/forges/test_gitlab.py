"""GitLab's push and tag push hooks, parsed into PushEvents (webhook/forges/gitlab.py)."""

from webhook.events import Ignored
from webhook.forges.gitlab import parse_gitlab

from ..helpers.support import fixture


def test_gitlab_push_becomes_a_push_event():
    """GitLab's documented push hook builds checkout_sha of path_with_namespace."""
    [event] = parse_gitlab({"x-gitlab-event": "Push Hook", "idempotency-key": "k1"}, fixture("gitlab/push.json"))
    assert (event.forge, event.repo, event.ref, event.sha, event.pusher, event.delivery_id, event.default_branch) == (
        "gitlab", "mike/diaspora", "refs/heads/master", "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
        "jsmith", "k1", "master")
    assert event.message.startswith("fixed readme")


def test_gitlab_tag_push_becomes_a_push_event():
    """GitLab's documented tag push hook builds the tagged commit."""
    [event] = parse_gitlab({"x-gitlab-event": "Tag Push Hook"}, fixture("gitlab/tag_push.json"))
    assert (event.ref, event.sha, event.repo) == (
        "refs/tags/v1.0.0", "82b3d5ae55f7080f1e6022629cdb57bfae7cccc7", "jsmith/example")


def test_gitlab_branch_deletion_is_ignored():
    """A deleted branch has no checkout_sha and builds nothing."""
    payload = fixture("gitlab/push.json")
    payload.update(after="0" * 40, checkout_sha=None)
    assert parse_gitlab({"x-gitlab-event": "Push Hook"}, payload) == Ignored("ref deleted")


def test_gitlab_other_events_are_ignored():
    """Merge request hooks and the like are not pushes."""
    assert isinstance(parse_gitlab({"x-gitlab-event": "Merge Request Hook"}, {"object_kind": "merge_request"}), Ignored)


def test_gitlab_deduplicates_on_the_signed_webhook_id():
    """With both headers, the delivery id is webhook-id (signed with a signing token), not Idempotency-Key (never signed)."""
    headers = {"x-gitlab-event": "Push Hook", "idempotency-key": "chosen-by-a-replayer", "webhook-id": "msg_2x"}
    [event] = parse_gitlab(headers, fixture("gitlab/push.json"))
    assert event.delivery_id == "msg_2x"
