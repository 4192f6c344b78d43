"""Build rules: which pushed refs build, with what settings, into which tags. Performs no I/O.

A repository has an ordered list of rules; the first rule matching a pushed ref decides
(see docs/builds.md, "Build rules"). Without rules, a repository builds every branch in
``branches`` and every tag in ``tags``, as ``{sha}`` plus the branch or tag name.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from .refs import FULL_SHA, is_branch, matches_any, name_tag, short_name, split_image

#: Semantic versions fanned out to MAJOR.MINOR and MAJOR (https://semver.org, optional leading v).
_SEMVER = re.compile(r"v?(?P<major>0|[1-9][0-9]*)\.(?P<minor>0|[1-9][0-9]*)\.(?P<patch>0|[1-9][0-9]*)"
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

    def describe(self) -> str:
        """Say in one line which refs this rule builds and what it tags them, as the console shows it."""
        kind = "branches" if self.kind == "branch" else "tags"
        if self.regex is not None:
            which = f"{kind} matching /{self.regex.pattern}/"
        elif self.globs is None:
            which = f"every {self.kind}"
        else:
            which = f"{kind} {', '.join(self.globs)}"
        tags = [*self.tags, *(["latest"] if self.latest else []), *(["semver"] if self.semver else [])]
        extras = [f"{name} {value}" for name, value in (("dockerfile", self.dockerfile), ("context", self.context),
                                                        ("target", self.target), ("platform", self.platform)) if value]
        return f"{which} → {', '.join(tags)}" + (f" ({'; '.join(extras)})" if extras else "")

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


#: A version's place in semver precedence (https://semver.org/#spec-item-11); compare with ``<``.
VersionKey = tuple


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
    #: Tags made from the pushed ref's name: the first ref to push one owns it from then on.
    named_tags: frozenset[str] = frozenset()
    #: Tags made from the commit id (``sha-{short_sha}``): the first commit to push one owns it.
    commit_tags: frozenset[str] = frozenset()
    #: ``cache_from`` images named after the ref: used only while the ref owns that tag.
    named_cache: frozenset[str] = frozenset()
    #: Tags every release moves (semver fan-out, a tag rule's ``latest``): only ever towards higher versions.
    release_tags: frozenset[str] = frozenset()
    #: The version of the git tag being built, when its name is one; orders ``release_tags``.
    version: VersionKey | None = None
    #: Tags the ref's name would have produced but may not have, each with the reason.
    withheld: tuple[tuple[str, str], ...] = ()

    def fingerprint(self) -> str:
        """Identify the build settings, so an image built otherwise from the same commit is not reused.

        The label this goes into is public to whoever can pull the image, so the values of
        secret build arguments are left out (an unsalted hash of them could be tested against
        guesses offline): changing only a secret value does not rebuild an already-built commit.
        """
        args = tuple((name, "<secret>" if name in self.secret_args else value) for name, value in self.build_args)
        settings = repr((self.dockerfile, self.context, self.target, args, self.platform))
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


def version_key(name: str) -> VersionKey | None:
    """Return the semver precedence of a tag name (``v1.2.3``, ``1.2.3-rc.1``), or ``None`` if it is no version."""
    found = _SEMVER.fullmatch(name)
    if found is None:
        return None
    core = (int(found["major"]), int(found["minor"]), int(found["patch"]))
    if not found["pre"]:
        return (*core, (1,))  # a release ranks above its pre-releases
    identifiers = tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in found["pre"][1:].split("."))
    return (*core, (0, *identifiers))


#: Tags that look like a commit id: only a build of that commit may write one.
_COMMIT_LIKE = re.compile(r"[0-9a-fA-F]{7,64}")
#: Tags of the form semver fan-out produces (``1``, ``1.2``, ``1.2.3``).
_VERSION_LIKE = re.compile(r"[0-9]+(?:\.[0-9]+){0,2}")


@dataclass(frozen=True)
class Reserved:
    """The tags of a repository that no ref's name may produce: what its rules write for other reasons."""

    #: Template literals (``edge``): fixed tags.
    fixed: frozenset[str] = frozenset()
    #: The forms of tags made from commit ids (``sha-{short_sha}`` → ``sha-[0-9a-f]{7}``).
    commit_forms: tuple[re.Pattern[str], ...] = ()

    @classmethod
    def of(cls, rules: tuple[Rule, ...]) -> Reserved:
        """Collect what ``rules`` write that is not made from a name."""
        templates = {t for rule in rules for t in rule.tags}
        return cls(fixed=frozenset(t for t in templates if not _fields(t)),
                   commit_forms=tuple(_commit_form(t) for t in sorted(templates) if _fields(t) and _fields(t) <= _COMMIT_FIELDS))

    def why(self, tag: str, *, is_tag: bool, own_version: str | None) -> str | None:
        """Say why a tag made from a ref's name may not be written, or ``None`` if it may.

        Reserved for other kinds of name: ``latest``; anything that looks like a commit id or
        like the repository's commit tags; release versions (``1``, ``1.2``, ``1.2.3`` for semver
        fan-out, a git tag's own ``MAJOR.MINOR.PATCH`` excepted; ``v2.0.0`` and other semantic
        versions for git tags, never branches); and the repository's fixed tags.
        """
        if tag.lower() == "latest":
            return "`latest` is never given to a branch or tag name"
        if _COMMIT_LIKE.fullmatch(tag) or any(form.fullmatch(tag) for form in self.commit_forms):
            return "it looks like a commit id or a commit tag, and only a build of that commit writes such a tag"
        if _VERSION_LIKE.fullmatch(tag) and tag != own_version:
            return "it is a release version tag, which only the tag rules' semver fan-out writes"
        if not is_tag and _SEMVER.fullmatch(tag):
            return "it looks like a release version, which only git tags publish"
        if tag in self.fixed:
            return "it is a fixed tag of this repository's rules"
        return None


