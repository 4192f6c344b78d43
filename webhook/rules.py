"""Build rules: which pushed refs build, with what settings, into which tags. Performs no I/O.

A repository has an ordered list of rules; the first rule matching a pushed ref decides
(see the README, "Build rules"). Without rules, a repository builds every branch in
``branches`` and every tag in ``tags``, as ``{sha}`` plus the branch or tag name.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from .refs import docker_tag, is_branch, matches_any, short_name

#: Semantic versions fanned out to MAJOR.MINOR and MAJOR (https://semver.org, optional leading v).
_SEMVER = re.compile(r"v?(?P<major>0|[1-9]\d*)\.(?P<minor>0|[1-9]\d*)\.(?P<patch>0|[1-9]\d*)"
                     r"(?P<pre>-[0-9A-Za-z.-]+)?(?P<build>\+[0-9A-Za-z.-]+)?")
_FIELD = re.compile(r"\{([^{}]*)\}")
SHORT_SHA_LENGTH = 7


class TemplateError(ValueError):
    """A tag template names a value that does not exist."""


@dataclass(frozen=True)
class Rule:
    """One build rule: which refs it matches, and how they build."""

    kind: str  # "branch" or "tag"
    globs: tuple[str, ...] | None = None
    regex: re.Pattern[str] | None = None
    tags: tuple[str, ...] = ("{sha}", "{ref}")
    dockerfile: str | None = None
    context: str | None = None
    target: str | None = None
    build_args: tuple[tuple[str, str], ...] = ()
    platform: str | None = None
    latest: bool = False
    semver: bool = False

    def match(self, ref: str) -> dict[str, str] | None:
        """Return the values a matching ``ref`` gives the templates, or ``None`` if it does not match."""
        if is_branch(ref) != (self.kind == "branch"):
            return None
        name = short_name(ref)
        if self.regex is not None:
            found = self.regex.search(name)
            if found is None:
                return None
            groups = {str(i): g or "" for i, g in enumerate(found.groups(), start=1)}
            return {**groups, **{k: v or "" for k, v in found.groupdict().items()}}
        return {} if matches_any(name, self.globs) else None


@dataclass(frozen=True)
class BuildPlan:
    """Everything one build needs to know about what to build and how to tag it."""

    tags: tuple[str, ...]
    dockerfile: str
    context: str
    target: str | None = None
    #: Some values come from secrets (``secret_args`` names them): never shown in ``repr``.
    build_args: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    platform: str | None = None
    cache_from: tuple[str, ...] = ()
    secret_args: frozenset[str] = field(default_factory=frozenset)

    def fingerprint(self) -> str:
        """Identify the build settings, so an image built otherwise from the same commit is not reused.

        Build argument values are hashed, never shown: some come from secrets.
        """
        settings = repr((self.dockerfile, self.context, self.target, self.build_args, self.platform))
        return hashlib.sha256(settings.encode()).hexdigest()[:16]


#: Markers in a head commit message that ask for no build (the forms CI systems share).
SKIP_MARKERS = ("[skip ci]", "[ci skip]", "[skip pushbuild]", "[pushbuild skip]")


def skip_marker(message: str) -> str | None:
    """Return the skip marker ``message`` carries (case-insensitive), if any."""
    lowered = message.lower()
    return next((marker for marker in SKIP_MARKERS if marker in lowered), None)


def default_rules(*, branches: tuple[str, ...] | None, tags: tuple[str, ...] | None, latest: bool) -> tuple[Rule, ...]:
    """The rules of a repository that lists none: its branches and tags, tagged by name."""
    return (Rule(kind="branch", globs=branches, latest=latest), Rule(kind="tag", globs=tags))


def render(template: str, values: Mapping[str, str]) -> str:
    """Fill ``{name}`` fields of a tag template; an unknown name is a :class:`TemplateError`."""

    def field_value(found: re.Match[str]) -> str:
        if found.group(1) not in values:
            raise TemplateError(f"unknown field {{{found.group(1)}}} in tag template {template!r}")
        return values[found.group(1)]

    return _FIELD.sub(field_value, template)


def semver_tags(name: str) -> list[str]:
    """``v1.2.3`` → ``1.2.3``, ``1.2``, ``1``; a pre-release or build-metadata version fans out to nothing.

    A ``0.x`` version gets no bare major tag: ``0`` would float across breaking changes.
    """
    found = _SEMVER.fullmatch(name)
    if found is None or found["pre"] or found["build"]:
        return []
    major, minor, patch = found["major"], found["minor"], found["patch"]
    return [f"{major}.{minor}.{patch}", f"{major}.{minor}", *([major] if major != "0" else [])]


def template_values(ref: str, sha: str, captured: Mapping[str, str]) -> dict[str, str]:
    """Return the values tag templates may use for ``ref`` at ``sha``."""
    name = short_name(ref)
    branch = is_branch(ref)
    return {
        "sha": sha, "short_sha": sha[:SHORT_SHA_LENGTH], "ref": name,
        "branch": name if branch else "", "tag": "" if branch else name, **captured,
    }


def plan(rules: tuple[Rule, ...], *, image: str, ref: str, sha: str, default_branch: str | None,
         dockerfile: str, context: str, build_args: tuple[tuple[str, str], ...] = (),
         target: str | None = None, platform: str | None = None, cache_from: tuple[str, ...] = (),
         secret_args: frozenset[str] = frozenset()) -> BuildPlan | None:
    """Return how ``ref`` at ``sha`` builds under the first matching rule, or ``None`` if no rule matches.

    ``<image>:<sha>`` always comes first: it is what deployments and redeploy hooks refer to.
    An empty ``ref`` (a bare commit id from the command line) builds with the repository's
    settings and only the SHA tag.
    """
    rule: Rule | None = None
    captured: dict[str, str] = {}
    if ref:
        for candidate in rules:
            if (values := candidate.match(ref)) is not None:
                rule, captured = candidate, values
                break
        if rule is None:
            return None
    names = [sha]
    if rule is not None:
        values = template_values(ref, sha, captured)
        names += [render(t, values) for t in rule.tags]
        if rule.semver and not is_branch(ref):
            names += semver_tags(short_name(ref))
        if rule.latest and (not is_branch(ref) or short_name(ref) == default_branch):
            names.append("latest")
    tags: list[str] = []
    for name in names:
        tag = docker_tag(name) if name else None
        if tag and f"{image}:{tag}" not in tags:
            tags.append(f"{image}:{tag}")
    merged_args = dict(build_args)
    if rule is not None:
        merged_args.update(rule.build_args)
    return BuildPlan(
        tags=tuple(tags),
        dockerfile=(rule.dockerfile if rule and rule.dockerfile else dockerfile),
        context=(rule.context if rule and rule.context else context),
        target=(rule.target if rule and rule.target else target),
        build_args=tuple(sorted(merged_args.items())),
        platform=(rule.platform if rule and rule.platform else platform),
        cache_from=cache_from,
        secret_args=secret_args,
    )
