"""Which repository a delivery is signed for, by each forge's rules. Performs no I/O.

A forge endpoint serves every repository configured for that forge; the signature is
checked against each repository's secret *before* the body is parsed, and the payload
must then name one of the repositories whose secret matched (see ../shared/FORGES.md).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from .errors import RequestError, SignatureError
from .events import payload_bytes
from .signatures import verify_github, verify_hmac_hex, verify_standard_webhook, verify_token


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


def _raw_body(headers: Mapping[str, str], body: bytes) -> bytes:
    """GitHub, GitLab and Bitbucket sign the raw body as sent."""
    return body


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


def _gitea_signature_header(headers: Mapping[str, str]) -> str:
    """Return the first Gitea-family signature header present (the first known name if none is)."""
    return next((n for n in GITEA_SIGNATURE_HEADERS if headers.get(n)), GITEA_SIGNATURE_HEADERS[0])


def _gitea_payload(headers: Mapping[str, str], body: bytes) -> bytes:
    """Gitea, Forgejo and Gogs sign the JSON payload itself, which a form body carries percent-encoded."""
    if not any(headers.get(name) for name in GITEA_SIGNATURE_HEADERS):
        # Nothing to check it against: refuse before decoding up to 25 MB of form body.
        raise SignatureError("missing X-Gitea-Signature (or X-Forgejo-Signature, X-Gogs-Signature) header")
    try:
        return payload_bytes(body, headers.get("content-type"))
    except RequestError as exc:
        raise SignatureError("the body carries no payload to verify") from exc


def _check_gitea(headers: Mapping[str, str], message: bytes, secrets: Secrets, clock: Clock) -> None:
    """Gitea, Forgejo, Gogs: bare hex HMAC over the JSON payload, even when it arrives form-encoded."""
    name = _gitea_signature_header(headers)
    verify_hmac_hex(message, headers.get(name), secrets.secret, name=name)


def _check_bitbucket(headers: Mapping[str, str], body: bytes, secrets: Secrets, clock: Clock) -> None:
    """Bitbucket Cloud and Data Center: ``X-Hub-Signature: sha256=<hex>`` over the raw body."""
    verify_hmac_hex(body, headers.get("x-hub-signature"), secrets.secret, name="X-Hub-Signature", prefix="sha256=")


#: Forgejo sends its own and Gitea's headers, Gitea its own and Gogs'; the first present is checked.
GITEA_SIGNATURE_HEADERS = ("x-forgejo-signature", "x-gitea-signature", "x-gogs-signature")


@dataclass(frozen=True)
class Verifier:
    """How one forge's deliveries are verified: which bytes it signs, and the check of those against one repository."""

    #: Extracts the signed message from the headers and raw body, once per delivery (it may decode up to 25 MB).
    signed_bytes: Callable[[Mapping[str, str], bytes], bytes]
    #: Checks the signed message against one repository's secrets, or raises :class:`SignatureError`.
    check: Callable[[Mapping[str, str], bytes, Secrets, Clock], None]


VERIFIERS: dict[str, Verifier] = {
    "github": Verifier(_raw_body, _check_github),
    "gitlab": Verifier(_raw_body, _check_gitlab),
    "gitea": Verifier(_gitea_payload, _check_gitea),
    "bitbucket": Verifier(_raw_body, _check_bitbucket),
}

#: Other names users know these forges by; they follow the same rules.
ALIASES = {"forgejo": "gitea", "gogs": "gitea"}

#: Headers that carry a signature or token; a delivery that repeats one is refused.
SIGNATURE_HEADERS = frozenset(
    {"x-hub-signature-256", "x-hub-signature", "x-gitlab-token", "webhook-signature",
     "webhook-id", "webhook-timestamp", *GITEA_SIGNATURE_HEADERS}
)

FORGES = tuple(VERIFIERS)


def signed_for(
    forge: str,
    headers: Mapping[str, str],
    body: bytes,
    repos: Sequence[Secrets],
    clock: Clock,
    *,
    verifiers: Mapping[str, Verifier] = VERIFIERS,
) -> set[str]:
    """Return the names of the repositories whose secrets sign this delivery, or raise.

    ``headers`` has lowercased names. Raises :class:`SignatureError` when no secret matches.
    The signed message is extracted once (by ``verifiers[forge].signed_bytes``), then checked
    against each distinct secret.
    """
    verifier = verifiers[forge]
    # Repositories behind one organisation-wide hook share a secret: check each secret once,
    # since each check hashes a body of up to 25 MB.
    by_secret: dict[tuple[str | None, str | None], list[Secrets]] = {}
    for secrets in repos:
        by_secret.setdefault((secrets.secret, secrets.signing_token), []).append(secrets)
    if not by_secret:
        raise SignatureError("no repository is configured for this forge")
    # The signed message is extracted once per delivery, whatever the number of secrets.
    message = verifier.signed_bytes(headers, body)
    matched: set[str] = set()
    first_error: SignatureError | None = None
    for group in by_secret.values():
        try:
            verifier.check(headers, message, group[0], clock)
        except SignatureError as exc:
            first_error = first_error or exc
        else:
            matched.update(secrets.name for secrets in group)
    if not matched:
        raise first_error or SignatureError("no secret signs this delivery")
    return matched