def _commit_form(template: str) -> re.Pattern[str]:
    """The tags a template made only of commit fields and text can produce, as a pattern."""
    forms = {"sha": f"(?:{FULL_SHA.pattern})", "short_sha": f"[0-9a-f]{{{SHORT_SHA_LENGTH}}}"}
    parts = _FIELD.split(template)  # text, field, text, field, …
    return re.compile("".join(forms[part] if i % 2 else re.escape(part) for i, part in enumerate(parts)))


def cache_image(entry: str, values: Mapping[str, str]) -> tuple[str, bool] | None:
    """Fill the tag template of a ``cache_from`` entry (``<image>:{branch}``); ``None`` if it comes out empty.

    Returns the image and whether its tag was made from the ref's name. Names are made tags as
    a rule's templates make them, so ``{branch}`` names the image the branch itself pushed; the
    builder uses such an image only while the ref owns that tag.
    """
    image, template = split_image(entry)
    if template is None or not _fields(template):
        return entry, False
    rendered = render(template, values)
    if not rendered:
        return None
    if _fields(template) <= _COMMIT_FIELDS:
        return f"{image}:{rendered}", False
    return f"{image}:{name_tag(rendered)}", True


def _fields(template: str) -> set[str]:
    """Return the field names a tag template uses."""
    return set(_FIELD.findall(template))


#: Template fields that come from the commit, not from the pushed ref's name.
_COMMIT_FIELDS = {"sha", "short_sha"}


def template_values(ref: str, sha: str, captured: Mapping[str, str]) -> dict[str, str]:
    """Return the values tag templates may use for ``ref`` at ``sha``."""
    name = short_name(ref)
    branch = is_branch(ref)
    return {
        "sha": sha, "short_sha": sha[:SHORT_SHA_LENGTH], "ref": name,
        "branch": name if branch else "", "tag": "" if branch else name, **captured,
    }


def first_match(rules: tuple[Rule, ...], ref: str) -> tuple[Rule, dict[str, str]] | None:
    """Return the first rule ``ref`` matches and the values it gives the templates, or ``None`` if none does."""
    for rule in rules:
        if (values := rule.match(ref)) is not None:
            return rule, values
    return None


def plan(rules: tuple[Rule, ...], *, image: str, ref: str, sha: str, default_branch: str | None,
         dockerfile: str, context: str, build_args: tuple[tuple[str, str], ...] = (),
         target: str | None = None, platform: str | None = None, cache_from: tuple[str, ...] = (),
         secret_args: frozenset[str] = frozenset()) -> BuildPlan | None:
    """Return how ``ref`` at ``sha`` builds under the first matching rule, or ``None`` if no rule matches.

    ``<image>:<sha>`` always comes first: it is what deployments and redeploy hooks refer to.
    An empty ``ref`` (a bare commit id from the command line) builds with the repository's
    settings and only the SHA tag. Tags made from the ref's name go through :func:`name_tag`
    and :class:`Reserved` (see docs/builds.md, "Which push may move which tag").
    """
    rule: Rule | None = None
    captured: dict[str, str] = {}
    if ref:
        if (matched := first_match(rules, ref)) is None:
            return None
        rule, captured = matched
    tags: list[str] = [f"{image}:{sha}"]
    named: set[str] = set()
    commit: set[str] = set()
    release: set[str] = set()
    withheld: list[tuple[str, str]] = []

    def add(tag: str, into: set[str] | None = None) -> None:
        reference = f"{image}:{tag}"
        if reference == tags[0]:
            return
        if reference not in tags:
            tags.append(reference)
        if into is not None:
            into.add(reference)

    values = template_values(ref, sha, captured)
    name, is_tag = short_name(ref), bool(ref) and not is_branch(ref)
    # A git tag's own version, from its last path component (``app/v1.2.3`` is release 1.2.3 of app).
    own_version = next(iter(semver_tags(name.rsplit("/", 1)[-1])), None) if is_tag else None
    reserved = Reserved.of(rules)
    version = None
    if rule is not None:
        for template in rule.tags:
            rendered = render(template, values)
            if not rendered:
                continue  # a field this ref has no value for, such as {tag} for a branch
            if not _fields(template):
                add(rendered)  # a fixed tag: the operator's choice
            elif _fields(template) <= _COMMIT_FIELDS:
                add(rendered, commit)  # made from this build's own commit id
            elif why := reserved.why(tag := name_tag(rendered), is_tag=is_tag, own_version=own_version):
                withheld.append((tag, why))
            else:
                add(tag, named)
        for tag in semver_tags(name) if rule.semver and is_tag else []:
            add(tag, release)
        if rule.latest and is_tag:
            add("latest", release)
        elif rule.latest and name == default_branch:
            add("latest")
        if release:
            version = version_key(name)
    cache = [found for entry in cache_from if (found := cache_image(entry, values)) is not None]
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
        cache_from=tuple(reference for reference, _ in cache),
        named_cache=frozenset(reference for reference, named_name in cache if named_name),
        secret_args=secret_args,
        named_tags=frozenset(named) - release,
        commit_tags=frozenset(commit),
        release_tags=frozenset(release),
        version=version,
        withheld=tuple(withheld),
    )
