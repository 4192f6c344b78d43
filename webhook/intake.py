"""Taking pushes in: what a verified delivery and a manual build share once we know what was pushed.

The repository's rules decide what builds; the push is recorded (a delivery or push seen before
is recorded once), queued builds of the same branch that it replaces are cancelled, and each
new build is dispatched. Nothing slow happens here: the worker builds.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from .config import RepoConfig
from .events import PushEvent
from .ordering import is_newer
from .rules import skip_marker
from .store import Build, BuildState, BuildStore
from .worker import Dispatcher

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Intake:
    """What became of a push: its builds (new or already recorded), or why it builds nothing."""

    builds: tuple[Build, ...] = ()
    created: bool = False
    ignored: str | None = None


def unwanted(event: PushEvent, repo: RepoConfig) -> str | None:
    """Return why a push builds nothing under the repository's rules, or ``None`` if it builds."""
    if repo.skip_markers and (marker := skip_marker(event.message)):
        return f"{marker} in the head commit message"
    if repo.plan(event.ref, event.sha, default_branch=event.default_branch) is None:
        kind = "branch" if event.branch is not None else "tag"
        return f"no build rule matches {kind} {event.ref_name!r}"
    return None


def take(store: BuildStore, dispatcher: Dispatcher, repo: RepoConfig, events: Sequence[PushEvent], *,
         from_forge: bool) -> Intake:
    """Record and queue the pushes the rules build; ``from_forge`` also deduplicates on the push itself."""
    reasons = [unwanted(event, repo) for event in events]
    wanted = [event for event, reason in zip(events, reasons, strict=True) if reason is None]
    if not wanted:
        return Intake(ignored="; ".join(r for r in reasons if r))
    builds, created = store.record(wanted, dispatching=True, from_forge=from_forge)
    if not created:
        return Intake(builds=tuple(builds))
    for build, event in zip(builds, wanted, strict=True):
        if repo.cancel_superseded and event.branch is not None:
            cancel_superseded(store, build)
        dispatcher.dispatch(build.id, marked=True)
        log.info("accepted forge=%s repo=%s ref=%s sha=%s build=%s delivery=%s pusher=%s",
                 build.forge, repo.name, event.ref, event.sha, build.id, event.delivery_id, event.pusher)
    return Intake(builds=tuple(builds), created=True)


def cancel_superseded(store: BuildStore, newest: Build) -> None:
    """Cancel queued builds of the same branch that ``newest`` replaces (tag builds are never cancelled)."""
    waiting = [b for b in store.of_ref(newest.forge, newest.repo, newest.ref, state=BuildState.QUEUED) if b.id != newest.id]
    if not waiting:
        return  # the common case: one query, nothing to compare
    pushes = store.of_ref(newest.forge, newest.repo, newest.ref)
    for build in waiting:
        if is_newer(newest, build, pushes):
            if store.cancel(build.id, f"superseded by build {newest.id} ({newest.sha[:12]}) of {newest.ref}"):
                log.info("cancelled build=%s: superseded by build=%s", build.id, newest.id)
