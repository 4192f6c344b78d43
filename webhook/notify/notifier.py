"""After the push: commit statuses to the forge and redeploy hooks to whoever deploys.

Side effects only here; the messages come from :mod:`statuses` and :mod:`redeploy`. Every
delivery is recorded first and sent by whichever worker claims it, so a restart loses none.
A failure is retried with exponential backoff and jitter on 5xx, 408, 429, timeouts and
connection errors; any other 4xx is final. A status never fails the build.
"""

from __future__ import annotations

import base64
import logging
import os
import random
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import requests

from .. import defaults, links
from ..config import Config, HookConfig, RepoConfig
from ..metrics import Metrics
from ..redact import Redactor
from ..refs import is_branch, matches_any, short_name
from ..retrying import backoff_s
from ..store import Build, BuildState, BuildStore
from .deliveries import Delivery, DeliveryKind, DeliveryState, DeliveryStore
from .outbound import OutboundRequest
from .redeploy import ImagePushed, command_argv, keel_request, message_body, standard_request
from .statuses import FAILURE, PENDING, SUCCESS, status_request

log = logging.getLogger(__name__)
#: A claimed delivery is held at least this long while it is being sent, so no other worker starts it again.
CLAIM_HOLD_S = 120.0
#: ... and this much longer than the slowest hook's timeout: killing a command, recording the attempt.
CLAIM_MARGIN_S = 60.0
#: Deliveries one call of ``deliver_due`` sends at most.
_DELIVERY_BATCH = 20
_RETRYABLE = {408, 425, 429}
#: What an attempt that left its delivery in a state counts as (metrics.NOTIFICATION_OUTCOMES).
_ATTEMPT_OUTCOMES = {DeliveryState.DELIVERED: "delivered", DeliveryState.PENDING: "retrying",
                     DeliveryState.FAILED: "failed"}


def claim_hold_s(config: Config) -> float:
    """How long a claimed delivery is held: longer than any one attempt may take, the slowest hook's included."""
    slowest = max([defaults.HOOK_TIMEOUT_S, *(hook.timeout_s for repo in config.repos for hook in repo.hooks)])
    return max(CLAIM_HOLD_S, slowest + CLAIM_MARGIN_S)


def build_url(config: Config, build_id: int) -> str:
    """The link to a build, for statuses and hook messages (sent by workers: no request to take an address from)."""
    return links.build_url(links.base_url(config.server.public_url), build_id)


