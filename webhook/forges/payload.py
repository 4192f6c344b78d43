"""Reading a forge's payload into :class:`PushEvent` values: the helpers every parser shares. Performs no I/O.

Which field holds what is each forge module's business (../shared/FORGES.md, "Events and the
commit to build"); validating the fields every push has, and bounding them to what the store
holds, is done here once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from .. import defaults
from ..errors import BadRequest
from ..events import PushEvent
from ..refs import ZERO_SHA, validate_ref, validate_sha

#: GitHub and GitLab list at most this many commits in a push payload.
PAYLOAD_COMMIT_LIMIT = 20


def get(payload: Mapping[str, Any], *path: str) -> Any:
    """Follow ``path`` through nested objects; ``None`` where any step is missing."""
    value: Any = payload
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def changed_paths(commits: object, *, total: object = None) -> tuple[str, ...] | None:
    """Collect added, modified and removed files from a payload's commits, if it lists every commit."""
    if not isinstance(commits, list) or not commits or len(commits) >= PAYLOAD_COMMIT_LIMIT:
        return None
    if isinstance(total, int) and total != len(commits):
        return None
    paths: set[str] = set()
    for commit in commits:
        for key in ("added", "modified", "removed"):
            files = get(commit, key)
            if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
                return None
            paths.update(files)
    return tuple(sorted(paths))


def push_event(forge: str, *, repo: object, ref: object, sha: object, before: object, delivery_id: str | None,
               default_branch: object = None, pusher: object = None, message: object = None,
               changed_paths: tuple[str, ...] | None = None) -> PushEvent:
    """Validate the fields every forge shares and build the :class:`PushEvent`."""
    if not isinstance(repo, str) or not repo:
        raise BadRequest("payload does not name the repository")
    return PushEvent(
        forge=forge,
        repo=text(repo, "repository name", defaults.MAX_REPO_NAME_CHARS),
        ref=validate_ref(ref),
        sha=validate_sha(sha),
        before=validate_sha(before or ZERO_SHA),
        pusher=text(pusher, "pusher name", defaults.MAX_PUSHER_CHARS) if isinstance(pusher, str) else "",
        delivery_id=delivery_id,
        default_branch=(text(default_branch, "default branch", defaults.MAX_REF_CHARS)
                        if isinstance(default_branch, str) else None),
        message=message if isinstance(message, str) else "",
        changed_paths=changed_paths,
    )


def text(value: str, what: str, max_chars: int) -> str:
    """Return a payload string that a database column holds as it is, or raise.

    PostgreSQL refuses NUL characters and strings longer than the column; no database stores a
    lone surrogate (JSON's ``"\\ud800"``) as UTF-8.
    """
    if len(value) > max_chars:
        raise BadRequest(f"{what} is longer than {max_chars} characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise BadRequest(f"{what} is not valid text") from exc
    if "\0" in value:
        raise BadRequest(f"{what} is not valid text")
    return value


def joined(*parts: str | None) -> str | None:
    """Join the present parts of a delivery key with ``:``; ``None`` if the last is absent."""
    if not parts[-1]:
        return None
    return ":".join(part for part in parts if part)


def first_header(headers: Mapping[str, str], *names: str) -> str | None:
    """Return the first of ``names`` present in ``headers``."""
    return next((headers[n] for n in names if headers.get(n)), None)


def delivery_header(headers: Mapping[str, str], *names: str) -> str | None:
    """Return the first of ``names`` present in ``headers``, refusing a value no forge sends as a delivery id.

    Forges send UUIDs and numbers; a long value would overflow the store's delivery key, and
    control characters would forge lines in our log.
    """
    name = next((n for n in names if headers.get(n)), None)
    if name is None:
        return None
    value = headers[name]
    if len(value) > defaults.MAX_DELIVERY_ID_CHARS or not (value.isascii() and value.isprintable()):
        raise BadRequest(f"{name} header is not a delivery id (printable ASCII, "
                         f"at most {defaults.MAX_DELIVERY_ID_CHARS} characters)")
    return value


def ref_key(ref: object) -> str | None:
    """Return how a delivery id names one of several refs: the ref, or its SHA-256 when it is long."""
    if not isinstance(ref, str):
        return None  # no delivery id; the ref itself is refused when the event is built
    if len(ref) > defaults.MAX_DELIVERY_ID_CHARS:
        return hashlib.sha256(ref.encode("utf-8", "surrogatepass")).hexdigest()
    return ref
