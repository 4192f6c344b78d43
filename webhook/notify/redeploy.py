"""Redeploy hooks: the messages pushbuild sends once an image is in the registry. Performs no I/O.

The standard kind follows the Standard Webhooks specification
(https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md):
the same ``webhook-id`` on every retry, a fresh ``webhook-timestamp`` per attempt, and
``webhook-signature`` with ``v1`` (HMAC-SHA256, ``whsec_`` secret) and/or ``v1a`` (Ed25519,
``whsk_`` key; receivers need only the ``whpk_`` public key).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from ..signatures import sign_ed25519, sign_standard_webhook
from ..timestamps import rfc3339
from .outbound import OutboundRequest

EVENT_TYPE = "image.pushed"
HOOK_KINDS = ("standard", "keel", "command")
_FIELD = re.compile(r"\{(image|digest|sha|ref|tag|build_id|repo)\}")


@dataclass(frozen=True)
class ImagePushed:
    """An image built from a commit is in the registry."""

    repo: str
    forge: str
    ref: str
    sha: str
    image: str
    tags: tuple[str, ...]
    digest: str  # image@sha256:...
    build_id: int
    build_url: str

    @property
    def tag(self) -> str:
        """The most telling tag: the branch or release tag if any, else the SHA."""
        return (self.tags[1] if len(self.tags) > 1 else self.tags[0]).rsplit(":", 1)[1]


def message_body(event: ImagePushed, *, at: float) -> bytes:
    """Return the JSON body of a standard hook message (fixed once, so retries send the same bytes)."""
    data = asdict(event) | {"tags": list(event.tags)}
    stamp = rfc3339(at)
    return json.dumps({"type": EVENT_TYPE, "timestamp": stamp, "data": data}, separators=(",", ":")).encode()


def standard_request(url: str, body: bytes, *, msg_id: str, timestamp: int, secret: str | None,
                     signing_key: str | None) -> OutboundRequest:
    """Return a Standard Webhooks request, signed with each configured key."""
    signatures = []
    if secret:
        signatures.append(sign_standard_webhook(body, msg_id=msg_id, timestamp=timestamp, secret=secret))
    if signing_key:
        signatures.append(sign_ed25519(body, msg_id=msg_id, timestamp=timestamp, secret_key=signing_key))
    headers = {"Content-Type": "application/json", "User-Agent": "pushbuild",
               "webhook-id": msg_id, "webhook-timestamp": str(timestamp), "webhook-signature": " ".join(signatures)}
    return OutboundRequest("POST", url, body, headers)


def keel_request(url: str, event: ImagePushed) -> OutboundRequest:
    """Return Keel's native webhook (``POST /v1/webhooks/native`` with ``{"name", "tag"}``)."""
    body = json.dumps({"name": event.image, "tag": event.tag}, separators=(",", ":")).encode()
    return OutboundRequest("POST", url, body, {"Content-Type": "application/json", "User-Agent": "pushbuild"})


def command_argv(argv: Sequence[str], event: ImagePushed) -> list[str]:
    """Fill ``{image}``, ``{digest}``, ``{sha}``, ``{ref}``, ``{tag}``, ``{repo}``, ``{build_id}`` in each argument.

    Each template fills exactly one argument: nothing is split or passed through a shell.
    """
    values: Mapping[str, Any] = {"image": event.image, "digest": event.digest, "sha": event.sha, "ref": event.ref,
                                 "tag": event.tag, "build_id": event.build_id, "repo": event.repo}
    return [_FIELD.sub(lambda found: str(values[found.group(1)]), arg) for arg in argv]
