"""Which repositories a delivery is signed for, by its forge's rules. Performs no I/O.

A forge endpoint serves every repository configured for that forge; the signature is
checked against each repository's secret *before* the body is parsed, and the payload
must then name one of the repositories whose secret matched (see ../shared/FORGES.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..errors import SignatureError
from .base import Clock, DeliveryKeys, Forge


def raw_body(headers: Mapping[str, str], body: bytes) -> bytes:
    """The signed message of forges that sign the raw body as sent (GitHub, GitLab, Bitbucket)."""
    return body


def signed_for(forge: Forge, headers: Mapping[str, str], body: bytes, repos: Sequence[DeliveryKeys], clock: Clock) -> set[str]:
    """Return the names of the repositories whose secrets sign this delivery, or raise.

    ``headers`` has lowercased names. Raises :class:`SignatureError` when no secret matches.
    The signed message is extracted once (by ``forge.signed_bytes``), then checked against
    each distinct secret.
    """
    # Repositories behind one organisation-wide hook share a secret: check each secret once,
    # since each check hashes a body of up to 25 MB.
    by_secret: dict[tuple[str | None, str | None], list[DeliveryKeys]] = {}
    for keys in repos:
        by_secret.setdefault((keys.secret, keys.signing_token), []).append(keys)
    if not by_secret:
        raise SignatureError("no repository is configured for this forge")
    # The signed message is extracted once per delivery, whatever the number of secrets.
    message = forge.signed_bytes(headers, body)
    matched: set[str] = set()
    first_error: SignatureError | None = None
    for group in by_secret.values():
        try:
            forge.check(headers, message, group[0], clock)
        except SignatureError as exc:
            first_error = first_error or exc
        else:
            matched.update(keys.name for keys in group)
    if not matched:
        raise first_error or SignatureError("no secret signs this delivery")
    return matched
