"""Who is asking, and what they may do. Performs no I/O.

Every endpoint but ``/hooks/*`` (signed by the forges) and ``/healthz`` needs a credential:

- a bearer token from ``[[auth.tokens]]`` (``Authorization: Bearer <token>``), or the same token
  in the sign-in cookie a browser gets from ``/?token=…``;
- or, only from a ``trusted_proxies`` address, a user name in ``trusted_header`` (an SSO proxy
  such as oauth2-proxy or Authelia sets it).

Scopes are ordered: ``metrics`` may only scrape ``/metrics`` (a monitoring system's token);
``read`` sees builds, logs, deliveries and metrics; ``operate`` may also retry, cancel,
redeliver and start builds. Tokens are compared as SHA-256 digests in constant
time, and only a token's name is ever shown.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

METRICS, READ, OPERATE = "metrics", "read", "operate"
#: Every scope, lowest first: each includes those before it.
SCOPES = (METRICS, READ, OPERATE)
#: Shortest token accepted in the configuration: guessing must be hopeless, even without rate limits.
MIN_TOKEN_CHARS = 32

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Principal:
    """Someone authenticated: a token's name or a proxy's user, with the scope they hold."""

    name: str
    scope: str
    #: How they proved it: ``token`` (header), ``cookie`` (the browser sign-in) or ``proxy``.
    via: str

    def may(self, scope: str) -> bool:
        """Say whether this principal's scope includes ``scope``."""
        return SCOPES.index(self.scope) >= SCOPES.index(scope)


@dataclass(frozen=True)
class TokenEntry:
    """One configured token, kept as its digest."""

    name: str
    scope: str
    digest: bytes


def token_digest(token: str) -> bytes:
    """Return the digest tokens are compared by."""
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


class Authenticator:
    """Decides who a request comes from; knows the configured tokens only as digests."""

    def __init__(self, tokens: Iterable[tuple[str, str, str]], *, trusted_header: str | None = None,
                 trusted_proxies: Iterable[Network] = (), trusted_scope: str = READ,
                 operators: Iterable[str] = ()) -> None:
        self.tokens = tuple(TokenEntry(name, scope, token_digest(value)) for name, value, scope in tokens)
        self.trusted_header = trusted_header
        self.trusted_proxies = tuple(trusted_proxies)
        self.trusted_scope = trusted_scope
        self.operators = frozenset(operators)

    @property
    def configured(self) -> bool:
        """Say whether anyone at all can sign in."""
        return bool(self.tokens) or self.trusted_header is not None

    def by_token(self, token: str, *, via: str = "token") -> Principal | None:
        """Return the principal ``token`` belongs to, comparing against every configured token."""
        digest = token_digest(token)
        found = None
        for entry in self.tokens:  # no early exit: the time taken says nothing about which matched
            if hmac.compare_digest(digest, entry.digest):
                found = entry
        return None if found is None else Principal(found.name, found.scope, via)

    def by_authorization(self, header: str | None) -> Principal | None:
        """Return the principal of an ``Authorization: Bearer …`` header, if it names one."""
        if not header:
            return None
        kind, _, token = header.strip().partition(" ")
        if kind.lower() != "bearer" or not token.strip():
            return None
        return self.by_token(token.strip())

    def by_proxy(self, remote_addr: str | None, headers: Mapping[str, str]) -> Principal | None:
        """Return the user a trusted proxy names, if the request came from one and it names someone."""
        if self.trusted_header is None or not remote_addr or not self._trusted(remote_addr):
            return None
        user = (headers.get(self.trusted_header) or "").strip()
        # A comma: the header came twice (joined), or a proxy appended to what the client sent.
        if not user or len(user) > 256 or not user.isprintable() or "," in user:
            return None
        return Principal(user, OPERATE if user in self.operators else self.trusted_scope, "proxy")

    def _trusted(self, remote_addr: str) -> bool:
        try:
            address = ipaddress.ip_address(remote_addr)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # ::ffff:10.1.2.3 on a dual-stack listener is 10.1.2.3
        return any(address in network for network in self.trusted_proxies)
