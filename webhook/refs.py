"""Git refs, commit ids, image references and the image tags derived from them. Performs no I/O."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

from . import defaults
from .errors import BadRequest

ZERO_SHA = "0" * 40
BRANCH_PREFIX = "refs/heads/"
TAG_PREFIX = "refs/tags/"

#: A full commit id: lowercase hex, 40 digits (SHA-1) or 64 (SHA-256).
FULL_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_DOCKER_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_TAG_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
#: Characters git-check-ref-format(1) forbids anywhere in a ref.
_REF_FORBIDDEN = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")


def validate_sha(value: object) -> str:
    """Return ``value`` if it is a full lowercase commit id (SHA-1 or SHA-256), else raise."""
    if not isinstance(value, str) or not is_full_sha(value):
        raise BadRequest("commit id must be 40 (or 64) lowercase hex digits")
    return value


def is_full_sha(text: str) -> bool:
    """Say whether ``text`` is a full lowercase commit id (SHA-1 or SHA-256), not an abbreviation or a ref."""
    return FULL_SHA.fullmatch(text) is not None


def validate_ref(value: object) -> str:
    """Return ``value`` if it is a well-formed branch or tag ref, else raise.

    Applies git-check-ref-format(1) and refuses components starting with ``-`` so that a
    ref can never be read as a command-line option, and refs longer than the store holds.
    """
    if not isinstance(value, str) or not value.startswith((BRANCH_PREFIX, TAG_PREFIX)):
        raise BadRequest("ref must start with refs/heads/ or refs/tags/")
    if len(value) > defaults.MAX_REF_CHARS:
        raise BadRequest(f"ref is longer than {defaults.MAX_REF_CHARS} characters")
    try:
        value.encode("utf-8")  # a lone surrogate from JSON's "\ud800" is no ref any store can hold
    except UnicodeEncodeError as exc:
        raise BadRequest("ref is not valid UTF-8 text") from exc
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


#: Hex digits of the hash that a name needing sanitising gets as its tag's suffix.
#: 16 hex digits (64 bits): too many to grind a name whose hash matches another's.
NAME_HASH_LENGTH = 16
#: The form a hashed name takes; a valid name of that form is hashed too, so none can pose as one.
_HASHED = re.compile(rf".*-[0-9a-f]{{{NAME_HASH_LENGTH}}}")


def name_tag(name: str) -> str:
    """Turn a branch, tag or template result into a Docker tag that no other name produces.

    A name that is a valid Docker tag as it is (``[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}``) stays as
    it is: ``main``, ``release-1.2``, ``v1.2.3``. Any other name is sanitised and given a hash
    of the whole name, so ``feature/login`` becomes ``feature-login-<hash>`` and ``+main``
    becomes ``main-<hash>``, never ``main``: a name that needed sanitising never lands on the
    tag of the name it was made to look like. A valid name that ends the way hashed ones do
    (``-`` and 16 hex digits) is hashed as well, so no name can claim another's hashed tag.
    """
    if _DOCKER_TAG.fullmatch(name) and not _HASHED.fullmatch(name):
        return name
    digest = hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:NAME_HASH_LENGTH]
    stem = _TAG_UNSAFE.sub("-", name).lstrip(".-").rstrip("-")[:128 - NAME_HASH_LENGTH - 1].rstrip("-")
    return f"{stem or 'ref'}-{digest}"


def is_docker_tag(text: str) -> bool:
    """Say whether ``text`` is a valid Docker tag as it is."""
    return _DOCKER_TAG.fullmatch(text) is not None


def split_image(reference: str) -> tuple[str, str | None]:
    """Split an image reference into its repository and tag: ``("registry:5000/team/app", "v1")``.

    The tag is ``None`` when the reference names none: a registry's port is not a tag.
    """
    repository, colon, tag = reference.rpartition(":")
    if not colon or "/" in tag:
        return reference, None
    return repository, tag


def registry_host(image: str) -> str:
    """Return the registry part of an image name (``docker.io`` when it names none)."""
    first, _, rest = image.partition("/")
    return first if rest and ("." in first or ":" in first or first == "localhost") else "docker.io"
