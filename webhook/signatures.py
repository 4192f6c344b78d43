"""Webhook signatures: computing and checking them over raw bytes. Performs no I/O.

Rules follow ../shared/FORGES.md. Every check fails closed: no secret, no header, or a
header of the wrong shape is a :class:`SignatureError`, and comparisons are constant-time.
Error messages never include the expected value.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

from .errors import SignatureError

STANDARD_WEBHOOKS_PREFIX = "whsec_"


def hmac_sha256(key: bytes, message: bytes) -> bytes:
    """Return the raw HMAC-SHA256 of ``message`` under ``key``."""
    return hmac.new(key, message, hashlib.sha256).digest()


def _same(given: str, expected: str) -> bool:
    """Compare two header values in constant time, whatever characters ``given`` holds."""
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode("ascii"))


def _require(secret: str | bytes | None, header: str | None, name: str) -> None:
    """Fail closed when either side of a check is missing."""
    if not secret:
        raise SignatureError("no secret is configured for this repository")
    if header is None or header == "":
        raise SignatureError(f"missing {name} header")


def hmac_hex(key: str, message: bytes) -> str:
    """Return the lowercase hex HMAC-SHA256 of ``message``: the form GitHub, Gitea and Bitbucket send."""
    return hmac_sha256(key.encode(), message).hex()


def verify_hmac_hex(message: bytes, header: str | None, secret: str | None, *, name: str, prefix: str = "") -> None:
    """Check a header holding ``prefix`` + hex HMAC-SHA256 of ``message``, or raise.

    GitHub (``X-Hub-Signature-256``) and Bitbucket (``X-Hub-Signature``) use ``sha256=``;
    Gitea, Forgejo and Gogs send the bare hex digest.
    """
    _require(secret, header, name)
    if not _same(header, prefix + hmac_hex(secret, message)):
        raise SignatureError(f"{name} does not match the body")


def sign_github(body: bytes, secret: str) -> str:
    """Return the ``X-Hub-Signature-256`` value GitHub would send for ``body``."""
    return "sha256=" + hmac_hex(secret, body)


def verify_github(body: bytes, header: str | None, secret: str | None) -> None:
    """Check GitHub's ``X-Hub-Signature-256`` over the raw ``body``, or raise."""
    verify_hmac_hex(body, header, secret, name="X-Hub-Signature-256", prefix="sha256=")


def verify_token(header: str | None, secret: str | None, *, name: str = "X-Gitlab-Token") -> None:
    """Check a shared-secret header such as GitLab's ``X-Gitlab-Token``, or raise."""
    _require(secret, header, name)
    if not _same(header, secret):
        raise SignatureError(f"{name} is wrong")


def standard_webhooks_key(secret: str) -> bytes:
    """Decode a Standard Webhooks secret (``whsec_`` + base64) into its HMAC key."""
    encoded = secret[len(STANDARD_WEBHOOKS_PREFIX):] if secret.startswith(STANDARD_WEBHOOKS_PREFIX) else secret
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SignatureError("the signing secret is not valid base64") from exc


def sign_standard_webhook(body: bytes, *, msg_id: str, timestamp: int, secret: str) -> str:
    """Return the ``webhook-signature`` value (``v1,<base64>``) for one message."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac_sha256(standard_webhooks_key(secret), signed)).decode()


def verify_standard_webhook(
    body: bytes,
    *,
    msg_id: str | None,
    timestamp: str | None,
    signature: str | None,
    secret: str | None,
    now: float,
    tolerance_s: float,
) -> None:
    """Check Standard Webhooks headers over the raw ``body``; any listed ``v1`` signature may match.

    See https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md
    """
    _require(secret, signature, "webhook-signature")
    if not msg_id or not timestamp:
        raise SignatureError("missing webhook-id or webhook-timestamp header")
    if not timestamp.isascii() or not timestamp.isdigit():
        raise SignatureError("webhook-timestamp is not a Unix time")
    if abs(now - int(timestamp)) > tolerance_s:
        raise SignatureError("webhook-timestamp is outside the allowed tolerance")
    expected = sign_standard_webhook(body, msg_id=msg_id, timestamp=int(timestamp), secret=secret)
    candidates = [part for part in signature.split(" ") if part.startswith("v1,")]
    # Compare against every candidate so the time taken does not depend on which one matched.
    matched = [_same(candidate, expected) for candidate in candidates]
    if not any(matched):
        raise SignatureError("webhook-signature does not match the body")
