"""Which repository a delivery is signed for, by each forge's rules. Performs no I/O.

A forge endpoint serves every repository configured for that forge; the signature is
checked against each repository's secret *before* the body is parsed, and the payload
must then name one of the repositories whose secret matched (see ../shared/FORGES.md).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from .errors import SignatureError
from .signatures import verify_github, verify_standard_webhook, verify_token


@dataclass(frozen=True)
class Secrets:
    """The secrets one repository verifies deliveries with."""

    name: str
    secret: str | None
    signing_token: str | None = None


@dataclass(frozen=True)
class Clock:
    """The time and tolerance a timestamped signature is checked against."""

    now: float
    tolerance_s: float


def _check_github(headers: Mapping[str, str], body: bytes, secrets: Secrets, clock: Clock) -> None:
    """GitHub: ``X-Hub-Signature-256`` over the raw body; the SHA-1 header is not accepted."""
    verify_github(body, headers.get("x-hub-signature-256"), secrets.secret)


def _check_gitlab(headers: Mapping[str, str], body: bytes, secrets: Secrets, clock: Clock) -> None:
    """GitLab: ``X-Gitlab-Token`` and/or Standard Webhooks headers, whichever are configured."""
    if not secrets.secret and not secrets.signing_token:
        raise SignatureError("no secret is configured for this repository")
    if secrets.secret:
        verify_token(headers.get("x-gitlab-token"), secrets.secret)
    if secrets.signing_token:
        verify_standard_webhook(
            body,
            msg_id=headers.get("webhook-id"),
            timestamp=headers.get("webhook-timestamp"),
            signature=headers.get("webhook-signature"),
            secret=secrets.signing_token,
            now=clock.now,
            tolerance_s=clock.tolerance_s,
        )


CHECKS: dict[str, Callable[[Mapping[str, str], bytes, Secrets, Clock], None]] = {
    "github": _check_github,
    "gitlab": _check_gitlab,
}

#: Headers that carry a signature or token; a delivery that repeats one is refused.
SIGNATURE_HEADERS = frozenset(
    {"x-hub-signature-256", "x-hub-signature", "x-gitlab-token", "webhook-signature",
     "webhook-id", "webhook-timestamp"}
)

FORGES = tuple(CHECKS)


def signed_for(
    forge: str,
    headers: Mapping[str, str],
    body: bytes,
    repos: Sequence[Secrets],
    clock: Clock,
) -> set[str]:
    """Return the names of the repositories whose secrets sign this delivery, or raise.

    ``headers`` has lowercased names. Raises :class:`SignatureError` when no secret matches.
    """
    check = CHECKS[forge]
    matched: set[str] = set()
    first_error: SignatureError | None = None
    for secrets in repos:
        try:
            check(headers, body, secrets, clock)
        except SignatureError as exc:
            first_error = first_error or exc
        else:
            matched.add(secrets.name)
    if not matched:
        raise first_error or SignatureError("no repository is configured for this forge")
    return matched
