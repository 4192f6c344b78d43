"""The build pipeline: mirror the commit, stream its tree to the engine, tag, push, record.

Collaborators are passed in; this module decides the order of things and what is recorded.
"""

from __future__ import annotations

import dataclasses
import posixpath
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..config import Config, RepoConfig
from ..errors import BuildError, Cancelled, ContextError, EngineError, RegistryError
from ..logs import Log
from ..metrics import Metrics
from ..notify.notifier import Notifier
from ..ordering import higher_release
from ..redact import Redactor
from ..refs import ZERO_SHA, matches_any, short_name
from ..retrying import backoff_s, retry
from ..rules import BuildPlan
from ..store import Build, BuildState, BuildStore
from ..urls import redacted_url
from .backends import BuildLimits, open_backend
from .buildlog import BuildLog
from .context import DOCKERIGNORE, IgnoreRules, dockerignore_patterns, filtered_tar
from .engine import Engine
from .mirror import Mirrors
from .timings import BUILD, CONTEXT, FETCH, PUSH, QUEUE_WAIT, PhaseTimer, queue_wait_s, summary

#: Label recording the build settings, so a commit built with other settings is rebuilt, not reused.
PLAN_LABEL = "dev.pushbuild.plan"
REVISION_LABEL = "org.opencontainers.image.revision"
#: The repository an image was built from (its clone URL, without credentials); housekeeping groups images by it.
SOURCE_LABEL = "org.opencontainers.image.source"


@dataclass(frozen=True)
class Outcome:
    """How one run of a build ended."""

    state: BuildState
    tags: tuple[str, ...] = ()
    digest: str | None = None
    error: str | None = None


