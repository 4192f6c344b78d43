"""Git refs, commit ids and the image tags derived from them. Performs no I/O."""

from __future__ import annotations

import re
from collections.abc import Iterable

from .errors import BadRequest

ZERO_SHA = "0" * 40
BRANCH_PREFIX = "refs/heads/"
TAG_PREFIX = "refs/tags/"

_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_DOCKER_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_TAG_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
#: Characters git-check-ref-format(1) forbids anywhere in a ref.
_REF_FORBIDDEN = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")


def validate_sha(value: object) -> str:
    """Return ``value`` if it is a full lowercase commit id (SHA-1 or SHA-256), else raise."""
    if not isinstance(value, str) or not _SHA.fullmatch(value):
        raise BadRequest("commit id must be 40 (or 64) lowercase hex digits")
    return value


def validate_ref(value: object) -> str:
    """Return ``value`` if it is a well-formed branch or tag ref, else raise.

    Applies git-check-ref-format(1) and refuses components starting with ``-`` so that a
    ref can never be read as a command-line option.
    """
    if not isinstance(value, str) or not value.startswith((BRANCH_PREFIX, TAG_PREFIX)):
        raise BadRequest("ref must start with refs/heads/ or refs/tags/")
    name = short_name(value)
    if (
        not name
        or _REF_FORBIDDEN.search(value)
        or ".." in value
        or "@{" in value
        or value.endswith(("/", "."))
        or any(
            part == "" or part.startswith((".", "-")) or part.endswith(".lock")
            for part in value.split("/")
        )
    ):
        raise BadRequest("ref is not a valid git ref name")
    return value


def short_name(ref: str) -> str:
    """Return a ref without its ``refs/heads/`` or ``refs/tags/`` prefix."""
    for prefix in (BRANCH_PREFIX, TAG_PREFIX):
        if ref.startswith(prefix):
            return ref[len(prefix):]
    return ref


def is_branch(ref: str) -> bool:
    """Say whether ``ref`` names a branch."""
    return ref.startswith(BRANCH_PREFIX)


def matches_any(name: str, globs: Iterable[str] | None) -> bool:
    """Say whether ``name`` matches one of ``globs`` (``None`` matches everything).

    ``*`` matches within one path component and ``**`` across them, as forges use branch globs.
    """
    if globs is None:
        return True
    return any(_glob_regex(glob).fullmatch(name) for glob in globs)


def _glob_regex(glob: str) -> re.Pattern[str]:
    """Translate a branch glob into a regular expression."""
    parts = re.split(r"(\*\*|\*)", glob)
    translated = "".join(
        ".*" if part == "**" else "[^/]*" if part == "*" else re.escape(part) for part in parts
    )
    return re.compile(translated)


def docker_tag(name: str) -> str | None:
    """Turn a branch or tag name into a valid Docker tag, or ``None`` if nothing usable is left.

    ``feature/login`` becomes ``feature-login``; a tag may hold ``[A-Za-z0-9_.-]``, must not
    start with ``.`` or ``-``, and is at most 128 characters.
    """
    tag = _TAG_UNSAFE.sub("-", name).lstrip(".-")[:128]
    return tag if _DOCKER_TAG.fullmatch(tag) else None
