"""Taking pushes in: verify, parse, decide, record, dispatch. No Flask, and nothing slow here.

:func:`receive` takes a forge's delivery as bytes and headers: the signature is checked against
each repository's secret before the body is parsed, and the payload must then name a repository
whose secret matched (FORGES.md). :func:`take` is what every way in shares once it knows what
was pushed (a delivery, ``POST /api/builds``, ``pushbuild build`` and ``reconcile``): the
repository's rules decide what builds; the push is recorded (a delivery or push seen before is
recorded once); queued builds of the same branch that it replaces are cancelled; each new build
is dispatched. The worker builds.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from . import defaults, forges
from .config import Config, RepoConfig
from .errors import BadRequest, NotFound, SignatureError
from .events import Ignored, PushEvent, decode_body
from .last_delivery import Arrival, LastDeliveries, builds_detail, mentioned_repo
from .logs import log_context
from .outcomes import ACCEPTED, BAD_REQUEST, DUPLICATE, IGNORED, REFUSED_SIGNATURE
from .recent_pushes import RecentPushes
from .rules import skip_marker
from .store import Build, BuildStore
from .worker import Dispatcher

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Intake:
    """What became of a push: its builds (new or already recorded), or why it builds nothing."""

    builds: tuple[Build, ...] = ()
    created: bool = False
    ignored: str | None = None

    @property
    def outcome(self) -> str:
        """The one word for it (:mod:`webhook.outcomes`)."""
        return IGNORED if self.ignored is not None else ACCEPTED if self.created else DUPLICATE

    @property
    def detail(self) -> str:
        """What became of it, for people (a repository's last delivery)."""
        if self.ignored is not None:
            return f"ignored: {self.ignored}"
        return builds_detail((b.id for b in self.builds), created=self.created)


def unwanted(event: PushEvent, repo: RepoConfig) -> str | None:
    """Return why a push builds nothing under the repository's rules, or ``None`` if it builds."""
    if repo.skip_markers and (marker := skip_marker(event.message)):
        return f"{marker} in the head commit message"
    if not repo.builds(event.ref):
        kind = "branch" if event.branch is not None else "tag"
        return f"no build rule matches {kind} {event.ref_name!r}"
    return None


def receive(config: Config, store: BuildStore, dispatcher: Dispatcher, forge: forges.Forge, *,
            headers: Mapping[str, str], body: bytes, content_type: str | None, now: float,
            last: LastDeliveries | None = None, recent: RecentPushes | None = None) -> Intake:
    """Take one delivery of ``forge`` (``headers`` with lowercased names, the raw ``body``) in.

    Raises :class:`~webhook.errors.SignatureError` when no configured repository signed it, or
    when the payload names another repository than one that did; :class:`~webhook.errors.NotFound`
    for a repository not configured here. What became of it is noted in ``last`` for the
    configured repository it concerns (see :mod:`webhook.last_delivery`).
    """
    arrival = Arrival(last, forge=forge.name, at=now)
    signed = _signed_for(config, forge, headers=headers, body=body, content_type=content_type, arrival=arrival)
    try:
        parsed = forge.parse(headers, decode_body(body, content_type))
    except BadRequest as exc:
        for name in sorted(signed):
            arrival.note(name, BAD_REQUEST, f"refused: {exc.message}")
        raise
    if isinstance(parsed, Ignored):
        for name in sorted(signed):  # an ignored event names no repository; each whose secret signed it may be the one
            arrival.note(name, IGNORED, f"ignored: {parsed.reason}", event="ping" if parsed.reason == "ping" else None)
        return Intake(ignored=parsed.reason)
    repo = config.repo(forge.name, parsed[0].repo)
    if repo is None:
        raise NotFound(f"repository {parsed[0].repo!r} is not configured for {forge.name}")
    event = "tag_push" if parsed[0].branch is None else "push"
    if repo.name not in signed:
        error = SignatureError(f"the signature is not valid for repository {repo.name!r}")
        arrival.note(repo.name, REFUSED_SIGNATURE, f"refused: {error.message}", event=event, verified=False)
        raise error
    with log_context(forge=forge.name, repo=repo.name, delivery=parsed[0].delivery_id):
        taken = take(store, dispatcher, repo, parsed, from_forge=True, recent=recent)
    if not taken.created:  # a delivery that recorded builds is read back from them (webhook.last_delivery)
        arrival.note(repo.name, taken.outcome, taken.detail, event=event, delivery_id=parsed[0].delivery_id,
                     build_id=taken.builds[0].id if taken.builds else None)
    return taken


def _signed_for(config: Config, forge: forges.Forge, *, headers: Mapping[str, str], body: bytes,
                content_type: str | None, arrival: Arrival) -> set[str]:
    """Return the configured repositories whose secrets sign the delivery; a refusal is noted on the one the body names."""
    repos = [r for r in config.repos if r.forge == forge.name]
    try:
        return forges.signed_for(forge, headers, body, [r.delivery_keys() for r in repos],
                                 forges.Clock(now=arrival.at, tolerance_s=defaults.SIGNATURE_TOLERANCE_S))
    except SignatureError as exc:
        if arrival.noting and (named := mentioned_repo([r.name for r in repos], body, content_type)):
            arrival.note(named, REFUSED_SIGNATURE, f"refused: {exc.message}", verified=False)
        raise


def take(store: BuildStore, dispatcher: Dispatcher | None, repo: RepoConfig, events: Sequence[PushEvent], *,
         from_forge: bool, recent: RecentPushes | None = None) -> Intake:
    """Record and queue the pushes the rules build; ``from_forge`` also deduplicates on the push itself.

    With ``recent``, a forge's push this process accepted lately is answered from it, and what this
    call records is noted in it (a duplicate teaches it nothing: see :mod:`webhook.recent_pushes`).

    Without a ``dispatcher`` the builds are recorded but not queued: the caller runs them (``pushbuild build``).
    """
    last_of_ref = {event.ref: event for event in events}  # a delivery naming a ref twice builds its last change
    events = [event for event in events if last_of_ref[event.ref] is event]
    reasons = [unwanted(event, repo) for event in events]
    wanted = [event for event, reason in zip(events, reasons, strict=True) if reason is None]
    if not wanted:
        return Intake(ignored="; ".join(r for r in reasons if r))
    remembering = recent if from_forge else None
    if remembering is not None and (known := remembering.recorded(wanted)) is not None:
        return Intake(builds=known)
    recorded = store.accept(wanted, dispatching=dispatcher is not None, from_forge=from_forge,
                            supersede=repo.cancel_superseded)
    if remembering is not None and recorded.created:
        remembering.remember(wanted, recorded.builds)
    if not recorded.created:
        return Intake(builds=recorded.builds)
    for build in recorded.builds:  # fewer than the events when a delivery named the same change twice
        for cancelled, by in recorded.cancelled:
            if by == build.id:
                log.info("cancelled build=%s: superseded by build=%s", cancelled, build.id)
        if dispatcher is not None:
            dispatcher.dispatch(build.id, marked=True)
        log.info("accepted forge=%s repo=%s ref=%s sha=%s build=%s delivery=%s pusher=%s",
                 build.forge, repo.name, build.ref, build.sha, build.id, wanted[0].delivery_id, build.pusher)
    return Intake(builds=recorded.builds, created=True)
