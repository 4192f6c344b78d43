"""Build rules: which refs build, into which tags, with which settings."""

import re

import pytest

from webhook.refs import name_tag
from webhook.rules import Rule, TemplateError, default_rules, plan, render, semver_tags, skip_marker, version_key

SHA = "6113728f27ae82c7b1a177c8d03f9e96e0adf246"
IMAGE = "registry.example.com/acme/app"


def tags_of(rules, ref, *, default_branch="main"):
    result = plan(rules, image=IMAGE, ref=ref, sha=SHA, default_branch=default_branch,
                  dockerfile="Dockerfile", context=".")
    return None if result is None else [t.split(":", 1)[1] for t in result.tags]


@pytest.mark.parametrize("branches, tags, latest, ref, expected", [
    (None, None, False, "refs/heads/main", [SHA, "main"]),
    (None, None, True, "refs/heads/main", [SHA, "main", "latest"]),
    (None, None, True, "refs/heads/dev", [SHA, "dev"]),
    (None, None, True, "refs/heads/feature/x", [SHA, "feature-x-217d2bf51f16e9dc"]),
    (None, None, True, "refs/tags/v1.2.3", [SHA, "v1.2.3"]),
    (None, None, True, "refs/heads/latest", [SHA]),
    (("main",), None, False, "refs/heads/dev", None),
    (None, ("v*",), False, "refs/tags/nightly", None),
    (None, None, True, "", [SHA]),
])
def test_default_rules(branches, tags, latest, ref, expected):
    """Without rules: the SHA first, then the branch or tag name, then latest for the default branch."""
    assert tags_of(default_rules(branches=branches, tags=tags, latest=latest), ref) == expected


@pytest.mark.parametrize("name, expected", [
    ("v1.2.3", ["1.2.3", "1.2", "1"]),
    ("1.2.3", ["1.2.3", "1.2", "1"]),
    ("v10.0.1", ["10.0.1", "10.0", "10"]),
    ("v0.4.1", ["0.4.1", "0.4"]),
    ("v1.2.3-rc.1", []),
    ("v1.2.3+build.5", []),
    ("v1.2", []),
    ("v01.2.3", []),
    ("release-1.2.3", []),
])
def test_semver_fan_out(name, expected):
    """Releases fan out to MAJOR.MINOR.PATCH, MAJOR.MINOR and MAJOR; pre-releases never do."""
    assert semver_tags(name) == expected


def test_semver_rule_with_regex_captures_and_latest():
    """A tag rule can use regex groups in its templates, fan out semver, and move latest."""
    rule = Rule(kind="tag", regex=re.compile(r"^v(?P<version>.+)$"), tags=("{version}", "release-{short_sha}"),
                semver=True, latest=True)
    assert tags_of((rule,), "refs/tags/v2.1.0") == [SHA, "2.1.0", "release-6113728", "2.1", "2", "latest"]
    assert tags_of((rule,), "refs/tags/v2.1.0-beta.1") == [SHA, "2.1.0-beta.1", "release-6113728", "latest"]
    assert tags_of((rule,), "refs/heads/v2") is None


def test_numbered_groups_and_branch_templates():
    """Numbered groups are {1}, {2}…; {branch} is the branch name made a valid tag."""
    rule = Rule(kind="branch", regex=re.compile(r"^release/(\d+)\.(\d+)$"), tags=("{branch}", "r{1}-{2}"))
    assert tags_of((rule,), "refs/heads/release/3.4") == [SHA, "release-3.4-27dd417edd802235", "r3-4"]


