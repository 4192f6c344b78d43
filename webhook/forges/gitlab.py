"""GitLab: its secret and signing tokens, push payload, commit status API and git user. Performs no I/O.

- Signature: ``X-Gitlab-Token`` (the header *is* the secret) and/or, from GitLab 19.0, a signing
  token: Standard Webhooks ``webhook-id``/``webhook-timestamp``/``webhook-signature`` over the
  raw body. Whichever the repository configures is required.
- Events: ``X-Gitlab-Event`` ``Push Hook``, ``Tag Push Hook`` or ``System Hook``; the commit is
  ``checkout_sha``; resends keep ``webhook-id``/``Idempotency-Key``.
- Statuses: ``POST {api}/projects/{url-encoded path}/statuses/{sha}``, ``PRIVATE-TOKEN``,
  ``{"state", "name", "target_url", "description"}`` (docs.gitlab.com, Commits API).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import BadRequest, SignatureError
from ..events import Ignored, Parsed
from ..refs import ZERO_SHA
from ..signatures import verify_standard_webhook, verify_token
from .base import FAILURE, PENDING, SUCCESS, Clock, DeliveryKeys, Forge, StatusApi
from .payload import changed_paths, delivery_header, get, push_event
from .signing import raw_body


def check(headers: Mapping[str, str], body: bytes, keys: DeliveryKeys, clock: Clock) -> None:
    """``X-Gitlab-Token`` and/or Standard Webhooks headers, whichever are configured."""
    if not keys.secret and not keys.signing_token:
        raise SignatureError("no secret is configured for this repository")
    if keys.secret:
        verify_token(headers.get("x-gitlab-token"), keys.secret)
    if keys.signing_token:
        verify_standard_webhook(
            body,
            msg_id=headers.get("webhook-id"),
            timestamp=headers.get("webhook-timestamp"),
            signature=headers.get("webhook-signature"),
            secret=keys.signing_token,
            now=clock.now,
            tolerance_s=clock.tolerance_s,
        )


GITLAB_PUSH_KINDS = {"push", "tag_push"}


def parse_gitlab(headers: Mapping[str, str], payload: Mapping[str, Any]) -> Parsed:
    """Parse a GitLab delivery (``X-Gitlab-Event``: ``Push Hook``, ``Tag Push Hook``, ``System Hook``)."""
    event = headers.get("x-gitlab-event")
    if not event:
        raise BadRequest("missing X-Gitlab-Event header")
    kind = get(payload, "object_kind") or get(payload, "event_name")
    if event not in ("Push Hook", "Tag Push Hook", "System Hook") or kind not in GITLAB_PUSH_KINDS:
        return Ignored(f"event {event!r} is not a push")
    sha = get(payload, "checkout_sha")
    if sha is None or get(payload, "after") == ZERO_SHA:
        return Ignored("ref deleted")
    commits = get(payload, "commits")
    head = next(
        (c for c in commits if isinstance(c, Mapping) and c.get("id") == sha), {}
    ) if isinstance(commits, list) else {}
    return [push_event(
        "gitlab",
        repo=get(payload, "project", "path_with_namespace"),
        ref=get(payload, "ref"),
        sha=sha,
        before=get(payload, "before"),
        # Resends keep webhook-id / Idempotency-Key; X-Gitlab-Event-UUID identifies older ones. webhook-id
        # first: with a signing token it is signed, so a replay cannot change it as it can Idempotency-Key.
        delivery_id=delivery_header(headers, "webhook-id", "idempotency-key", "x-gitlab-event-uuid"),
        default_branch=get(payload, "project", "default_branch"),
        pusher=get(payload, "user_username") or get(payload, "user_name"),
        message=head.get("message"),
        changed_paths=changed_paths(commits, total=get(payload, "total_commits_count")),
    )]


STATUS_API = StatusApi(
    name="gitlab",
    path="/projects/{repo}/statuses/{sha}",
    auth=("PRIVATE-TOKEN", "{token}"),
    fields={"state": "state", "name": "context", "target_url": "url", "description": "description"},
    states={PENDING: "running", SUCCESS: "success", FAILURE: "failed"},
    default_url="https://gitlab.com/api/v4",
    quote_repo=True,
)

FORGE = Forge(
    name="gitlab",
    signature_headers=frozenset({"x-gitlab-token", "webhook-signature", "webhook-id", "webhook-timestamp"}),
    signed_bytes=raw_body,
    check=check,
    parse=parse_gitlab,
    status_apis=(STATUS_API,),
    git_username="oauth2",
    signing_token=True,
    commit_path="/-/commit/{sha}",
    webhook_steps=(
        "Open the project's Settings → Webhooks → Add new webhook.",
        "URL: {url}; Secret token: the value of {secret}.",
        "Trigger: Push events, and Tag push events to build tags.",
        "GitLab 19 and later: set a signing token too, and give it as signing_token_env.",
    ),
    unsigned_warning=("is verified by its secret token alone, a header anyone who sees one delivery can reuse to sign "
                      "pushes of their own (choosing the commit, the ref and `before`); give it a signing token too "
                      "(signing_token_env)"),
)
