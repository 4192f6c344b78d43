"""The Docker engine and its images: ping, inspect, pull, tag, push, list, remove, prune. Adapter over docker-py.

Building is a backend's (:mod:`webhook.build.backends`); they build on this connection. docker-py
reports pull and push failures *inside* the JSON stream without raising; they are detected
here (:func:`stream_error`) and raised as :class:`RegistryError`, and every docker-py or
transport exception is translated to :class:`EngineError` / :class:`RegistryError`.
"""

from __future__ import annotations

import functools
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import docker
import requests
import urllib3
from docker.errors import DockerException

from ..errors import EngineError, RegistryError
from ..logs import Log
from ..refs import split_image

if TYPE_CHECKING:  # the configuration reads the backends' registry, and they build on this module
    from ..config import EngineConfig


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


def _repository_and_tag(reference: str) -> tuple[str, str]:
    """Split ``repo:tag`` for docker-py, which takes them apart; a reference without a tag is refused."""
    repository, tag = split_image(reference)
    if not repository or tag is None:
        raise ValueError(f"{reference!r} has no tag")
    return repository, tag


def _engine_error(what: str, exc: Exception) -> EngineError:
    """Translate a docker-py failure, noting whether the engine itself was unreachable."""
    unreachable = isinstance(exc, (requests.ConnectionError, urllib3.exceptions.ProtocolError))
    return EngineError(f"{what}: {exc}", unreachable=unreachable)


def stream_error(line: Mapping[str, Any]) -> str | None:
    """Return the error text of a line of docker-py's JSON stream, or ``None`` if it reports none."""
    if "error" not in line and "errorDetail" not in line:
        return None
    detail = line.get("errorDetail") or {}
    return str(detail.get("message") or line.get("error") or "unknown error").strip()


class Engine:
    """One Docker engine, reached through docker-py's low-level client."""

    def __init__(self, client: docker.APIClient, *, config: EngineConfig) -> None:
        self.client = client
        self.config = config

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

    def went_away(self, *, settle_s: float = 1.0) -> bool:
        """Say whether the engine stopped answering just after a failure (a build's, say)."""
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

    def pull(self, reference: str, *, auth: Mapping[str, str] | None, log: Log) -> bool:
        """Pull ``reference`` (``repo:tag``) from its registry; say whether it is now local. Never raises."""
        repository, tag = _repository_and_tag(reference)
        try:
            for line in self.client.pull(repository, tag=tag, auth_config=dict(auth) if auth else None,
                                         stream=True, decode=True):
                if (message := stream_error(line)) is not None:
                    log(f"cannot pull {reference}: {message}\n")
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
        repository, tag = _repository_and_tag(reference)
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
        repository, tag = _repository_and_tag(reference)
        digest = None
        try:
            stream = self.client.push(repository, tag=tag, auth_config=dict(auth) if auth else None,
                                      stream=True, decode=True)
            for line in _progress_filtered(stream):
                if (message := stream_error(line)) is not None:
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
