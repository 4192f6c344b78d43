"""Build rules: which refs build, into which tags, with which settings."""

import re

import pytest

from webhook.rules import Rule, TemplateError, default_rules, plan, render, semver_tags, skip_marker

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
    (None, None, True, "refs/heads/feature/x", [SHA, "feature-x"]),
    (None, None, True, "refs/tags/v1.2.3", [SHA, "v1.2.3"]),
    (None, None, True, "refs/heads/latest", [SHA, "latest"]),
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
    assert tags_of((rule,), "refs/heads/release/3.4") == [SHA, "release-3.4", "r3-4"]


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
    a = plan(**base, build_args=(("TOKEN", "hunter2"),))
    b = plan(**base, build_args=(("TOKEN", "hunter3"),))
    c = plan(**base, build_args=(("TOKEN", "hunter2"),), target="prod")
    assert len({a.fingerprint(), b.fingerprint(), c.fingerprint()}) == 3
    assert a.fingerprint() == plan(**base, build_args=(("TOKEN", "hunter2"),)).fingerprint()
    assert "hunter2" not in repr(a) + a.fingerprint()


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