def test_the_first_matching_rule_decides():
    """Rules are tried in order; a later rule does not add to an earlier match."""
    rules = (Rule(kind="branch", globs=("main",), tags=("stable",), dockerfile="Dockerfile.prod", target="prod"),
             Rule(kind="branch", tags=("{branch}",)))
    main = plan(rules, image=IMAGE, ref="refs/heads/main", sha=SHA, default_branch="main",
                dockerfile="Dockerfile", context=".", target="dev")
    dev = plan(rules, image=IMAGE, ref="refs/heads/dev", sha=SHA, default_branch="main",
               dockerfile="Dockerfile", context=".", target="dev")
    assert (main.tags[1:], main.dockerfile, main.target) == ((f"{IMAGE}:stable",), "Dockerfile.prod", "prod")
    assert (dev.tags[1:], dev.dockerfile, dev.target) == ((f"{IMAGE}:dev",), "Dockerfile", "dev")


def test_rule_build_args_override_the_repositorys():
    """A rule's build_args are merged over the repository's."""
    rule = Rule(kind="branch", build_args=(("MODE", "release"),))
    result = plan((rule,), image=IMAGE, ref="refs/heads/main", sha=SHA, default_branch=None, dockerfile="Dockerfile",
                  context=".", build_args=(("MODE", "debug"), ("VERSION", "1")))
    assert result.build_args == (("MODE", "release"), ("VERSION", "1"))


def test_fingerprint_changes_with_settings_and_hides_values():
    """Another target or argument value changes the fingerprint; repr never shows argument values."""
    base = dict(rules=default_rules(branches=None, tags=None, latest=False), image=IMAGE, ref="refs/heads/main",
                sha=SHA, default_branch=None, dockerfile="Dockerfile", context=".")
    a = plan(**base, build_args=(("MODE", "fast"),))
    b = plan(**base, build_args=(("MODE", "slow"),))
    c = plan(**base, build_args=(("MODE", "fast"),), target="prod")
    assert len({a.fingerprint(), b.fingerprint(), c.fingerprint()}) == 3
    assert a.fingerprint() == plan(**base, build_args=(("MODE", "fast"),)).fingerprint()
    assert "fast" not in repr(a)


def test_the_fingerprint_is_no_hash_of_secret_values():
    """A secret argument's value is left out of the public plan label, so it cannot be guessed from it offline."""
    base = dict(rules=default_rules(branches=None, tags=None, latest=False), image=IMAGE, ref="refs/heads/main",
                sha=SHA, default_branch=None, dockerfile="Dockerfile", context=".", secret_args=frozenset({"TOKEN"}))
    one = plan(**base, build_args=(("TOKEN", "hunter2"),))
    other = plan(**base, build_args=(("TOKEN", "hunter3"),))
    assert one.fingerprint() == other.fingerprint()
    assert one.fingerprint() != plan(**base, build_args=(("TOKEN", "hunter2"), ("MODE", "x"))).fingerprint()


def test_render_refuses_unknown_fields():
    """A typo in a template is an error, not a tag with braces in it."""
    assert render("{sha}-{ref}", {"sha": "s", "ref": "r"}) == "s-r"
    with pytest.raises(TemplateError, match="unknown field {shaa}"):
        render("{shaa}", {"sha": "s"})


@pytest.mark.parametrize("message, marker", [
    ("fix [skip ci]", "[skip ci]"), ("[CI SKIP] docs", "[ci skip]"), ("x\n\n[skip pushbuild]", "[skip pushbuild]"),
    ("skip ci", None), ("", None),
])
def test_skip_markers(message, marker):
    """The usual CI skip markers, in any case, anywhere in the message."""
    assert skip_marker(message) == marker


RELEASES = (Rule(kind="tag", regex=re.compile(r"^v(?P<version>\d+\.\d+\.\d+)$"), tags=("{version}",),
                 semver=True, latest=True),
            Rule(kind="branch", globs=("main",), tags=("{sha}", "{branch}", "edge")),
            Rule(kind="branch"),
            Rule(kind="tag"))


