"""What every build backend is: the interface, the limits a build runs under, and its deadline."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Protocol

from ...errors import EngineError
from ...logs import Log

if TYPE_CHECKING:
    from ...rules import BuildPlan
    from ..engine import Engine


@dataclass(frozen=True)
class BuildLimits:
    """What one build may take: time always; memory and CPU on the classic builder's step containers."""

    timeout_s: float
    memory_bytes: int | None = None
    cpu_shares: int | None = None


class BuildBackend(Protocol):
    """A way of building an image from a streamed context: one module of :mod:`webhook.build.backends` each.

    A backend is made for one build by :func:`~webhook.build.backends.open_backend`, from the engine
    connection, the registry credentials and the repository's build secrets.
    """

    #: Whether RUN steps can be given build secrets (a repository's ``secrets_env``).
    takes_secrets: ClassVar[bool]

    @classmethod
    def from_engine(cls, engine: Engine, *, auth: Mapping[str, str] | None,
                    secrets: Mapping[str, str]) -> BuildBackend:
        """Make the backend for one build on ``engine``; ``auth`` for the registry, ``secrets`` by id."""
        ...

    def build(self, context: Iterable[bytes], *, plan: BuildPlan, labels: Mapping[str, str], limits: BuildLimits,
              log: Log) -> str:
        """Build the tar stream ``context`` as ``plan`` says, tag the image ``plan.tags[0]``, and return its id.

        Every line of the build's output goes to ``log``; when ``log`` raises (the build was
        cancelled), the build stops and the exception propagates. Past ``limits.timeout_s`` the
        build stops with :func:`took_too_long`. Failures are :class:`~webhook.errors.EngineError`,
        ``unreachable`` when the engine went away (the pipeline then waits for it and builds again);
        a context that turns out unsafe raises its own :class:`~webhook.errors.ContextError`.
        """
        ...


def took_too_long(timeout_s: float) -> EngineError:
    """The error of a build stopped at its deadline, whichever backend ran it."""
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
