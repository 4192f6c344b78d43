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

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from . import defaults
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


def _unix_time(timestamp: str) -> int:
    """Read a ``webhook-timestamp`` header as Unix seconds, or raise.

    Digits only, and few enough that ``int()`` answers at once: more than 4300 make it raise
    ValueError, and no timestamp within the tolerance has more than a dozen.
    """
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > defaults.MAX_TIMESTAMP_DIGITS:
        raise SignatureError("webhook-timestamp is not a Unix time")
    return int(timestamp)


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
    sent_at = _unix_time(timestamp)
    if abs(now - sent_at) > tolerance_s:
        raise SignatureError("webhook-timestamp is outside the allowed tolerance")
    expected = sign_standard_webhook(body, msg_id=msg_id, timestamp=sent_at, secret=secret)
    candidates = [part for part in signature.split(" ") if part.startswith("v1,")]
    # Compare against every candidate so the time taken does not depend on which one matched.
    matched = [_same(candidate, expected) for candidate in candidates]
    if not any(matched):
        raise SignatureError("webhook-signature does not match the body")


# Standard Webhooks asymmetric signatures (``v1a``): Ed25519 over the same signed content.
ED25519_SECRET_PREFIX = "whsk_"
ED25519_PUBLIC_PREFIX = "whpk_"


def _key_bytes(value: str, prefix: str) -> bytes:
    """Decode a ``whsk_``/``whpk_`` key into its 32 raw bytes."""
    encoded = value[len(prefix):] if value.startswith(prefix) else value
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SignatureError("the key is not valid base64") from exc
    if len(raw) != 32:
        raise SignatureError("an Ed25519 key is 32 bytes")
    return raw


def ed25519_public_key(secret_key: str) -> str:
    """Return the ``whpk_`` public key of a ``whsk_`` secret key, to hand to receivers."""
    private = Ed25519PrivateKey.from_private_bytes(_key_bytes(secret_key, ED25519_SECRET_PREFIX))
    raw = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return ED25519_PUBLIC_PREFIX + base64.b64encode(raw).decode()


def new_ed25519_secret_key() -> str:
    """Generate a ``whsk_`` Ed25519 secret key."""
    raw = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    return ED25519_SECRET_PREFIX + base64.b64encode(raw).decode()


def sign_ed25519(body: bytes, *, msg_id: str, timestamp: int, secret_key: str) -> str:
    """Return the ``v1a,<base64>`` signature of one message under an Ed25519 ``whsk_`` key."""
    private = Ed25519PrivateKey.from_private_bytes(_key_bytes(secret_key, ED25519_SECRET_PREFIX))
    return "v1a," + base64.b64encode(private.sign(f"{msg_id}.{timestamp}.".encode() + body)).decode()


def verify_ed25519(body: bytes, *, msg_id: str | None, timestamp: str | None, signature: str | None,
                   public_key: str, now: float, tolerance_s: float) -> None:
    """Check the ``v1a`` signatures of Standard Webhooks headers against a ``whpk_`` public key, or raise."""
    if not signature or not msg_id or not timestamp:
        raise SignatureError("missing webhook-id, webhook-timestamp or webhook-signature header")
    if abs(now - _unix_time(timestamp)) > tolerance_s:
        raise SignatureError("webhook-timestamp is outside the allowed tolerance")
    public = Ed25519PublicKey.from_public_bytes(_key_bytes(public_key, ED25519_PUBLIC_PREFIX))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    for part in signature.split(" "):
        if not part.startswith("v1a,"):
            continue
        try:
            public.verify(base64.b64decode(part[4:], validate=True), signed)
            return
        except (InvalidSignature, binascii.Error, ValueError):
            continue
    raise SignatureError("webhook-signature has no valid v1a signature")
