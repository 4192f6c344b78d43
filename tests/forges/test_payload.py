"""What every forge's parser shares (webhook/forges/payload.py): required headers, delivery ids, field limits, changed paths."""

import pytest

from webhook.errors import BadRequest
from webhook.forges import REGISTRY
from webhook.forges.bitbucket import parse_bitbucket
from webhook.forges.gitea import parse_gitea
from webhook.forges.github import parse_github
from webhook.forges.gitlab import parse_gitlab

from ..helpers.support import fixture
from . import GH


@pytest.mark.parametrize("forge", REGISTRY.values(), ids=REGISTRY)
def test_missing_event_header_is_a_bad_request(forge):
    """Without the event header there is nothing to decide on, whichever forge's endpoint it came to."""
    with pytest.raises(BadRequest, match="missing X-"):
        forge.parse({}, fixture("github/push_branch.json"))


def test_changed_paths_are_a_hint_only_when_the_payload_lists_every_commit():
    """GitLab's total_commits_count beyond the listed commits, or 20 listed commits, means the list is partial."""
    payload = fixture("gitlab/push.json")  # lists 2 of its 4 commits
    assert parse_gitlab({"x-gitlab-event": "Push Hook"}, payload)[0].changed_paths is None
    payload["total_commits_count"] = 2
    [event] = parse_gitlab({"x-gitlab-event": "Push Hook"}, payload)
    assert event.changed_paths == ("CHANGELOG", "app/controller/application.rb")
    github = fixture("github/push_branch.json")
    github["commits"] = github["commits"] * 20
    assert parse_github(GH, github)[0].changed_paths is None
    assert parse_bitbucket({"x-event-key": "repo:push"}, fixture("bitbucket/repo_push.json"))[0].changed_paths is None


LONG_ID = "x" * 101


@pytest.mark.parametrize("parse, headers, payload", [
    (parse_github, {**GH, "x-github-delivery": LONG_ID}, "github/push_branch.json"),
    (parse_github, {**GH, "x-github-hook-id": LONG_ID}, "github/push_branch.json"),
    (parse_github, {**GH, "x-github-delivery": "72d3162e\n"}, "github/push_branch.json"),
    (parse_gitlab, {"x-gitlab-event": "Push Hook", "webhook-id": LONG_ID}, "gitlab/push.json"),
    (parse_gitlab, {"x-gitlab-event": "Push Hook", "idempotency-key": LONG_ID}, "gitlab/push.json"),
    (parse_gitlab, {"x-gitlab-event": "Push Hook", "x-gitlab-event-uuid": LONG_ID}, "gitlab/push.json"),
    (parse_gitea, {"x-gitea-event": "push", "x-gitea-delivery": LONG_ID}, "gitea/push.json"),
    (parse_gitea, {"x-forgejo-event": "push", "x-forgejo-delivery": LONG_ID}, "gitea/push.json"),
    (parse_bitbucket, {"x-event-key": "repo:push", "x-request-uuid": LONG_ID}, "bitbucket/repo_push.json"),
])
def test_delivery_id_headers_longer_than_the_store_keeps_are_refused(parse, headers, payload):
    """A delivery id header over 100 characters, or with a control character, is a 400, not a column overflow."""
    with pytest.raises(BadRequest, match="not a delivery id"):
        parse(headers, fixture(payload))


def test_delivery_ids_of_100_characters_are_kept():
    """The longest delivery id allowed is used as it is."""
    [event] = parse_gitea({"x-gitea-event": "push", "x-gitea-delivery": "d" * 100}, fixture("gitea/push.json"))
    assert event.delivery_id == "d" * 100


@pytest.mark.parametrize("path, value, error", [
    (("repository", "full_name"), "a/" + "b" * 254, "repository name is longer than 255"),
    (("ref",), "refs/heads/" + "b" * 1014, "ref is longer than 1024"),
    (("pusher", "name"), "p" * 257, "pusher name is longer than 256"),
    (("pusher", "name"), "a\0b", "pusher name is not valid text"),
    (("pusher", "name"), "a\ud800b", "pusher name is not valid text"),
    (("repository", "default_branch"), "b" * 1025, "default branch is longer than 1024"),
    (("repository", "default_branch"), "\udfff", "default branch is not valid text"),
    (("ref",), "refs/heads/\ud800", "ref is not valid UTF-8"),
])
def test_payload_fields_the_store_cannot_hold_are_refused(path, value, error):
    """Names longer than their column, NUL characters and lone surrogates are a 400, not a database error."""
    payload = fixture("github/push_branch.json")
    *parents, key = path
    target = payload
    for parent in parents:
        target = target[parent]
    target[key] = value
    with pytest.raises(BadRequest, match=error):
        parse_github(GH, payload)


def test_payload_fields_as_long_as_their_columns_are_kept():
    """A 1024-character ref, 255-character repository and 256-character pusher are accepted as they are."""
    payload = fixture("github/push_branch.json")
    payload["ref"] = "refs/heads/" + "b" * 1013
    payload["repository"]["full_name"] = "a/" + "b" * 253
    payload["pusher"]["name"] = "p" * 256
    [event] = parse_github(GH, payload)
    assert (len(event.ref), len(event.repo), len(event.pusher)) == (1024, 255, 256)
