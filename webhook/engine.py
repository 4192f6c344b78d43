"""The Docker engine: building a streamed context, tagging, pushing. Adapter over docker-py.

docker-py reports build and push failures *inside* the JSON stream without raising; they
are detected here and raised as :class:`EngineError` / :class:`RegistryError`, and every
docker-py or transport exception is translated the same way.
"""

from __future__ import annotations

import functools
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import docker
import requests
import urllib3
from docker.errors import DockerException

from .config import EngineConfig
from .errors import EngineError, RegistryError
from .rules import BuildPlan

Log = Callable[[str], None]


@dataclass(frozen=True)
class BuildLimits:
    """What one build may take: time always; memory and CPU on the classic builder's step containers."""

    timeout_s: float
    memory_bytes: int | None = None
    cpu_shares: int | None = None


@dataclass(frozen=True)
class LocalImage:
    """An image on the engine, as housekeeping sees it: its id, names, creation time and labels."""

    id: str
    tags: tuple[str, ...]
    created: float
    labels: Mapping[str, str]

    @classmethod
    def from_listing(cls, entry: Mapping[str, Any]) -> LocalImage:
        """Build the value from one entry of the engine's image list (older engines name untagged images ``<none>``)."""
        tags = tuple(t for t in entry.get("RepoTags") or () if t != "<none>:<none>")
        return cls(id=entry["Id"], tags=tags, created=float(entry.get("Created") or 0),
                   labels=dict(entry.get("Labels") or {}))


def _split_image(reference: str) -> tuple[str, str]:
    """Split ``repo:tag`` into its repository and tag (a registry port is not a tag)."""
    repository, _, tag = reference.rpartition(":")
    if not repository or "/" in tag:
        raise ValueError(f"{reference!r} has no tag")
    return repository, tag


def _engine_error(what: str, exc: Exception) -> EngineError:
    """Translate a docker-py failure, noting whether the engine itself was unreachable."""
    unreachable = isinstance(exc, (requests.ConnectionError, urllib3.exceptions.ProtocolError))
    return EngineError(f"{what}: {exc}", unreachable=unreachable)


def took_too_long(timeout_s: float) -> EngineError:
    """The error of a build stopped at its deadline, whichever builder ran it."""
    return EngineError(f"the build took longer than {timeout_s:g}s and was stopped")


def within_deadline(chunks: Iterable[bytes], *, deadline: float, timeout_s: float) -> Iterator[bytes]:
    """Pass a build context's ``chunks`` on until ``deadline`` (``time.monotonic``), then stop the build.

    docker-py sends the whole context before it reads a line of the engine's answer, so a
    context still streaming at the deadline is stopped here; the engine, its request cut
    short, builds nothing.
    """
    for chunk in chunks:
        if time.monotonic() > deadline:
            raise took_too_long(timeout_s)
        yield chunk


def _timed_out(exc: BaseException) -> bool:
    """Say whether a transport error was a socket timeout, however deeply requests and urllib3 wrapped it."""
    pending, seen = [exc], set()
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, (TimeoutError, urllib3.exceptions.TimeoutError)):
            return True
        pending += [arg for arg in current.args if isinstance(arg, BaseException)]
        pending += [linked for linked in (current.__cause__, current.__context__) if linked is not None]
    return False


def _message(line: Mapping[str, Any]) -> str:
    """Return the error text of a stream line."""
    detail = line.get("errorDetail") or {}
    return str(detail.get("message") or line.get("error") or "unknown error").strip()


