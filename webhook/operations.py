"""What an operator may do to a running service: retry, cancel, redeliver, and start a build.

Shared by the API (``operate`` scope) and the CLI. Each names who did it in the build's log,
raises a :class:`~webhook.errors.RequestError` when it cannot be done, and leaves the slow
work (building, sending) to the worker.
"""

from __future__ import annotations

import logging

from . import defaults
from .config import RepoConfig
from .errors import BadRequest, Conflict, NotFound, PushbuildError, Unprocessable, Unreachable
from .events import PushEvent
from .intake import Intake, take, unwanted
from .notify.deliveries import Delivery, DeliveryKind
from .refs import TAG_PREFIX, ZERO_SHA, is_full_sha, short_name, validate_ref
from .rules import version_key
from .services import Services
from .store import RETRYABLE, Build, BuildState
from .worker import Dispatcher

log = logging.getLogger(__name__)


def _build(services: Services, build_id: int) -> Build:
    build = services.store.get(build_id)
    if build is None:
        raise NotFound(f"no build {build_id}")
    return build


def retry(services: Services, dispatcher: Dispatcher, build_id: int, *, by: str) -> Build:
    """Queue a failed, skipped or cancelled build to run again.

    A succeeded build is not run again in place: it moved tags and fired hooks, and keeping it
    succeeded is what stops an older push from taking them back. Start a new build of the ref.
    """
    build = _build(services, build_id)
    if build.state is BuildState.SUCCEEDED:
        raise Conflict(f"build {build_id} succeeded; to build {build.ref or build.sha} again, start a new build "
                       "(POST /api/builds, or pushbuild build)")
    _refuse_older_release(services, build.forge, build.repo, build.ref, build.id, "running it again would fire its hooks")
    if not services.store.requeue(build_id):
        now = _build(services, build_id)
        raise Conflict(f"build {build_id} is being pruned (retention)" if now.state in RETRYABLE
                       else f"build {build_id} has not finished yet")
    services.store.append_log(build_id, f"--- queued again by {by} ---\n")
    dispatcher.dispatch(build_id)
    log.info("build=%s queued again by %s", build_id, by)
    return _build(services, build_id)


def cancel(services: Services, build_id: int, *, by: str) -> Build:
    """Cancel a queued or running build; a running one stops at its next line of output, before it pushes more."""
    build = _build(services, build_id)
    if not services.store.cancel(build_id, f"cancelled by {by}", running=True):
        raise Conflict(f"build {build_id} has already ended ({_build(services, build_id).state.value})")
    services.store.append_log(build_id, f"--- cancelled by {by} ---\n")
    services.notifier.build_finished(build, state=BuildState.CANCELLED, tags=(), digest=None,
                                     error=f"cancelled by {by}")
    log.info("build=%s (was %s) cancelled by %s", build_id, build.state.value, by)
    return _build(services, build_id)


def redeliver(services: Services, delivery_id: int, *, by: str) -> Delivery:
    """Make a status or hook due again now; the worker sends it.

    An older push's redeploy hook is not sent again once a newer push of the branch was built:
    that would roll the deployment back.
    """
    delivery = services.deliveries.get(delivery_id)
    if delivery is None:
        raise NotFound(f"no delivery {delivery_id}")
    build = services.store.get(delivery.build_id)
    if delivery.kind == DeliveryKind.HOOK and build is not None:
        if services.store.newer_success(build):
            raise Conflict(f"a newer push of {delivery.ref} was built since; its hooks replace this one "
                           "(sending this again would roll the deployment back)")
        _refuse_older_release(services, build.forge, build.repo, build.ref, build.id,
                              "sending its hook again would roll the deployment back")
    reopened = services.deliveries.reopen(delivery_id)
    log.info("delivery=%s (%s %s of build %s) due again, asked by %s", delivery_id, delivery.kind,
             delivery.target, delivery.build_id, by)
    return reopened


