"""GitHub's push payloads, parsed into PushEvents (webhook/forges/github.py)."""

import pytest

from webhook.errors import BadRequest
from webhook.events import Ignored, PushEvent
from webhook.forges.github import parse_github

from ..helpers.support import fixture
from . import GH


def test_github_branch_push_becomes_a_push_event():
    """GitHub's example branch push names the repo, ref, head commit and pusher."""
    [event] = parse_github(GH, fixture("github/push_branch.json"))
    assert event == PushEvent(
        forge="github", repo="Codertocat/Hello-World", ref="refs/heads/master",
        sha="6113728f27ae82c7b1a177c8d03f9e96e0adf246", before="0" * 40, pusher="Codertocat",
        delivery_id="109948940:72d3162e-cc78-11e3-81ab-4c9367dc0958", default_branch="master",
        message=event.message, changed_paths=("README.md",),
    )
    assert event.branch == "master"


def test_github_tag_push_builds_the_head_commit():
    """A tag push builds head_commit.id (for annotated tags `after` is the tag object)."""
    [event] = parse_github(GH, fixture("github/push_tag.json"))
    assert (event.ref, event.sha, event.branch, event.ref_name) == (
        "refs/tags/simple-tag", "6113728f27ae82c7b1a177c8d03f9e96e0adf246", None, "simple-tag")


@pytest.mark.parametrize("event_name, name, reason", [
    ("push", "github/push_delete.json", "ref deleted"),
    ("ping", "github/ping.json", "ping"),
    ("issues", "github/ping.json", "event 'issues' is not a push"),
])
def test_github_deliveries_that_build_nothing(event_name, name, reason):
    """Deletions, pings and other events are ignored with a reason."""
    assert parse_github({**GH, "x-github-event": event_name}, fixture(name)) == Ignored(reason)


@pytest.mark.parametrize("field, value", [
    ("ref", "refs/heads/--upload-pack=touch /tmp/x"),
    ("ref", "HEAD"),
    ("after", "6113728f27ae82c7b1a177c8d03f9e96e0adf24"),
    ("repository", {"full_name": 7}),
])
def test_github_push_with_invalid_fields_is_a_bad_request(field, value):
    """Refs that could be options, short ids and mistyped names are refused."""
    payload = fixture("github/push_branch.json")
    payload[field] = value
    if field == "after":
        payload["head_commit"]["id"] = value
    with pytest.raises(BadRequest):
        parse_github(GH, payload)