class Notifier:
    """Records what a build owes the outside world, and sends it."""

    def __init__(self, *, config: Config, builds: BuildStore, deliveries: DeliveryStore, redact: Redactor,
                 session: requests.Session | None = None, clock: Callable[[], float] = time.time,
                 rng: random.Random | None = None, metrics: Metrics | None = None) -> None:
        self.config = config
        self.metrics = metrics or Metrics.discarding()
        self.builds = builds
        self.deliveries = deliveries
        self.redact = redact
        self.session = session or requests.Session()
        self.clock = clock
        self.rng = rng or random.Random()

    # --- what a build owes ----------------------------------------------------

    def build_started(self, build: Build) -> None:
        """Owe the forge a pending status."""
        self._status(build, PENDING, "building the image")

    def build_finished(self, build: Build, *, state: BuildState, tags: tuple[str, ...], digest: str | None,
                       error: str | None) -> None:
        """Owe the forge the final status and, for a pushed image, each matching hook its message."""
        if state is BuildState.SUCCEEDED:
            self._status(build, SUCCESS, f"pushed {digest}")
        elif state is BuildState.SKIPPED:
            self._status(build, SUCCESS, f"skipped: {error}"[:140])
        else:
            self._status(build, FAILURE, (error or "the build failed")[:140])
        repo = self.config.repo(build.forge, build.repo)
        if state is not BuildState.SUCCEEDED or repo is None or digest is None:
            return
        if not build.ref:  # a build of a commit alone (pushbuild build REPO SHA) deploys nothing: it may be an old one
            return
        event = ImagePushed(repo=build.repo, forge=build.forge, ref=build.ref, sha=build.sha, image=repo.image,
                            tags=tags, digest=f"{repo.image}@{digest}", build_id=build.id,
                            build_url=build_url(self.config, build.id))
        for hook in repo.hooks:
            if hook.branches is not None and not (is_branch(build.ref) and matches_any(short_name(build.ref), hook.branches)):
                continue
            payload: dict[str, Any] = {"event": _event_json(event)}
            if hook.kind == "standard":
                payload["body"] = base64.b64encode(message_body(event, at=self.clock())).decode()
            self.deliveries.add(build_id=build.id, repo=build.repo, ref=build.ref, kind=DeliveryKind.HOOK.value, target=hook.name,
                                payload=payload)

    def _status(self, build: Build, state: str, description: str) -> None:
        repo = self.config.repo(build.forge, build.repo)
        if repo is None or repo.status is None:
            return
        self.deliveries.add(build_id=build.id, repo=build.repo, ref=build.ref, kind=DeliveryKind.STATUS.value,
                            target=repo.status.context,
                            payload={"state": state, "description": description, "sha": build.sha},
                            supersede_pending_of_build=True)

    # --- sending --------------------------------------------------------------

    def deliver_soon(self, build_id: int) -> None:
        """Send a build's due deliveries now, in the background, rather than at the next poll."""
        threading.Thread(target=self._deliver_quietly, args=(build_id,), name=f"deliver-{build_id}", daemon=True).start()

    def _deliver_quietly(self, build_id: int) -> None:
        try:
            self.deliver_due(build_id=build_id)
        except Exception:  # the poller retries; a background thread must not die noisily mid-build
            log.exception("sending the deliveries of build %s failed; the poller will retry", build_id)

    def deliver_due(self, *, build_id: int | None = None) -> int:
        """Send every delivery that is due (optionally only one build's); return how many were tried.

        Each is claimed just before it is sent, for longer than its attempt may take: claimed
        together, the last of a batch would still wait its turn when its hold ran out, and
        another worker would start it too.
        """
        hold_s = claim_hold_s(self.config)
        tried = 0
        while tried < _DELIVERY_BATCH:
            due = self.deliveries.claim_due(hold_s=hold_s, build_id=build_id, limit=1)
            if not due:
                break
            self.send(due[0])
            tried += 1
        return tried

    def redeliver(self, delivery_id: int) -> Delivery | None:
        """Send a delivery again now, whatever became of it before."""
        delivery = self.deliveries.reopen(delivery_id)
        if delivery is not None:
            self.send(delivery, ordered=False)
        return self.deliveries.get(delivery_id)

    def send(self, delivery: Delivery, *, ordered: bool = True) -> None:
        """Make one attempt at ``delivery`` and record it; never raises for the peer's failures."""
        build = self.builds.get(delivery.build_id)
        repo = self.config.repo(build.forge, build.repo) if build is not None else None
        if delivery.kind == DeliveryKind.HOOK and ordered and build is not None and self.builds.newer_success(build):
            log.info("delivery=%s superseded: a newer push of %s %s was built", delivery.id, delivery.repo, delivery.ref)
            self.deliveries.supersede(delivery)
            return
        started = self.clock()
        status_code, error = None, None
        try:
            status_code = self._attempt(delivery, repo)
        except _Unsendable as exc:
            self._record(delivery, DeliveryState.FAILED, started, None, str(exc))
            return
        except _PeerFailed as exc:
            error = str(exc)
        ok = status_code is not None and 200 <= status_code < 300
        if ok:
            self._record(delivery, DeliveryState.DELIVERED, started, status_code, None)
            return
        error = error or f"answered {status_code}"
        permanent = status_code is not None and 400 <= status_code < 500 and status_code not in _RETRYABLE
        attempts = delivery.attempts + 1
        if permanent or attempts >= self.config.server.delivery_attempts:
            self._record(delivery, DeliveryState.FAILED, started, status_code, error)
        else:
            self._record(delivery, DeliveryState.PENDING, started, status_code, error,
                         retry_at=self.clock() + self._backoff(attempts))

    def _backoff(self, attempts: int) -> float:
        """How long to wait after ``attempts`` failed attempts: :func:`~webhook.retrying.backoff_s` of the delivery settings."""
        server = self.config.server
        return backoff_s(attempts, base_s=server.delivery_retry_s, max_s=server.delivery_retry_max_s, rng=self.rng)

    def _record(self, delivery: Delivery, state: DeliveryState, started: float, status_code: int | None,
                error: str | None, retry_at: float | None = None) -> None:
        self.deliveries.record_attempt(delivery, state=state, at=started, duration_s=self.clock() - started,
                                       status_code=status_code, error=error, retry_at=retry_at)
        self.metrics.notification(delivery.kind, _ATTEMPT_OUTCOMES[state])
        log.info("delivery=%s build=%s kind=%s target=%s state=%s status=%s error=%s", delivery.id,
                 delivery.build_id, delivery.kind, delivery.target, state.value, status_code, error)

    def _attempt(self, delivery: Delivery, repo: RepoConfig | None) -> int:
        """Send once; return the HTTP status (a command's success is 200, its failure 500)."""
        if repo is None:
            raise _Unsendable(f"{delivery.repo} is no longer configured")
        if delivery.kind == DeliveryKind.STATUS:
            if repo.status is None:
                raise _Unsendable("the repository no longer reports statuses")
            return self._http(self._status_request(delivery, repo), defaults.HOOK_TIMEOUT_S)
        hook = next((h for h in repo.hooks if h.name == delivery.target), None)
        if hook is None:
            raise _Unsendable(f"hook {delivery.target!r} is no longer configured")
        event = ImagePushed(**{**delivery.payload["event"], "tags": tuple(delivery.payload["event"]["tags"])})
        if hook.kind == "command":
            return self._command(hook, event)
        if hook.kind == "keel":
            return self._http(keel_request(hook.url, event), hook.timeout_s)
        body = base64.b64decode(delivery.payload["body"])
        request = standard_request(hook.url, body, msg_id=f"pushbuild_{delivery.id}", timestamp=int(self.clock()),
                                   secret=hook.secret.reveal() if hook.secret else None,
                                   signing_key=hook.signing_key.reveal() if hook.signing_key else None)
        return self._http(request, hook.timeout_s)

    def _status_request(self, delivery: Delivery, repo: RepoConfig) -> OutboundRequest:
        return status_request(repo.status.api or repo.forge, api_url=repo.status.api_url, repo=repo.name, sha=delivery.payload["sha"],
                              state=delivery.payload["state"], target_url=build_url(self.config, delivery.build_id),
                              description=delivery.payload["description"], context=repo.status.context,
                              token=repo.status.token.reveal())

    def _http(self, request: OutboundRequest, timeout_s: float) -> int:
        """Send one request; a transport failure is recorded as its kind and the host, never the URL.

        Deploy services put keys in a hook URL's path and query, and exception texts quote the URL.
        """
        try:
            response = self.session.request(request.method, request.url, data=request.body, headers=request.headers,
                                            timeout=timeout_s, allow_redirects=False)
        except (requests.RequestException, OSError) as exc:
            raise _PeerFailed(f"{type(exc).__name__} reaching {urlsplit(request.url).hostname}") from exc
        return response.status_code

    def _command(self, hook: HookConfig, event: ImagePushed) -> int:
        """Run a command hook (argv, no shell) with the message on stdin; exit 0 is delivered.

        It runs in a session of its own, so its timeout kills the whole process group: nothing
        it started in the background outlives the attempt.
        """
        body = message_body(event, at=self.clock())
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PUSHBUILD_IMAGE": event.image,
               "PUSHBUILD_DIGEST": event.digest, "PUSHBUILD_SHA": event.sha, "PUSHBUILD_REF": event.ref,
               "PUSHBUILD_TAG": event.tag, "PUSHBUILD_REPO": event.repo, "PUSHBUILD_BUILD_ID": str(event.build_id)}
        try:
            process = subprocess.Popen(command_argv(hook.argv, event), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, env=env, start_new_session=True)
        except OSError as exc:
            raise _PeerFailed(f"{type(exc).__name__} starting the command {hook.argv[0]}") from exc
        with process:
            try:
                _, stderr = process.communicate(body, timeout=hook.timeout_s)
            except subprocess.TimeoutExpired as exc:
                try:  # the command is not reaped yet, so its process group id is still its own
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                raise _PeerFailed(f"TimeoutExpired: the command ran over {hook.timeout_s:g}s and was killed") from exc
        if process.returncode != 0:
            # Its output may quote anything it was given: it goes to the worker's log, not the API.
            log.warning("hook %s exited with status %s: %s", hook.name, process.returncode,
                        self.redact(stderr.decode("utf-8", "replace").strip()[-2000:]))
            raise _PeerFailed(f"exit status {process.returncode} (its output is in the worker's log)")
        return 200


class _Unsendable(Exception):
    """The delivery can never be sent as configured now."""


class _PeerFailed(Exception):
    """An attempt failed on the way or at the other end; retried like a server error. Safe to show."""


def _event_json(event: ImagePushed) -> dict[str, Any]:
    return {"repo": event.repo, "forge": event.forge, "ref": event.ref, "sha": event.sha, "image": event.image,
            "tags": list(event.tags), "digest": event.digest, "build_id": event.build_id, "build_url": event.build_url}
