"""Which of two pushes to a branch is newer. Performs no I/O.

Forges may deliver pushes out of order, so arrival order is not enough. Each push names the
commit it replaced (``before``); following those links from one push back to the other's
commit proves it newer. Only when the pushes are not linked (a force-push, or a gap in the
deliveries) does acceptance order decide.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol

from .refs import short_name
from .rules import VersionKey, version_key


class Push(Protocol):
    """What ordering needs of a recorded push."""

    id: int
    sha: str
    before: str | None


def _reaches(start: Push, target_sha: str, by_sha: dict[str, Push]) -> bool:
    """Follow ``before`` links from ``start``; say whether they reach ``target_sha``."""
    seen: set[str] = set()
    current: Push | None = start
    while current is not None and current.before and current.before not in seen:
        if current.before == target_sha:
            return True
        seen.add(current.before)
        current = by_sha.get(current.before)
    return False


def is_newer(candidate: Push, than: Push, pushes: Iterable[Push]) -> bool:
    """Say whether ``candidate`` is a later push of the branch than ``than``, given the branch's known pushes."""
    if candidate.sha == than.sha:
        return False
    by_sha = {push.sha: push for push in sorted(pushes, key=lambda p: p.id)}
    if _reaches(candidate, than.sha, by_sha):
        return True
    if _reaches(than, candidate.sha, by_sha):
        return False
    return candidate.id > than.id


def superseded(newest: Push, waiting: Iterable[Push], known: Callable[[], Iterable[Push]], *,
               followed: Callable[[], bool]) -> list[Push]:
    """Return the pushes of ``waiting`` (queued builds of ``newest``'s branch) that ``newest`` is newer than.

    ``known`` returns the branch's known pushes (:func:`is_newer`); ``followed`` says whether any
    of them names ``newest``'s commit as the one it replaced. Neither is asked when every waiting
    push is the very commit ``newest`` replaced, which needs no more to be proved older: a branch
    pushed to faster than it builds reads nothing more. When no push followed ``newest``'s
    commit, no push can be proved newer than ``newest``, so the waiting pushes accepted before it
    are older (:func:`is_newer`'s answer, without reading the branch's pushes): a force-push reads
    one index entry. ``newest`` itself is never among the result.
    """
    candidates = [push for push in waiting if push.id != newest.id and push.sha != newest.sha]
    if all(newest.before == push.sha for push in candidates):
        return candidates
    if all(push.id < newest.id for push in candidates) and not followed():
        return candidates
    pushes = list(known())
    return [push for push in candidates if is_newer(newest, push, pushes)]


def superseded_reason(newest_id: int, newest_sha: str, ref: str) -> str:
    """The error of a queued build cancelled because build ``newest_id`` (of ``newest_sha``) replaced it on ``ref``."""
    return f"superseded by build {newest_id} ({newest_sha[:12]}) of {ref}"


class Release(Push, Protocol):
    """What ordering releases needs of a recorded build of a git tag."""

    ref: str
    tags: tuple[str, ...]


def higher_release(build: Push, version: VersionKey | None, tag: str, releases: Iterable[Release]) -> Release | None:
    """Return a release build that already moved ``tag`` and outranks ``build`` (of ``version``), if any.

    Releases rank by version (semver precedence), then by acceptance order; a tag that is no
    version ranks by acceptance order alone. So ``latest`` and ``1.2`` only ever move forward,
    whatever order the forge delivers tags in.
    """
    def outranks(other: Release) -> bool:
        theirs = version_key(short_name(other.ref))
        if version is not None and theirs is not None and theirs != version:
            return theirs > version
        return other.id > build.id

    return next((r for r in releases if r.id != build.id and tag in r.tags and outranks(r)), None)
