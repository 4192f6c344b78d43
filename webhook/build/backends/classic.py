"""The classic builder: the engine's own build endpoint, driven through docker-py.

The context streams to the engine as it is read from the mirror. docker-py reports a failed
step *inside* the JSON stream without raising; it is detected here and raised as
:class:`EngineError`, as is every docker-py or transport exception. Cache images
(``cache_from``) are used only if they are local, so they are pulled first.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

import requests
import urllib3
from docker.errors import DockerException

from ...errors import EngineError
from ...logs import Log
from ..engine import stream_error
from .base import BuildLimits, took_too_long, within_deadline

if TYPE_CHECKING:
    from ...rules import BuildPlan
    from ..engine import Engine


class ClassicBackend:
    """Builds on the engine's classic builder, with memory and CPU limits on each step's container."""

    #: The classic builder has no build secrets; the configuration refuses ``secrets_env`` with it.
    takes_secrets = False

    def __init__(self, engine: Engine, *, auth: Mapping[str, str] | None) -> None:
        self.engine = engine
        self.auth = auth

    @classmethod
    def from_engine(cls, engine: Engine, *, auth: Mapping[str, str] | None,
                    secrets: Mapping[str, str]) -> ClassicBackend:
        """Build on ``engine`` itself, pulling cache images with ``auth``; ``secrets`` it cannot use (there are none)."""
        return cls(engine, auth=auth)

    def build(self, context: Iterable[bytes], *, plan: BuildPlan, labels: Mapping[str, str], limits: BuildLimits,
              log: Log) -> str:
        """Pull the plan's cache images, then build from a streamed tar ``context`` and return the image's id.

        The build is abandoned at ``limits.timeout_s``: a context still streaming by the check
        before each chunk (a write the engine does not take, by the socket timeout), a silent
        step by the read timeout, a talkative one by the check after each line; the engine
        cancels a build whose client is gone.
        """
        engine, tag = self.engine, plan.tags[0]
        for image in plan.cache_from:  # the classic builder only uses cache images it has locally
            log(f"pulling cache image {image}\n")
            engine.pull(image, auth=self.auth, log=log)
        image_id = None
        deadline = time.monotonic() + limits.timeout_s
        socket_timeout_s = min(engine.config.timeout_s, limits.timeout_s)
        container_limits = {}
        if limits.memory_bytes:
            container_limits.update(memory=limits.memory_bytes, memswap=limits.memory_bytes)
        if limits.cpu_shares:
            container_limits["cpushares"] = limits.cpu_shares
        try:
            stream = engine.client.build(
                fileobj=within_deadline(context, deadline=deadline, timeout_s=limits.timeout_s),
                custom_context=True, tag=tag, dockerfile=plan.dockerfile,
                target=plan.target, buildargs=dict(plan.build_args) or None, platform=plan.platform,
                cache_from=list(plan.cache_from) or None, labels=dict(labels), rm=True, forcerm=True,
                network_mode=engine.build_network, decode=True, use_config_proxy=False,
                container_limits=container_limits or None, timeout=socket_timeout_s,
            )
            for line in stream:
                if time.monotonic() > deadline:
                    stream.close()
                    raise took_too_long(limits.timeout_s)
                if (message := stream_error(line)) is not None:
                    # An engine shutting down fails its builds with odd errors before it goes:
                    # if it is gone a moment later, that was the cause, not the Dockerfile.
                    raise EngineError(message, unreachable=engine.went_away())
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
            raise EngineError(f"the engine said nothing for {engine.config.timeout_s:g}s; the build was stopped") from exc
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
            image_id = engine.image_id(tag)
        if image_id is None:
            raise EngineError("the engine finished the build without reporting an image")
        return image_id


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
