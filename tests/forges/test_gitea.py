"""Gitea, Forgejo and Gogs push payloads, parsed into PushEvents (webhook/forges/gitea.py)."""

import pytest

from webhook.events import Ignored
from webhook.forges.gitea import parse_gitea

from ..helpers.support import fixture


@pytest.mark.parametrize("header", ["x-gitea-event", "x-forgejo-event", "x-gogs-event"])
def test_gitea_family_push_becomes_a_push_event(header):
    """Gitea's push names repository.full_name and builds `after`, whichever flavour sent it."""
    [event] = parse_gitea({header: "push", "x-gitea-delivery": "d-9"}, fixture("gitea/push.json"))
    assert (event.forge, event.repo, event.ref, event.sha, event.pusher, event.default_branch, event.message) == (
        "gitea", "example/example", "refs/heads/master", "67b56589a45103f891bdee7c0546e5d40bc02001",
        "example", "master", "example\n")
    assert event.delivery_id == "d-9"


def test_gitea_deletion_and_other_events_are_ignored():
    """A zero `after` is a deletion; create/delete/issues events are not pushes."""
    payload = fixture("gitea/push.json") | {"after": "0" * 40}
    assert parse_gitea({"x-gitea-event": "push"}, payload) == Ignored("ref deleted")
    assert parse_gitea({"x-gitea-event": "create"}, fixture("gitea/push.json")) == Ignored("event 'create' is not a push")