class Engine:
    """One Docker engine, reached through docker-py's low-level client."""

    def __init__(self, client: docker.APIClient, *, config: EngineConfig | None = None) -> None:
        self.client = client
        self.config = config or EngineConfig()

    @classmethod
    def connect(cls, config: EngineConfig) -> Engine:
        """Connect to the configured engine, or the one the environment names (DOCKER_HOST)."""
        try:
            kwargs = {"base_url": config.base_url} if config.base_url else docker.utils.kwargs_from_env()
            return cls(docker.APIClient(**kwargs, version="auto", timeout=config.timeout_s), config=config)
        except (DockerException, requests.RequestException) as exc:
            raise EngineError(f"cannot reach the Docker engine: {exc}") from exc

    @property
    def host(self) -> str | None:
        """The engine address for the docker CLI, or ``None`` to let the CLI use its own default."""
        return self.config.base_url or os.environ.get("DOCKER_HOST")

    @functools.cached_property
    def build_network(self) -> str | None:
        """The network RUN steps use: as configured, else the engine's bridge, else none at all.

        Never the host's unless configured: a RUN step is code from whoever pushed the branch,
        and the host's network would give it every loopback service of the build host.
        """
        if self.config.build_network is not None:
            return self.config.build_network
        try:
            has_bridge = bool(self.client.networks(names=["bridge"]))
        except (DockerException, requests.RequestException) as exc:
            raise EngineError(f"cannot list the engine's networks: {exc}") from exc
        return None if has_bridge else "none"

    def ping(self) -> None:
        """Raise :class:`EngineError` unless the engine answers."""
        try:
            self.client.ping()
        except (DockerException, requests.RequestException) as exc:
            raise EngineError(f"the Docker engine does not answer: {exc}", unreachable=True) from exc

    def _went_away(self, *, settle_s: float = 1.0) -> bool:
        """Say whether the engine stopped answering just after a failure."""
        time.sleep(settle_s)
        try:
            self.ping()
        except EngineError:
            return True
        return False

    def wait_until_up(self, *, timeout_s: float, sleep: Callable[[float], None] = time.sleep) -> None:
        """Wait for the engine to answer again (after a restart); raise if it does not within ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self.ping()
                return
            except EngineError:
                if time.monotonic() > deadline:
                    raise
                sleep(1.0)

    def image_id(self, reference: str) -> str | None:
        """Return the id of a local image, or ``None`` if the engine has none by that name."""
        try:
            return self.client.inspect_image(reference)["Id"]
        except docker.errors.ImageNotFound:
            return None
        except (DockerException, requests.RequestException) as exc:
            raise _engine_error(f"cannot inspect {reference}", exc) from exc

    def build(self, context: Iterable[bytes], *, tag: str, plan: BuildPlan, labels: Mapping[str, str],
              log: Log, limits: BuildLimits) -> str:
        """Build from a streamed tar ``context`` as ``plan`` says, tag the image ``tag``, and return its id.

        The build is abandoned at ``limits.timeout_s``: a context still streaming by the check
        before each chunk (a write the engine does not take, by the socket timeout), a silent
        step by the read timeout, a talkative one by the check after each line; the engine
        cancels a build whose client is gone.
        """
        image_id = None
        deadline = time.monotonic() + limits.timeout_s
        socket_timeout_s = min(self.config.timeout_s, limits.timeout_s)
        container_limits = {}
        if limits.memory_bytes:
            container_limits.update(memory=limits.memory_bytes, memswap=limits.memory_bytes)
        if limits.cpu_shares:
            container_limits["cpushares"] = limits.cpu_shares
        try:
            stream = self.client.build(
                fileobj=within_deadline(context, deadline=deadline, timeout_s=limits.timeout_s),
                custom_context=True, tag=tag, dockerfile=plan.dockerfile,
                target=plan.target, buildargs=dict(plan.build_args) or None, platform=plan.platform,
                cache_from=list(plan.cache_from) or None, labels=dict(labels), rm=True, forcerm=True,
                network_mode=self.build_network, decode=True, use_config_proxy=False,
                container_limits=container_limits or None, timeout=socket_timeout_s,
            )
            for line in stream:
                if time.monotonic() > deadline:
                    stream.close()
                    raise took_too_long(limits.timeout_s)
                if "error" in line or "errorDetail" in line:
                    # An engine shutting down fails its builds with odd errors before it goes:
                    # if it is gone a moment later, that was the cause, not the Dockerfile.
                    raise EngineError(_message(line), unreachable=self._went_away())
                if text := line.get("stream"):
                    log(text)  # as the engine sent it: a busy engine splits output lines across messages
                elif status := line.get("status"):
                    log(status if status.endswith("\n") else status + "\n")
                aux = line.get("aux")
                if isinstance(aux, Mapping) and aux.get("ID"):
                    image_id = aux["ID"]
        except (requests.exceptions.ReadTimeout, urllib3.exceptions.ReadTimeoutError) as exc:
            if time.monotonic() >= deadline - 1:
                raise took_too_long(limits.timeout_s) from exc
            raise EngineError(f"the engine said nothing for {self.config.timeout_s:g}s; the build was stopped") from exc
        except (requests.ConnectionError, urllib3.exceptions.ProtocolError) as exc:
            if _timed_out(exc) and not isinstance(exc, requests.ConnectTimeout):  # a write the engine did not take
                if time.monotonic() >= deadline - 1:
                    raise took_too_long(limits.timeout_s) from exc
                raise EngineError(f"the engine took none of the context for {socket_timeout_s:g}s; "
                                  "the build was stopped") from exc
            raise EngineError(f"the engine went away during the build: {exc}", unreachable=True) from exc
        except (DockerException, requests.RequestException, urllib3.exceptions.HTTPError) as exc:
            raise EngineError(f"the build failed on the engine: {exc}") from exc
        if image_id is None:
            image_id = self.image_id(tag)
        if image_id is None:
            raise EngineError("the engine finished the build without reporting an image")
        return image_id

    def pull(self, reference: str, *, auth: Mapping[str, str] | None, log: Log) -> bool:
        """Pull ``reference`` (``repo:tag``) from its registry; say whether it is now local. Never raises."""
        repository, tag = _split_image(reference)
        try:
            for line in self.client.pull(repository, tag=tag, auth_config=dict(auth) if auth else None,
                                         stream=True, decode=True):
                if "error" in line or "errorDetail" in line:
                    log(f"cannot pull {reference}: {_message(line)}\n")
                    return False
        except (DockerException, requests.RequestException) as exc:
            log(f"cannot pull {reference}: {exc}\n")
            return False
        return True

    def labels(self, image_id: str) -> dict[str, str]:
        """Return the labels of a local image (none if it is gone)."""
        try:
            return dict(self.client.inspect_image(image_id)["Config"].get("Labels") or {})
        except docker.errors.ImageNotFound:
            return {}
        except (DockerException, requests.RequestException) as exc:
            raise _engine_error(f"cannot inspect {image_id}", exc) from exc

    def tag(self, image_id: str, reference: str) -> None:
        """Give the image ``image_id`` the name ``reference`` (``repo:tag``)."""
        repository, tag = _split_image(reference)
        try:
            self.client.tag(image_id, repository, tag, force=True)
        except (DockerException, requests.RequestException) as exc:
            raise _engine_error(f"cannot tag {reference}", exc) from exc

    def images(self, *, label: str | None = None, dangling: bool = False) -> list[LocalImage]:
        """List the engine's top-level images carrying ``label``, or the dangling ones (no name at all)."""
        filters: dict[str, Any] = {"dangling": True} if dangling else {}
        if label is not None:
            filters["label"] = label
        try:
            return [LocalImage.from_listing(entry) for entry in self.client.images(filters=filters)]
        except (DockerException, requests.RequestException) as exc:
            raise _engine_error("cannot list images", exc) from exc

    def remove_image(self, reference: str) -> bool:
        """Remove a name (``repo:tag``; the image goes with its last name) or an unnamed image by id.

        Say whether it was removed: an image already gone (another worker removed it), in use by
        a container or the parent of another image is left alone.
        """
        try:
            self.client.remove_image(reference)
        except docker.errors.ImageNotFound:
            return False
        except docker.errors.APIError as exc:
            if exc.status_code == 409:
                return False
            raise _engine_error(f"cannot remove {reference}", exc) from exc
        except (DockerException, requests.RequestException) as exc:
            raise _engine_error(f"cannot remove {reference}", exc) from exc
        return True

    def prune_build_cache(self, max_bytes: int) -> int:
        """Cut the build cache no image uses to ``max_bytes``, least recently used first; return the bytes freed.

        Engine API 1.48 renamed ``keep-storage`` and added ``max-used-space``, the limit meant
        here; older engines (Debian's docker.io 20.10 speaks 1.41) take ``keep-storage``, which
        BuildKit applies the same way. Engines before 1.39 cannot limit it: nothing is pruned.
        """
        version = self.client.api_version
        try:
            if docker.utils.version_lt(version, "1.39"):
                return 0
            if docker.utils.version_lt(version, "1.48"):
                result = self.client.prune_builds(keep_storage=max_bytes, all=True)
            else:  # docker-py 7 knows only keep-storage, which these engines no longer read
                response = self.client._post(self.client._url("/build/prune"),
                                             params={"all": True, "max-used-space": max_bytes})
                result = self.client._result(response, True)
        except (DockerException, requests.RequestException) as exc:
            raise _engine_error("cannot prune the build cache", exc) from exc
        return int((result or {}).get("SpaceReclaimed") or 0)

    def push(self, reference: str, *, auth: Mapping[str, str] | None, log: Log) -> str:
        """Push ``reference`` to its registry and return the manifest digest the registry reported."""
        repository, tag = _split_image(reference)
        digest = None
        try:
            stream = self.client.push(repository, tag=tag, auth_config=dict(auth) if auth else None,
                                      stream=True, decode=True)
            for line in _progress_filtered(stream):
                if "error" in line or "errorDetail" in line:
                    message = _message(line)
                    raise RegistryError(f"pushing {reference} failed: {message}", temporary=is_temporary(message))
                aux = line.get("aux")
                if isinstance(aux, Mapping) and aux.get("Digest"):
                    digest = aux["Digest"]
                elif line.get("status"):
                    log(f"{line.get('id', '')}{': ' if line.get('id') else ''}{line['status']}\n")
        except (DockerException, requests.RequestException, urllib3.exceptions.HTTPError) as exc:
            raise RegistryError(f"pushing {reference} failed: {exc}", temporary=is_temporary(str(exc))) from exc
        if digest is None:
            raise RegistryError(f"the registry did not report a digest for {reference}")
        return digest


#: Registry answers that retrying cannot change: credentials, permissions, malformed content.
_PERMANENT = re.compile(r"unauthori[sz]ed|authentication required|denied|forbidden|not allowed|unsupported|"
                        r"(name|manifest|tag|digest|blob upload) (invalid|unknown)", re.IGNORECASE)
_HTTP_STATUS = re.compile(r"\b([45]\d\d)\b")


def is_temporary(message: str) -> bool:
    """Say whether a registry failure is worth retrying (unreachable, 5xx, 408, 429, timeouts), not a refusal.

    An HTTP status in the message decides; otherwise the registry's own words do.
    """
    codes = _HTTP_STATUS.findall(message)
    if codes:
        return any(code.startswith("5") or code in ("408", "429") for code in codes)
    return not _PERMANENT.search(message)


def _progress_filtered(stream: Iterable[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
    """Drop the per-chunk progress lines of a push: they say nothing a log reader needs."""
    for line in stream:
        if line.get("progressDetail") and line.get("status") in ("Pushing", "Preparing", "Waiting"):
            continue
        yield line
