"""What a forge is to pushbuild: the parts every forge module defines, as one value. Performs no I/O.

A :class:`Forge` is checked whole when it is made: a module that leaves out a part, or gives
one of the wrong kind, fails at import, not when the first delivery needs the missing part.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from ..events import Parsed

#: The states pushbuild reports on a commit; each status API maps them to its own words.
PENDING, SUCCESS, FAILURE = "pending", "success", "failure"
STATES = (PENDING, SUCCESS, FAILURE)
#: What a status API's body fields may be filled from.
STATUS_VALUES = frozenset({"state", "url", "description", "context"})

_NAME = re.compile(r"[a-z][a-z0-9-]*")


@dataclass(frozen=True)
class DeliveryKeys:
    """What one repository's deliveries are verified with: its webhook secret, and GitLab's signing token."""

    name: str
    secret: str | None
    signing_token: str | None = None


@dataclass(frozen=True)
class Clock:
    """The time and tolerance a timestamped signature is checked against."""

    now: float
    tolerance_s: float


#: Extracts the signed message from the (lowercased) headers and raw body.
SignedBytes = Callable[[Mapping[str, str], bytes], bytes]
#: Checks the signed message against one repository's secrets, or raises :class:`SignatureError`.
Check = Callable[[Mapping[str, str], bytes, DeliveryKeys, Clock], None]
#: Turns a verified, decoded delivery into the pushes to build, or says why it builds nothing.
Parser = Callable[[Mapping[str, str], Mapping[str, Any]], Parsed]


@dataclass(frozen=True)
class StatusApi:
    """One commit status endpoint, as data: ``POST {api_url}{path}`` with a JSON body."""

    #: What ``[repos.status] api`` calls it.
    name: str
    #: Appended to the API URL; ``{repo}`` and ``{sha}`` are filled in.
    path: str
    #: The header that carries the token, and its value with ``{token}``.
    auth: tuple[str, str]
    #: The API's body field → ours: state, url, description or context.
    fields: Mapping[str, str]
    #: Our state (:data:`STATES`) → the API's word for it.
    states: Mapping[str, str]
    #: The API URL when the configuration gives none; ``None`` means every server has its own.
    default_url: str | None = None
    #: Whether ``{repo}`` is percent-encoded whole (``group%2Fsub%2Fapp``).
    quote_repo: bool = False
    #: Further headers every request carries.
    headers: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _require(bool(_NAME.fullmatch(self.name)), f"status API name {self.name!r} must be lowercase letters, digits and -")
        _require(set(self.states) == set(STATES), f"status API {self.name}: states must map exactly {', '.join(STATES)}")
        _require(set(self.fields.values()) <= STATUS_VALUES,
                 f"status API {self.name}: fields may only be filled from {', '.join(sorted(STATUS_VALUES))}")
        _require("{sha}" in self.path, f"status API {self.name}: the path must name the commit ({{sha}})")


@dataclass(frozen=True)
class Forge:
    """One forge family, whole: how its deliveries are verified and read, where statuses go, how git signs in.

    The registry (:mod:`webhook.forges`) is the only table of forges; everything else reads it.
    """

    #: The endpoint (``POST /hooks/<name>``) and the ``forge`` a repository is configured with.
    name: str
    #: Lowercased headers that carry a signature or token: a delivery that repeats one is refused.
    signature_headers: frozenset[str]
    #: Extracts the signed message from a delivery, once however many secrets are checked (it may decode 25 MB).
    signed_bytes: SignedBytes
    #: Checks the signed message against one repository's secrets.
    check: Check
    #: Reads a verified delivery's decoded payload.
    parse: Parser
    #: The commit status APIs a repository on this forge may report to; the first is the default.
    status_apis: tuple[StatusApi, ...]
    #: The user name git gives beside an access token over HTTPS (a repository's ``git_username`` overrides it).
    git_username: str
    #: Where a commit's page is below a repository's web address (``{sha}`` is the commit).
    commit_path: str = "/commit/{sha}"
    #: How to add the webhook in the forge's settings, step by step (``{url}`` is pushbuild's endpoint).
    webhook_steps: tuple[str, ...] = ()
    #: Other names for the same forge (Forgejo and Gogs for Gitea), accepted wherever ``name`` is.
    aliases: tuple[str, ...] = ()
    #: Whether a repository may give ``signing_token_env`` (Standard Webhooks), beside or instead of its secret.
    signing_token: bool = False
    #: What start-up warns of a repository configured without a signing token; ``None`` when that is safe.
    unsigned_warning: str | None = None

    def __post_init__(self) -> None:
        for name in (self.name, *self.aliases):
            _require(isinstance(name, str) and bool(_NAME.fullmatch(name)),
                     f"forge name {name!r} must be lowercase letters, digits and -")
        _require(isinstance(self.aliases, tuple), f"forge {self.name}: aliases must be a tuple")
        _require(isinstance(self.signature_headers, frozenset) and bool(self.signature_headers)
                 and all(isinstance(h, str) and h == h.lower() for h in self.signature_headers),
                 f"forge {self.name}: signature_headers must be a non-empty frozenset of lowercased header names")
        for part in ("signed_bytes", "check", "parse"):
            _require(callable(getattr(self, part)), f"forge {self.name}: {part} must be callable")
        _require(isinstance(self.status_apis, tuple) and bool(self.status_apis)
                 and all(isinstance(api, StatusApi) for api in self.status_apis),
                 f"forge {self.name}: status_apis must be a non-empty tuple of StatusApi")
        _require(isinstance(self.git_username, str) and bool(self.git_username),
                 f"forge {self.name}: git_username must be a non-empty string")
        _require(self.unsigned_warning is None or self.signing_token,
                 f"forge {self.name}: unsigned_warning needs signing_token = True")

    @property
    def status_api_names(self) -> tuple[str, ...]:
        """The names ``[repos.status] api`` may take for a repository on this forge, the default first."""
        return tuple(api.name for api in self.status_apis)


#: The parts every forge must give (the dataclass refuses to be made without them).
REQUIRED_PARTS = tuple(f.name for f in fields(Forge) if f.default is MISSING and f.default_factory is MISSING)


def _require(condition: bool, message: str) -> None:
    """Refuse an incomplete or malformed forge definition, at import."""
    if not condition:
        raise TypeError(message)