@pytest.mark.parametrize("ref", [
    "refs/heads/latest", "refs/heads/LATEST", "refs/heads/" + "ab" * 20, "refs/heads/deadbee", "refs/heads/" + "c" * 64,
    "refs/heads/1.2.3", "refs/heads/1.2", "refs/heads/1", "refs/heads/edge", "refs/tags/1.2", "refs/tags/latest",
    "refs/tags/" + "d" * 40, "refs/tags/edge",
])
def test_names_never_take_a_tag_another_kind_of_name_owns(ref):
    """latest, commit ids, release versions and fixed tags are never given to a branch or tag name: SHA tag only."""
    result = plan(RELEASES, image=IMAGE, ref=ref, sha=SHA, default_branch="main", dockerfile="Dockerfile", context=".")
    assert result.tags == (f"{IMAGE}:{SHA}",)
    [(tag, why)] = result.withheld
    assert tag.lower() in ref.lower() and why


def test_a_release_keeps_its_version_tags_and_says_which_tags_move_only_forward():
    """v1.2.3 → 1.2.3, 1.2, 1, latest, all release tags ordered by its version; main owns its name, edge is fixed."""
    release = plan(RELEASES, image=IMAGE, ref="refs/tags/v1.2.3", sha=SHA, default_branch="main",
                   dockerfile="Dockerfile", context=".")
    assert [t.split(":", 1)[1] for t in release.tags] == [SHA, "1.2.3", "1.2", "1", "latest"]
    assert release.release_tags == {f"{IMAGE}:{t}" for t in ("1.2.3", "1.2", "1", "latest")}
    assert release.named_tags == frozenset() and release.version == version_key("1.2.3")
    main = plan(RELEASES, image=IMAGE, ref="refs/heads/main", sha=SHA, default_branch="main",
                dockerfile="Dockerfile", context=".")
    assert [t.split(":", 1)[1] for t in main.tags] == [SHA, "main", "edge"]
    assert main.named_tags == {f"{IMAGE}:main"} and main.release_tags == frozenset()


def test_a_git_tag_may_take_only_its_own_version():
    """A pre-release captured down to 1.2.3 does not land on the release's 1.2.3 tag."""
    rule = Rule(kind="tag", regex=re.compile(r"^v(\d+\.\d+\.\d+)"), tags=("{1}",))
    assert tags_of((rule,), "refs/tags/v1.2.3") == [SHA, "1.2.3"]
    assert tags_of((rule,), "refs/tags/v1.2.3-x") == [SHA]


@pytest.mark.parametrize("lower, higher", [
    ("v1.2.3", "v1.2.4"), ("v1.2.3", "v1.10.0"), ("v1.9.9", "v2.0.0"), ("v2.0.0-rc.1", "v2.0.0"),
    ("v2.0.0-alpha", "v2.0.0-alpha.1"), ("v2.0.0-alpha.1", "v2.0.0-beta"), ("v2.0.0-beta.2", "v2.0.0-beta.11"),
    ("v2.0.0-1", "v2.0.0-alpha"),
])
def test_versions_rank_by_semver_precedence(lower, higher):
    """Release order is semver's, pre-releases included (semver.org, item 11)."""
    assert version_key(lower) < version_key(higher)


@pytest.mark.parametrize("ref, expected", [
    ("refs/heads/main", [f"{IMAGE}:main", "r.example.com/base:1"]),
    ("refs/heads/feature/x", [f"{IMAGE}:feature-x-217d2bf51f16e9dc", "r.example.com/base:1"]),
    ("refs/tags/v1.0.0", ["r.example.com/base:1"]),
])
def test_cache_from_templates_name_the_branchs_own_tag(ref, expected):
    """``<image>:{branch}`` is the tag that branch pushes itself (none for a tag push); fixed entries stay."""
    result = plan(default_rules(branches=None, tags=None, latest=False), image=IMAGE, ref=ref, sha=SHA,
                  default_branch="main", dockerfile="Dockerfile", context=".",
                  cache_from=(f"{IMAGE}:{{branch}}", "r.example.com/base:1"))
    assert list(result.cache_from) == expected


