"""Gitea, Forgejo and Gogs: their signature, push payload, commit status API and git user. Performs no I/O.

- Signature: bare lowercase hex HMAC-SHA256 in ``X-Forgejo-Signature``, ``X-Gitea-Signature`` or
  ``X-Gogs-Signature``, over the JSON payload itself, even when it arrives form-encoded (unlike GitHub).
- Events: ``X-Forgejo-Event``/``X-Gitea-Event``/``X-Gogs-Event`` ``push``; the commit is ``after``.
- Statuses: ``POST {api}/repos/{owner}/{repo}/statuses/{sha}``, ``Authorization: token``,
  ``{"state", "target_url", "description", "context"}`` (Gitea API, CreateStatusOption); every
  server has its own API URL.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import BadRequest, RequestError, SignatureError
from ..events import Ignored, Parsed, payload_bytes
from ..refs import ZERO_SHA
from ..signatures import verify_hmac_hex
from .base import Clock, DeliveryKeys, Forge, StatusApi
from .github import STATUS_FIELDS, STATUS_STATES
from .payload import changed_paths, delivery_header, first_header, get, push_event

#: Forgejo sends its own and Gitea's headers, Gitea its own and Gogs'; the first present is checked.
GITEA_SIGNATURE_HEADERS = ("x-forgejo-signature", "x-gitea-signature", "x-gogs-signature")


def _signature_header(headers: Mapping[str, str]) -> str:
    """Return the first Gitea-family signature header present (the first known name if none is)."""
    return next((n for n in GITEA_SIGNATURE_HEADERS if headers.get(n)), GITEA_SIGNATURE_HEADERS[0])


def signed_bytes(headers: Mapping[str, str], body: bytes) -> bytes:
    """Gitea, Forgejo and Gogs sign the JSON payload itself, which a form body carries percent-encoded."""
    if not any(headers.get(name) for name in GITEA_SIGNATURE_HEADERS):
        # Nothing to check it against: refuse before decoding up to 25 MB of form body.
        raise SignatureError("missing X-Gitea-Signature (or X-Forgejo-Signature, X-Gogs-Signature) header")
    try:
        return payload_bytes(body, headers.get("content-type"))
    except RequestError as exc:
        raise SignatureError("the body carries no payload to verify") from exc


def check(headers: Mapping[str, str], message: bytes, keys: DeliveryKeys, clock: Clock) -> None:
    """Bare hex HMAC over the JSON payload, even when it arrives form-encoded."""
    name = _signature_header(headers)
    verify_hmac_hex(message, headers.get(name), keys.secret, name=name)


def parse_gitea(headers: Mapping[str, str], payload: Mapping[str, Any]) -> Parsed:
    """Parse a Gitea, Forgejo or Gogs delivery (``X-Gitea-Event`` / ``X-Forgejo-Event`` / ``X-Gogs-Event``)."""
    event = first_header(headers, "x-forgejo-event", "x-gitea-event", "x-gogs-event")
    if not event:
        raise BadRequest("missing X-Gitea-Event (or X-Forgejo-Event, X-Gogs-Event) header")
    if event != "push":
        return Ignored(f"event {event!r} is not a push")
    if get(payload, "after") == ZERO_SHA:
        return Ignored("ref deleted")
    head = get(payload, "head_commit") or {}
    return [push_event(
        "gitea",
        repo=get(payload, "repository", "full_name"),
        ref=get(payload, "ref"),
        sha=get(payload, "after"),
        before=get(payload, "before"),
        delivery_id=delivery_header(headers, "x-forgejo-delivery", "x-gitea-delivery", "x-gogs-delivery"),
        default_branch=get(payload, "repository", "default_branch"),
        pusher=get(payload, "pusher", "login") or get(payload, "pusher", "username"),
        message=get(head, "message"),
        changed_paths=changed_paths(get(payload, "commits"), total=get(payload, "total_commits")),
    )]


STATUS_API = StatusApi(
    name="gitea",
    path="/repos/{repo}/statuses/{sha}",
    auth=("Authorization", "token {token}"),
    fields=STATUS_FIELDS,
    states=STATUS_STATES,
)

FORGE = Forge(
    name="gitea",
    signature_headers=frozenset(GITEA_SIGNATURE_HEADERS),
    signed_bytes=signed_bytes,
    check=check,
    parse=parse_gitea,
    status_apis=(STATUS_API,),
    git_username="oauth2",
    webhook_steps=(
        "Open the repository's Settings → Webhooks → Add webhook → Gitea (or Forgejo, Gogs).",
        "Target URL: {url}; POST content type: application/json.",
        "Secret: the value of {secret}.",
        "Trigger on: Push events.",
    ),
    aliases=("forgejo", "gogs"),
)