class Pipeline:
    """Runs builds to their end and records the outcome."""

    def __init__(self, *, config: Config, store: BuildStore, mirrors: Mirrors, engine: Callable[[], Engine],
                 redact: Redactor, notifier: Notifier | None = None, metrics: Metrics | None = None,
                 monotonic: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.config = config
        self.metrics = metrics or Metrics.discarding()
        self.monotonic = monotonic
        self.sleep = sleep
        self.notifier = notifier
        self.store = store
        self.mirrors = mirrors
        self.engine = engine
        self.redact = redact

    def run(self, build: Build, *, owner: str | None = None, echo: Log | None = None,
            stop: threading.Event | None = None) -> Outcome:
        """Run a claimed build, write its log as it goes, and record how it ended.

        The log is complete in the store before the build is recorded as finished, so whoever
        sees it finished reads all of it. Once ``stop`` is set (the build was cancelled), the
        next line of output ends the build, and nothing is tagged or pushed after it. The log
        ends with how long each phase took (build/timings.py), which the record keeps too.
        """
        stored = BuildLog(self.store, build.id, max_bytes=self.config.server.max_log_bytes)
        stopping = threading.Event()
        timer = PhaseTimer(clock=self.monotonic)
        if (waited := queue_wait_s(build.queued_at or build.created_at, build.started_at)) is not None:
            timer.add(QUEUE_WAIT, waited)

        def write(text: str) -> None:
            text = self.redact(text)
            stored.write(text)
            if echo is not None:
                echo(text)

        def log(text: str) -> None:
            write(text)
            if stop is not None and stop.is_set() and not stopping.is_set():
                stopping.set()  # raised once: the lines that report it must not raise again
                raise Cancelled("the build was cancelled")

        if self.notifier is not None:
            self.notifier.build_started(build)
            self.notifier.deliver_soon(build.id)
        try:
            outcome = self._run(build, log, timer)
        except Cancelled as exc:
            outcome = Outcome(BuildState.CANCELLED, error=exc.message)
            stopping.set()
            log("cancelled: stopped before pushing anything more\n")
        except BuildError as exc:
            outcome = Outcome(BuildState.FAILED, error=self.redact(exc.message))
            log(f"error: {outcome.error}\n")
        except Exception as exc:  # a defect: still end the build visibly, then let it surface
            outcome = Outcome(BuildState.FAILED, error=f"internal error ({type(exc).__name__}); see the worker's log")
            log(f"error: {outcome.error}\n")
            self._finish(build, outcome, owner=owner, timer=timer, write=write, stored=stored)
            raise
        finally:
            stored.close()
        recorded = self._finish(build, outcome, owner=owner, timer=timer, write=write, stored=stored)
        if recorded and self.notifier is not None:
            self.notifier.build_finished(build, state=outcome.state, tags=outcome.tags, digest=outcome.digest,
                                         error=outcome.error)
            self.notifier.deliver_soon(build.id)
        return outcome

    def _finish(self, build: Build, outcome: Outcome, *, owner: str | None, timer: PhaseTimer, write: Log,
                stored: BuildLog) -> bool:
        """Close the log with the phases' times, record how the run ended, and count it; say whether it was recorded."""
        write(summary(timer.seconds))
        stored.close()
        self.metrics.phases(timer.seconds)
        return self.store.finish(build.id, outcome.state, owner=owner, tags=outcome.tags, digest=outcome.digest,
                                 error=outcome.error, timings=timer.seconds, context_bytes=timer.context_bytes)

    def _run(self, build: Build, log: Log, timer: PhaseTimer) -> Outcome:
        """Do the work of one build; raise :class:`BuildError` on any failure."""
        repo = self.config.repo(build.forge, build.repo)
        if repo is None:
            raise BuildError(f"{build.repo} is no longer configured for {build.forge}")
        log(f"building {build.repo} {build.ref or 'commit'} {build.sha} (attempt {build.attempts})\n")
        with timer.phase(FETCH):
            sha = self.mirrors.fetch_commit(repo, sha=build.sha, ref=build.ref or None, log=log)
            unchanged = repo.paths is not None and self._nothing_changed_under_paths(repo, build, sha, log)
        if unchanged:
            return Outcome(BuildState.SKIPPED, error=unchanged)
        plan = repo.plan(build.ref, sha, default_branch=build.default_branch)
        if plan is None:
            raise BuildError(f"no build rule of {build.repo} matches {build.ref} any more")
        engine, server = self.engine(), self.config.server

        def wait_for_engine(exc: EngineError, attempt: int) -> None:
            log(f"{exc.message}\nwaiting for the engine to come back, then building again "
                f"(attempt {attempt + 1} of {server.engine_attempts})\n")
            engine.wait_until_up(timeout_s=server.engine_wait_s, sleep=self.sleep)

        return retry(lambda _: self._build_and_push(build, repo, sha, plan, engine, log, timer),
                     attempts=server.engine_attempts, retry_on=EngineError, retryable=lambda exc: exc.unreachable,
                     before_retry=wait_for_engine)

    def _build_and_push(self, build: Build, repo: RepoConfig, sha: str, plan: BuildPlan, engine: Engine,
                        log: Log, timer: PhaseTimer) -> Outcome:
        """Build (or reuse) the image and push its tags."""
        image_id = engine.image_id(plan.tags[0])
        wanted = image_labels(repo, sha, plan)
        if image_id is not None and wanted.items() <= engine.labels(image_id).items():
            log(f"{plan.tags[0]} was built before from this commit with these settings ({image_id}); adding tags only\n")
        else:
            image_id = self._build(engine, repo, sha, self._own_cache_only(build, plan, log), log=log, timer=timer)
        current = self.store.get(build.id)
        if current is None or current.state is not BuildState.RUNNING:
            raise Cancelled("the build was cancelled")
        with timer.phase(PUSH):  # the commit's own tag first: it is what a push waits for, whatever else moves
            digest = self._push(engine, plan.tags[0], log)
        tags = self._tags_to_move(build, plan, log)
        with timer.phase(PUSH):
            for tag in tags[1:]:
                engine.tag(image_id, tag)
                self._push(engine, tag, log)
        log(f"pushed {repo.image}@{digest}\n")
        return Outcome(BuildState.SUCCEEDED, tags=tags, digest=digest)

    def _tags_to_move(self, build: Build, plan: BuildPlan, log: Log) -> tuple[str, ...]:
        """Return the plan's tags this build may write: the SHA tag, and each other tag it owns or may move.

        A tag made from a ref's name belongs to the first ref that pushed it; release tags only
        move to a higher version; an older push of a branch leaves its tags on the newer one.
        """
        for tag, why in plan.withheld:
            log(f"not tagging {tag}: {why}\n")
        if (newer := self.store.newer_success(build)) is not None:
            log(f"build {newer.id} already pushed a newer commit of {build.ref} ({newer.sha[:12]}); "
                "pushing only this commit's SHA tag\n")
            return plan.tags[:1]
        tags = [plan.tags[0]]
        releases = self.store.releases(build.forge, build.repo) if plan.release_tags else []
        for tag in plan.tags[1:]:
            claimant = build.ref if tag in plan.named_tags else build.sha if tag in plan.commit_tags else None
            if claimant and (owner := self.store.claim_tag(tag, forge=build.forge, repo=build.repo, owner=claimant)):
                log(f"not tagging {tag}: it belongs to {owner}, which pushed it first\n")
            elif tag in plan.release_tags and (higher := higher_release(build, plan.version, tag, releases)):
                log(f"not moving {tag}: build {higher.id} gave it to {short_name(higher.ref)}, a later release\n")
            else:
                tags.append(tag)
        return tuple(tags)

    def _own_cache_only(self, build: Build, plan: BuildPlan, log: Log) -> BuildPlan:
        """Drop ``cache_from`` images named after the ref that the ref does not own: another ref wrote them."""
        foreign = [image for image in plan.cache_from if image in plan.named_cache
                   and self.store.tag_owner(image) != (build.forge, build.repo, build.ref)]
        for image in foreign:
            log(f"not using cache image {image}: {short_name(build.ref)} never pushed it\n")
        return dataclasses.replace(plan, cache_from=tuple(i for i in plan.cache_from if i not in foreign)) if foreign else plan

    def _push(self, engine: Engine, tag: str, log: Log) -> str:
        """Push one tag; retry temporary registry failures with exponential backoff and jitter."""
        server = self.config.server

        def push(attempt: int) -> str:
            log(f"pushing {tag}" + (f" (attempt {attempt} of {server.push_attempts})" if attempt > 1 else "") + "\n")
            return engine.push(tag, auth=self.config.registry.auth(), log=log)

        def wait(exc: RegistryError, attempt: int) -> None:
            delay = backoff_s(attempt, base_s=server.push_retry_s, max_s=server.push_retry_max_s)
            log(f"{exc.message}; retrying in {delay:.1f}s\n")
            self.metrics.push_retried()
            self.sleep(delay)

        def give_up(exc: RegistryError, attempt: int) -> RegistryError:
            suffix = f" (after {attempt} attempts)" if attempt > 1 else ""
            return RegistryError(exc.message + suffix, temporary=exc.temporary)

        return retry(push, attempts=server.push_attempts, retry_on=RegistryError, retryable=lambda exc: exc.temporary,
                     before_retry=wait, give_up=give_up)

    def _nothing_changed_under_paths(self, repo: RepoConfig, build: Build, sha: str, log: Log) -> str | None:
        """Say why the push changed nothing under ``paths``, or ``None`` if it must be built.

        The payload's file lists are a hint that can only say "build"; the diff decides.
        """
        if not build.before or build.before == ZERO_SHA:
            return None  # a new branch or tag: nothing to compare with
        if build.changed_paths is not None and any(matches_any(p, repo.paths) for p in build.changed_paths):
            log("the payload lists changes under paths; building\n")
            return None
        changed = self.mirrors.changed_paths(repo, before=build.before, after=sha, log=log)
        if changed is None or any(matches_any(p, repo.paths) for p in changed):
            return None
        reason = f"nothing under {', '.join(repo.paths)} changed between {build.before[:12]} and {sha[:12]}"
        log(f"skipped: {reason}\n")
        return reason

    def _build(self, engine: Engine, repo: RepoConfig, sha: str, plan: BuildPlan, *, log: Log,
               timer: PhaseTimer) -> str:
        """Stream the commit's context to the repository's build backend (``builder``) and return the new image's id."""
        with timer.phase(CONTEXT):
            rules = self._ignore_rules(repo, sha, plan)
        labels = image_labels(repo, sha, plan)
        server = self.config.server
        limits = BuildLimits(timeout_s=server.build_timeout_s, memory_bytes=server.build_memory_bytes,
                             cpu_shares=server.build_cpu_shares)
        with self.mirrors.archive(repo, sha, plan.context) as tar, timer.phase(BUILD, besides=CONTEXT):
            context = timer.context(filtered_tar(tar, rules, max_file_bytes=server.max_context_file_bytes,
                                                 max_bytes=server.max_context_bytes,
                                                 max_entries=server.max_context_entries))
            backend = open_backend(repo.builder, engine, auth=self.config.registry.auth(),
                                   secrets={secret_id: secret.reveal() for secret_id, secret in repo.build_secrets})
            return backend.build(context, plan=plan, labels=labels, limits=limits, log=log)

    def _ignore_rules(self, repo: RepoConfig, sha: str, plan: BuildPlan) -> IgnoreRules:
        """Check the context directory and Dockerfile exist at ``sha``, and return its ``.dockerignore`` rules."""
        if not self.mirrors.has_tree(repo, sha, plan.context):
            raise ContextError(f"context directory {plan.context!r} does not exist at {sha}")
        dockerfile, dockerignore = _within(plan.context, plan.dockerfile), _within(plan.context, DOCKERIGNORE)
        files = self.mirrors.read_files(repo, sha, [dockerfile, dockerignore])
        if files[dockerfile] is None:
            raise ContextError(f"no {plan.dockerfile} in {plan.context!r} at {sha}")
        ignore = files[dockerignore] or b""
        return IgnoreRules(dockerignore_patterns(ignore.decode("utf-8", "replace")), dockerfile=plan.dockerfile)


def image_labels(repo: RepoConfig, sha: str, plan: BuildPlan) -> dict[str, str]:
    """The labels an image built from ``sha`` under ``plan`` carries.

    An image on the engine is reused only when it carries them all: built from this commit,
    of this repository, with these settings. A tag on the engine proves nothing.

    The classic builder makes each label a step of its own (in the keys' sorted order), and
    commits a container for it whenever it or a step before it differs from the cached one:
    about 0.1 s a label on a 2-core machine (``./dev bench labels``). So no label beyond these
    three, and none that changes from one build to the next (no ``org.opencontainers.image.created``;
    the image's own ``Created`` says when): a rebuild of the same commit with the same settings
    is the same image.
    """
    return {REVISION_LABEL: sha, SOURCE_LABEL: redacted_url(repo.clone_url), PLAN_LABEL: plan.fingerprint()}


def _within(context: str, path: str) -> str:
    """Return ``path`` inside the ``context`` directory as a tree path (no ``./``)."""
    return posixpath.normpath(posixpath.join(context, path))
