"""Ref and commit id validation, branch globs, and Docker tag sanitising."""

import hashlib

import pytest

from webhook.errors import BadRequest
from webhook.refs import is_full_sha, matches_any, name_tag, registry_host, split_image, validate_ref, validate_sha

GOOD_SHA = "6113728f27ae82c7b1a177c8d03f9e96e0adf246"


@pytest.mark.parametrize("ref", [
    "refs/heads/main", "refs/heads/release/1.2", "refs/tags/v1.0.0", "refs/heads/feature_x-y",
])
def test_valid_refs_pass(ref):
    """Ordinary branch and tag refs are accepted unchanged."""
    assert validate_ref(ref) == ref


@pytest.mark.parametrize("ref", [
    "main", "HEAD", "refs/remotes/origin/main", "refs/heads/", "refs/heads/--upload-pack=touch",
    "refs/heads/-u", "refs/heads/a..b", "refs/heads/a b", "refs/heads/a\x01b", "refs/heads/a~1",
    "refs/heads/a^", "refs/heads/a:b", "refs/heads/a?", "refs/heads/a*", "refs/heads/a[", "refs/heads/a\\b",
    "refs/heads/.hidden", "refs/heads/x.lock", "refs/heads/a//b", "refs/heads/a.", "refs/heads/a@{1}",
    None, 42,
])
def test_invalid_refs_are_refused(ref):
    """Refs git would refuse, or that could read as options, are a 400."""
    with pytest.raises(BadRequest):
        validate_ref(ref)


@pytest.mark.parametrize("sha, ok", [
    (GOOD_SHA, True),
    ("a" * 64, True),
    (GOOD_SHA[:39], False),
    (GOOD_SHA.upper(), False),
    ("--upload-pack=x" + "a" * 25, False),
    ("HEAD", False),
    (GOOD_SHA + "\n", False),
    (None, False),
])
def test_sha_must_be_full_lowercase_hex(sha, ok):
    """Only a full lowercase commit id passes."""
    assert sha is None or is_full_sha(sha) is ok
    if ok:
        assert validate_sha(sha) == sha
    else:
        with pytest.raises(BadRequest):
            validate_sha(sha)


@pytest.mark.parametrize("name, globs, expected", [
    ("main", None, True),
    ("main", ["main"], True),
    ("mainline", ["main"], False),
    ("release/1.2", ["release/*"], True),
    ("release/1.2/hotfix", ["release/*"], False),
    ("release/1.2/hotfix", ["release/**"], True),
    ("feature/x", ["main", "feature/*"], True),
    ("anything", [], False),
    ("a.b", ["a?b"], False),
])
def test_branch_globs(name, globs, expected):
    """``*`` stays within a path component, ``**`` crosses them; no globs means all."""
    assert matches_any(name, globs) is expected


@pytest.mark.parametrize("name, tag", [
    ("main", "main"),
    ("release-1.2", "release-1.2"),
    ("v1.2.3", "v1.2.3"),
    ("Feature_X", "Feature_X"),
    ("feature/login", "feature-login-df7c7aeb3560d333"),
    ("+main", "main-3157e4ac524129e4"),
    ("ü/main", "main-d8f3c96a740a3ba0"),
    (".hidden", "hidden-1692419006a88aab"),
    ("///", "ref-732c4e9711639ed1"),
    ("a" * 129, "a" * 111 + "-" + hashlib.sha256(b"a" * 129).hexdigest()[:16]),
])
def test_names_become_tags_that_no_other_name_produces(name, tag):
    """Valid names stay as they are; any other gets a hash of the whole name, so it never equals a valid one."""
    assert name_tag(name) == tag


def test_sanitised_names_differ_from_each_other_and_from_valid_names():
    """Names that sanitise alike (+main, -main's look-alikes, ü/main) still get different tags, none of them ``main``."""
    names = ["main", "+main", "ü/main", "main/", "m@in", "(main)"]
    tags = [name_tag(n) for n in names]
    assert len(set(tags)) == len(names)
    assert tags.count("main") == 1


@pytest.mark.parametrize("reference, parts", [
    ("app:v1", ("app", "v1")),
    ("registry.example.com/team/app:sha-0a1b2c3", ("registry.example.com/team/app", "sha-0a1b2c3")),
    ("localhost:5000/app:latest", ("localhost:5000/app", "latest")),
    ("localhost:5000/app", ("localhost:5000/app", None)),
    ("team/app", ("team/app", None)),
    ("app:{branch}", ("app", "{branch}")),
])
def test_an_image_reference_splits_into_repository_and_tag(reference, parts):
    """The tag follows the last colon, unless a slash follows it: then that colon was a registry's port."""
    assert split_image(reference) == parts


@pytest.mark.parametrize("image, host", [
    ("registry.example.com/team/app:1", "registry.example.com"),
    ("localhost:5000/app:1", "localhost:5000"),
    ("localhost/app", "localhost"),
    ("team/app:1", "docker.io"),
    ("app:1", "docker.io"),
])
def test_an_image_names_its_registry_or_docker_hub(image, host):
    """A first component with a dot, a port or ``localhost`` is a registry; anything else is Docker Hub."""
    assert registry_host(image) == host