def start_build(services: Services, dispatcher: Dispatcher, repo_spec: str, *, ref: str | None = None,
                sha: str | None = None, tag: str | None = None, by: str) -> Intake:
    """Build ``repo_spec`` (``NAME`` or ``FORGE:NAME``) at a branch's or tag's head, or at one commit.

    It goes the way a delivery goes: the rules decide what builds and with which tags, and
    statuses and hooks follow; the pusher is ``by``. While a build of the same ref and commit
    is still queued or running, that build is returned instead of a second one.
    """
    repo = _repo(services, repo_spec)
    if sum(x is not None for x in (ref, sha, tag)) != 1:
        raise BadRequest('give exactly one of "ref", "sha" and "tag"')
    if sha is not None:
        if not is_full_sha(sha):
            raise BadRequest("sha must be a full commit id (40 or 64 lowercase hex digits)")
        _refuse_unknown_commit(services, repo, sha)
        full_ref = ""
    else:
        full_ref = (ref if ref.startswith("refs/") else f"refs/heads/{ref}") if ref is not None else f"{TAG_PREFIX}{tag}"
        validate_ref(full_ref)
        if why := unwanted(PushEvent(forge=repo.forge, repo=repo.name, ref=full_ref, sha=ZERO_SHA, before=ZERO_SHA,
                                     pusher=by, delivery_id=None), repo):
            raise Unprocessable(f"{repo.forge}:{repo.name}: {why}")  # before asking the forge anything
        _refuse_older_release(services, repo.forge, repo.name, full_ref, None, "building it again would fire its hooks")
        sha = _head(services, repo, full_ref)
    for state in (BuildState.QUEUED, BuildState.RUNNING):
        waiting = [b for b in services.store.of_ref(repo.forge, repo.name, full_ref, state=state) if b.sha == sha]
        if waiting:
            return Intake(builds=(waiting[-1],))
    event = PushEvent(forge=repo.forge, repo=repo.name, ref=full_ref, sha=sha, before=ZERO_SHA, pusher=by,
                      delivery_id=None)
    taken = take(services.store, dispatcher, repo, [event], from_forge=False)
    if taken.ignored is not None:
        raise Unprocessable(f"{repo.forge}:{repo.name}: {taken.ignored}")
    return taken


def _refuse_older_release(services: Services, forge: str, repo: str, ref: str, build_id: int | None, why: str) -> None:
    """Refuse to act on a release (build ``build_id`` of tag ``ref``, or a new one) when a later one was built.

    Later is semver precedence between versions; otherwise acceptance order after this tag's own
    latest build (a tag never built before is later than none).
    """
    if not ref.startswith(TAG_PREFIX):
        return
    releases = services.store.releases(forge, repo)
    mine = version_key(short_name(ref))
    since = build_id or max((r.id for r in releases if r.ref == ref), default=None)
    for other in releases:
        theirs = version_key(short_name(other.ref))
        if mine is not None and theirs is not None:
            later = theirs > mine
        else:
            later = since is not None and other.id > since
        if other.ref != ref and later:
            raise Conflict(f"{short_name(other.ref)} (build {other.id}) is a later release than {short_name(ref)}; {why}")


def _refuse_unknown_commit(services: Services, repo: RepoConfig, sha: str) -> None:
    """Refuse a commit that is neither a recorded push nor the head of a ref the rules build.

    Anything the forge serves could otherwise be built with the repository's secrets (on GitHub,
    even a fork's pull-request commit, fetched by its id).
    """
    if any(repo.plan(ref, sha) is not None for ref in services.store.refs_of_commit(repo.forge, repo.name, sha)):
        return
    if any(head == sha and repo.plan(ref, sha) is not None for ref, head in _heads(services, repo).items()):
        return
    raise Unprocessable(f"{sha} is not the head of a branch or tag {repo.forge}:{repo.name}'s rules build, "
                        "nor a push pushbuild recorded for one")


def _repo(services: Services, spec: str) -> RepoConfig:
    found = services.config.repos_named(spec)
    if not found:
        raise NotFound(f"repository {spec!r} is not configured")
    if len(found) > 1:
        raise BadRequest(f"{spec!r} is configured on {' and '.join(r.forge for r in found)}: "
                         f"name one, as {found[0].forge}:{found[0].name}")
    return found[0]


def _heads(services: Services, repo: RepoConfig) -> dict[str, str]:
    """Return the forge's branch and tag heads now (``git ls-remote``; no mirror is touched)."""
    try:
        return services.mirrors.remote_heads(repo, timeout_s=defaults.WEB_GIT_TIMEOUT_S)
    except PushbuildError as exc:
        raise Unreachable(f"cannot list {repo.name}'s refs: {services.redact(exc.message)}") from exc


def _head(services: Services, repo: RepoConfig, ref: str) -> str:
    """Return the commit ``ref`` points to on the forge now."""
    heads = _heads(services, repo)
    if ref not in heads:
        raise NotFound(f"{repo.forge}:{repo.name} has no {ref}")
    return heads[ref]
