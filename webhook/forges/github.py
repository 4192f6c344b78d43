"""GitHub (and GitHub Enterprise Server): its signature, push payload, commit status API and git user. Performs no I/O.

- Signature: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256>`` over the raw body, form bodies
  included; the legacy SHA-1 ``X-Hub-Signature`` is not accepted.
- Events: ``X-GitHub-Event`` ``push`` (``ping`` is answered too); the commit is ``head_commit.id``
  (for an annotated tag ``after`` is the tag object); deliveries are ``X-GitHub-Hook-ID`` +
  ``X-GitHub-Delivery``.
- Statuses: ``POST {api}/repos/{owner}/{repo}/statuses/{sha}``, ``Authorization: Bearer``,
  ``{"state", "target_url", "description", "context"}`` (docs.github.com, "Create a commit status").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import BadRequest
from ..events import Ignored, Parsed
from ..refs import ZERO_SHA
from ..signatures import verify_github
from .base import FAILURE, PENDING, SUCCESS, Clock, DeliveryKeys, Forge, StatusApi
from .payload import changed_paths, delivery_header, get, joined, push_event
from .signing import raw_body


def check(headers: Mapping[str, str], body: bytes, keys: DeliveryKeys, clock: Clock) -> None:
    """``X-Hub-Signature-256`` over the raw body; the SHA-1 header is not accepted."""
    verify_github(body, headers.get("x-hub-signature-256"), keys.secret)


def parse_github(headers: Mapping[str, str], payload: Mapping[str, Any]) -> Parsed:
    """Parse a GitHub delivery (``X-GitHub-Event``)."""
    event = headers.get("x-github-event")
    if not event:
        raise BadRequest("missing X-GitHub-Event header")
    if event != "push":
        return Ignored(event if event == "ping" else f"event {event!r} is not a push")
    if get(payload, "deleted") is True or get(payload, "after") == ZERO_SHA:
        return Ignored("ref deleted")
    head = get(payload, "head_commit") or {}
    return [push_event(
        "github",
        repo=get(payload, "repository", "full_name"),
        ref=get(payload, "ref"),
        # For an annotated tag `after` is the tag object; head_commit is the commit.
        sha=get(head, "id") or get(payload, "after"),
        before=get(payload, "before"),
        # The delivery id is shared by every hook on the event: dedupe on (hook id, delivery id).
        delivery_id=joined(delivery_header(headers, "x-github-hook-id"), delivery_header(headers, "x-github-delivery")),
        default_branch=get(payload, "repository", "default_branch"),
        pusher=get(payload, "pusher", "name"),
        message=get(head, "message"),
        changed_paths=changed_paths(get(payload, "commits")),
    )]


#: GitHub's status body fields, filled from ours (Gitea's API copies them).
STATUS_FIELDS = {"state": "state", "target_url": "url", "description": "description", "context": "context"}
#: GitHub's words for our states (Gitea's API copies them).
STATUS_STATES = {PENDING: "pending", SUCCESS: "success", FAILURE: "failure"}

STATUS_API = StatusApi(
    name="github",
    path="/repos/{repo}/statuses/{sha}",
    auth=("Authorization", "Bearer {token}"),
    fields=STATUS_FIELDS,
    states=STATUS_STATES,
    default_url="https://api.github.com",
    headers={"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"},
)

FORGE = Forge(
    name="github",
    # X-Hub-Signature (SHA-1) is never checked, but a repeated one is still refused.
    signature_headers=frozenset({"x-hub-signature-256", "x-hub-signature"}),
    signed_bytes=raw_body,
    check=check,
    parse=parse_github,
    status_apis=(STATUS_API,),
    git_username="x-access-token",
    webhook_steps=(
        "Open the repository's Settings → Webhooks → Add webhook.",
        "Payload URL: {url}; Content type: application/json.",
        "Secret: the value of {secret}.",
        "Which events: Just the push event. Add webhook: GitHub's ping is answered 200.",
    ),
)
