"""The forges pushbuild serves: one module per forge, and the one table of them everything else reads.

Each module (:mod:`.github`, :mod:`.gitlab`, :mod:`.gitea` for Gitea, Forgejo and Gogs,
:mod:`.bitbucket` for Cloud and Data Center) defines one :class:`~.base.Forge`: its signature
check and the bytes it signs, its payload parser, its commit status API(s) and the git user name
for token clones. None of them performs I/O (as gidgethub's ``sansio``).

:data:`REGISTRY` lists them by name; :func:`forge` resolves a name or alias, and
:func:`status_api` a ``[repos.status] api``. Adding a forge is a module defining ``FORGE``, its
entry in :data:`ALL`, and test fixtures: every table below is derived from the forges.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

from ..errors import UnknownForge
from . import bitbucket, gitea, github, gitlab
from .base import FAILURE, PENDING, REQUIRED_PARTS, STATES, SUCCESS, Clock, DeliveryKeys, Forge, StatusApi
from .signing import signed_for

__all__ = [
    "ALIASES", "ALL", "FAILURE", "FORGES", "NAMES", "PENDING", "REGISTRY", "REQUIRED_PARTS", "SIGNATURE_HEADERS", "STATES",
    "SUCCESS", "Clock", "Forge", "DeliveryKeys", "StatusApi", "forge", "index", "signed_for", "status_api",
]


def index(forges: Iterable[Forge]) -> tuple[Mapping[str, Forge], Mapping[str, StatusApi]]:
    """Index ``forges`` by every name they answer to, and their status APIs by name.

    Raises :class:`ValueError` at import when two forges claim one name, or two status APIs one name.
    """
    by_name: dict[str, Forge] = {}
    apis: dict[str, StatusApi] = {}
    for entry in forges:
        if not isinstance(entry, Forge):
            raise TypeError(f"{entry!r} is not a Forge")
        for name in (entry.name, *entry.aliases):
            if name in by_name:
                raise ValueError(f"forge name {name!r} is claimed by both {by_name[name].name} and {entry.name}")
            by_name[name] = entry
        for api in entry.status_apis:
            if api.name in apis:
                raise ValueError(f"status API {api.name!r} is defined twice")
            apis[api.name] = api
    return MappingProxyType(by_name), MappingProxyType(apis)


#: Every forge, in the order messages list them.
ALL: tuple[Forge, ...] = (github.FORGE, gitlab.FORGE, gitea.FORGE, bitbucket.FORGE)
_BY_NAME, _STATUS_APIS = index(ALL)

#: The forges by their own names (one entry per forge; aliases resolve through :func:`forge`).
REGISTRY: Mapping[str, Forge] = MappingProxyType({entry.name: entry for entry in ALL})
#: The forges' own names.
FORGES: tuple[str, ...] = tuple(REGISTRY)
#: Other names users know forges by → the forge's own name.
ALIASES: Mapping[str, str] = MappingProxyType({alias: entry.name for entry in ALL for alias in entry.aliases})
#: Every name a forge answers to: its own, then the aliases.
NAMES: tuple[str, ...] = (*FORGES, *ALIASES)
#: Headers that carry a signature or token, on any forge; a delivery that repeats one is refused.
SIGNATURE_HEADERS: frozenset[str] = frozenset().union(*(entry.signature_headers for entry in ALL))


def forge(name: str) -> Forge:
    """Return the forge called ``name`` (its own name or an alias), or raise :class:`UnknownForge`."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise UnknownForge(f"no such forge: {name!r} (known: {', '.join(NAMES)})") from None


def status_api(name: str) -> StatusApi:
    """Return the commit status API called ``name``, or raise :class:`UnknownForge`."""
    try:
        return _STATUS_APIS[name]
    except KeyError:
        raise UnknownForge(f"no such status API: {name!r} (known: {', '.join(_STATUS_APIS)})") from None
