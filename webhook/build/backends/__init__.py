"""Build backends: one interface, one module per backend, one registry by name.

A repository's ``builder = "<name>"`` picks ``BACKENDS[name]``, and the configuration allows
exactly the names here. Every backend implements :class:`BuildBackend` (``from_engine`` and
``build``); the pipeline makes one per build with :func:`open_backend` and knows no backend
by name. A new backend is a module in this package and one entry in :data:`BACKENDS`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from .base import BuildBackend, BuildLimits, took_too_long, within_deadline
from .buildkit import BuildKitBackend
from .classic import ClassicBackend

if TYPE_CHECKING:
    from ..engine import Engine

__all__ = ["BACKENDS", "BuildBackend", "BuildKitBackend", "BuildLimits", "ClassicBackend", "open_backend",
           "took_too_long", "within_deadline"]

#: Every backend, by the name a repository's ``builder`` gives it.
BACKENDS: dict[str, type[BuildBackend]] = {
    "classic": ClassicBackend,
    "buildkit": BuildKitBackend,
}


def open_backend(name: str, engine: Engine, *, auth: Mapping[str, str] | None, secrets: Mapping[str, str]) -> BuildBackend:
    """Make the backend ``name`` for one build on ``engine``: the one place a backend is constructed.

    ``auth`` is the registry's credentials (cache images, base images); ``secrets`` the
    repository's build secrets by id, which only a backend that ``takes_secrets`` is given.
    """
    return BACKENDS[name].from_engine(engine, auth=auth, secrets=secrets)