def test_a_valid_name_shaped_like_a_hashed_one_is_hashed_too():
    """A branch literally named like release/3.0's hashed tag cannot claim that tag first."""
    hashed = name_tag("release/3.0")
    assert name_tag(hashed) != hashed and name_tag(hashed).startswith(hashed + "-")


@pytest.mark.parametrize("ref, expected", [
    ("refs/heads/v2.0.0", [SHA]),
    ("refs/heads/1.2.3-rc.1", [SHA]),
    ("refs/heads/v2", [SHA, "v2"]),
    ("refs/tags/v2.0.0", [SHA, "v2.0.0"]),
])
def test_release_shaped_names_belong_to_git_tags(ref, expected):
    """A branch cannot take image:v2.0.0 before the release v2.0.0 is tagged."""
    assert tags_of(default_rules(branches=None, tags=None, latest=False), ref) == expected


def test_names_shaped_like_the_repositorys_commit_tags_are_withheld():
    """With main tagged sha-{short_sha}, a branch called sha-aaaaaaa cannot write over main's commit tag."""
    rules = (Rule(kind="branch", globs=("main",), tags=("{branch}", "sha-{short_sha}")), Rule(kind="branch"))
    attack = plan(rules, image=IMAGE, ref="refs/heads/sha-aaaaaaa", sha=SHA, default_branch="main",
                  dockerfile="Dockerfile", context=".")
    assert attack.tags == (f"{IMAGE}:{SHA}",) and "commit tag" in attack.withheld[0][1]
    main = plan(rules, image=IMAGE, ref="refs/heads/main", sha=SHA, default_branch="main", dockerfile="Dockerfile",
                context=".")
    assert main.commit_tags == {f"{IMAGE}:sha-6113728"} and main.named_tags == {f"{IMAGE}:main"}


def test_templates_a_ref_has_no_value_for_make_no_tag():
    """{tag} on a branch is empty: skipped, not a tag every such branch would share."""
    rule = Rule(kind="branch", tags=("{tag}", "{branch}"))
    assert tags_of((rule,), "refs/heads/dev") == [SHA, "dev"]


def test_a_release_under_a_path_keeps_its_own_version():
    """app/v1.2.3 captured as {version} is release 1.2.3 of app."""
    rule = Rule(kind="tag", regex=re.compile(r"^app/v(?P<version>\d+\.\d+\.\d+)$"), tags=("{version}",))
    assert tags_of((rule,), "refs/tags/app/v1.2.3") == [SHA, "1.2.3"]


def test_only_ascii_digits_make_a_version():
    """Other scripts' digits are no semantic version (they would make an invalid tag)."""
    assert semver_tags("v1.2.3\u0663") == [] and version_key("v1.2.3\u0663") is None


def test_cache_images_named_after_the_ref_are_marked_for_the_ownership_check():
    """{branch} entries are the ref's own tag, checked before use; fixed entries are not."""
    result = plan(default_rules(branches=None, tags=None, latest=False), image=IMAGE, ref="refs/heads/main", sha=SHA,
                  default_branch="main", dockerfile="Dockerfile", context=".",
                  cache_from=(f"{IMAGE}:{{branch}}", "r.example.com/base:1"))
    assert result.named_cache == {f"{IMAGE}:main"}


def test_a_rule_describes_itself_in_one_line():
    assert Rule(kind="branch").describe() == "every branch → {sha}, {ref}"
    assert Rule(kind="branch", globs=("main", "release/*"), latest=True, dockerfile="ops/Dockerfile").describe() == (
        "branches main, release/* → {sha}, {ref}, latest (dockerfile ops/Dockerfile)")
    assert Rule(kind="tag", regex=re.compile(r"^v(\d+)"), tags=("v{1}",), semver=True).describe() == (
        "tags matching /^v(\\d+)/ → v{1}, semver")
