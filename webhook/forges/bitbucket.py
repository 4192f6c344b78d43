"""Bitbucket Cloud and Data Center: their signature, push payloads, commit status APIs and git user. Performs no I/O.

- Signature: ``X-Hub-Signature: sha256=<hex HMAC-SHA256>`` over the raw body.
- Events: ``X-Event-Key`` ``repo:push`` (Cloud; the commit is ``push.changes[].new.target.hash``)
  or ``repo:refs_changed`` (Data Center; ``changes[].toHash``); one push may change several refs,
  each its own build. Retries keep ``X-Request-UUID`` (Cloud) or ``X-Request-Id``.
- Statuses, Cloud: ``POST {api}/repositories/{workspace}/{slug}/commit/{sha}/statuses/build``,
  ``Authorization: Bearer``, ``{"key", "state", "url", "name", "description"}``.
- Statuses, Data Center (``api = "bitbucket-datacenter"``): ``POST {base}/rest/build-status/1.0/commits/{sha}``,
  ``Authorization: Bearer`` (an HTTP access token), ``{"state", "key", "name", "url", "description"}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from ..errors import BadRequest
from ..events import Ignored, Parsed
from ..refs import ZERO_SHA
from ..signatures import verify_hmac_hex
from .base import FAILURE, PENDING, SUCCESS, Clock, DeliveryKeys, Forge, StatusApi
from .payload import delivery_header, get, joined, push_event, ref_key
from .signing import raw_body


def check(headers: Mapping[str, str], body: bytes, keys: DeliveryKeys, clock: Clock) -> None:
    """``X-Hub-Signature: sha256=<hex>`` over the raw body, Cloud and Data Center alike."""
    verify_hmac_hex(body, headers.get("x-hub-signature"), keys.secret, name="X-Hub-Signature", prefix="sha256=")


#: Bitbucket's change types (Cloud: ``new.type``; Data Center: ``ref.type``) and their ref prefixes.
_REF_KINDS = {"branch": "refs/heads/", "tag": "refs/tags/", "annotated_tag": "refs/tags/"}


def parse_bitbucket(headers: Mapping[str, str], payload: Mapping[str, Any]) -> Parsed:
    """Parse Bitbucket Cloud ``repo:push`` and Data Center ``repo:refs_changed``; one push may change several refs."""
    event = headers.get("x-event-key")
    if not event:
        raise BadRequest("missing X-Event-Key header")
    if event == "repo:push":
        repo, changes = get(payload, "repository", "full_name"), _cloud_changes(payload)
        pusher = get(payload, "actor", "nickname") or get(payload, "actor", "display_name")
    elif event == "repo:refs_changed":
        key, slug = get(payload, "repository", "project", "key"), get(payload, "repository", "slug")
        repo = f"{key}/{slug}" if isinstance(key, str) and isinstance(slug, str) else None
        changes = _server_changes(payload)
        pusher = get(payload, "actor", "name")
    else:
        return Ignored("ping" if event == "diagnostics:ping" else f"event {event!r} is not a push")
    delivery = delivery_header(headers, "x-request-uuid", "x-request-id")
    events = [
        push_event("bitbucket", repo=repo, ref=ref, sha=sha, before=before, pusher=pusher, message=message,
                   delivery_id=joined(delivery, ref_key(ref)) if delivery else None)
        for ref, sha, before, message in changes
    ]
    return events or Ignored("ref deleted")


def _cloud_changes(payload: Mapping[str, Any]) -> list[tuple[object, object, object, object]]:
    """Return (ref, sha, before, message) for each created or updated ref of a Cloud push."""
    changes = get(payload, "push", "changes")
    if not isinstance(changes, list):
        raise BadRequest("payload field push.changes must be a list")
    found = []
    for change in changes:
        new = get(change, "new")
        if not isinstance(new, Mapping) or get(change, "closed") is True:
            continue  # a deleted branch or tag
        prefix = _REF_KINDS.get(new.get("type"))
        name = new.get("name")
        if prefix is None or not isinstance(name, str):
            raise BadRequest("push change has no branch or tag name")
        found.append((prefix + name, get(new, "target", "hash"), get(change, "old", "target", "hash"),
                      get(new, "target", "message")))
    return found


def _server_changes(payload: Mapping[str, Any]) -> list[tuple[object, object, object, object]]:
    """Return (ref, sha, before, message) for each added or updated ref of a Data Center push."""
    changes = get(payload, "changes")
    if not isinstance(changes, list):
        raise BadRequest("payload field changes must be a list")
    return [
        (get(c, "ref", "id") or get(c, "refId"), get(c, "toHash"), get(c, "fromHash"), None)
        for c in changes
        if get(c, "type") != "DELETE" and get(c, "toHash") != ZERO_SHA
    ]


CLOUD_STATUS_API = StatusApi(
    name="bitbucket",
    path="/repositories/{repo}/commit/{sha}/statuses/build",
    auth=("Authorization", "Bearer {token}"),
    fields={"key": "context", "state": "state", "url": "url", "name": "context", "description": "description"},
    states={PENDING: "INPROGRESS", SUCCESS: "SUCCESSFUL", FAILURE: "FAILED"},
    default_url="https://api.bitbucket.org/2.0",
)
#: Data Center takes Cloud's body and states at its own path, on each server's own URL.
DATACENTER_STATUS_API = replace(CLOUD_STATUS_API, name="bitbucket-datacenter", path="/rest/build-status/1.0/commits/{sha}",
                                default_url=None)

FORGE = Forge(
    name="bitbucket",
    signature_headers=frozenset({"x-hub-signature"}),
    signed_bytes=raw_body,
    check=check,
    parse=parse_bitbucket,
    status_apis=(CLOUD_STATUS_API, DATACENTER_STATUS_API),
    git_username="x-token-auth",
    commit_path="/commits/{sha}",
    webhook_steps=(
        "Open Repository settings → Webhooks → Add webhook (Data Center: Create webhook).",
        "URL: {url}; Secret: the value of {secret}.",
        "Triggers: Repository: Push.",
    ),
)
