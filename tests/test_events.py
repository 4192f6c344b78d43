"""Parsing the forges' real example payloads into one PushEvent."""

import hashlib
import json
import random
from urllib.parse import quote, quote_plus, unquote_to_bytes

import pytest

from webhook.errors import BadRequest, UnsupportedMediaType
from webhook.events import (
    Ignored,
    PushEvent,
    decode_body,
    form_unquote,
    parse_bitbucket,
    parse_gitea,
    parse_github,
    parse_gitlab,
    payload_bytes,
)

from .support import fixture

GH = {"x-github-event": "push", "x-github-delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
      "x-github-hook-id": "109948940"}


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


@pytest.mark.parametrize("parse, headers", [(parse_github, {}), (parse_gitlab, {})])
def test_missing_event_header_is_a_bad_request(parse, headers):
    """Without the event header there is nothing to decide on."""
    with pytest.raises(BadRequest):
        parse(headers, fixture("github/push_branch.json"))


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


def test_form_encoded_body_carries_the_json_payload():
    """GitHub's form deliveries send payload=<percent-encoded JSON>."""
    payload = fixture("github/push_branch.json")
    body = ("payload=" + quote(json.dumps(payload))).encode()
    assert decode_body(body, "application/x-www-form-urlencoded") == payload


@pytest.mark.parametrize("body, content_type, error", [
    (b"{", "application/json", BadRequest),
    (b"[1, 2]", "application/json", BadRequest),
    (b"\xff\xfe", "application/json", BadRequest),
    (b"[" * 100 + b"]" * 100, "application/json", BadRequest),
    (b"payload=%7B&payload=%7B", "application/x-www-form-urlencoded", BadRequest),
    (b"other=1", "application/x-www-form-urlencoded", BadRequest),
    (b"{}", "text/plain", UnsupportedMediaType),
    (b"{}", None, UnsupportedMediaType),
])
def test_malformed_bodies_are_refused(body, content_type, error):
    """Bodies that are not a JSON object, deeply nested, or of another type are refused."""
    with pytest.raises(error):
        decode_body(body, content_type)


def test_brackets_inside_strings_do_not_count_as_nesting():
    """Depth is counted outside strings only."""
    assert decode_body(b'{"a": "' + b"[" * 200 + b'"}', "application/json") == {"a": "[" * 200}


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


def test_form_payload_bytes_are_the_exact_json_signed():
    """Gitea signs the JSON payload; the form field decodes back to those exact bytes."""
    raw = json.dumps({"a": "é & = +"}).encode()
    assert payload_bytes(b"payload=" + quote(raw).encode(), "application/x-www-form-urlencoded") == raw
    assert payload_bytes(b"payload=" + quote_plus(raw).encode(), "application/x-www-form-urlencoded") == raw


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


#: Inputs where percent-decoding has edge cases, and where quoted-printable (which the decoder
#: builds on) differs from it: '=', soft line breaks, '_', malformed and cut escapes.
TRICKY_FORM_VALUES = [
    b"", b"%", b"%%", b"%4", b"%zz", b"%4g", b"%%41", b"%4%41", b"%41%", b"%41%4", b"=", b"==", b"=41", b"=\n",
    b"=\r\n", b"%=41", b"%0A", b"%0d%0A", b"%3d%3D=3D", b"_%5F_", b"a+b%2Bc", b"%e2%82%AC", b"\x00%00\xff%FF",
    bytes(range(256)), quote(bytes(range(256))).encode(),
]


@pytest.mark.parametrize("value", TRICKY_FORM_VALUES)
@pytest.mark.parametrize("slice_bytes", [3, 4, 5, 64 * 1024])
def test_form_values_decode_exactly_as_the_standard_library_decodes_them(value, slice_bytes):
    """'+' is a space, then every byte matches unquote_to_bytes, whatever slices the value is decoded in."""
    assert form_unquote(value, slice_bytes=slice_bytes) == unquote_to_bytes(value.replace(b"+", b" "))


@pytest.mark.parametrize("slice_bytes", [3, 4, 7, 64 * 1024])
def test_random_form_values_decode_exactly_as_the_standard_library_decodes_them(slice_bytes):
    """Thousands of random values over an alphabet of escapes, '=', '+', line ends and hex digits decode as unquote_to_bytes does."""
    alphabet = b"%%%=+_\r\n \x00\xff\xc3aAzZ0129fFgG3D"
    rng = random.Random(7)
    for _ in range(3000):
        value = bytes(rng.choice(alphabet) for _ in range(rng.randint(0, 24)))
        assert form_unquote(value, slice_bytes=slice_bytes) == unquote_to_bytes(value.replace(b"+", b" ")), value


def test_a_form_field_of_many_slices_of_escapes_decodes_exactly():
    """A 1 MB payload of escapes, well-formed and malformed, decodes to the bytes unquote_to_bytes gives."""
    value = (b"%7B%7d%%zz%4=x+" * 70_000)
    assert payload_bytes(b"payload=" + value, "application/x-www-form-urlencoded") == unquote_to_bytes(
        value.replace(b"+", b" "))


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


def test_gitlab_deduplicates_on_the_signed_webhook_id():
    """With both headers, the delivery id is webhook-id (signed with a signing token), not Idempotency-Key (never signed)."""
    headers = {"x-gitlab-event": "Push Hook", "idempotency-key": "chosen-by-a-replayer", "webhook-id": "msg_2x"}
    [event] = parse_gitlab(headers, fixture("gitlab/push.json"))
    assert event.delivery_id == "msg_2x"
