"""Push deliveries from each forge, parsed into one forge-neutral value. Performs no I/O.

Which field holds what is documented in ../shared/FORGES.md ("Events and the commit to build").
Callers verify the signature over the raw body first, then call :func:`decode_body` and a
parser from :data:`PARSERS`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from .errors import BadRequest, UnsupportedMediaType
from .refs import ZERO_SHA, is_branch, short_name, validate_ref, validate_sha

JSON_TYPE = "application/json"
FORM_TYPE = "application/x-www-form-urlencoded"
#: Nesting deeper than this is not a webhook payload; refuse it before it costs anything.
MAX_JSON_DEPTH = 64


@dataclass(frozen=True)
class PushEvent:
    """One pushed ref to build, whatever forge it came from."""

    forge: str
    repo: str
    ref: str
    sha: str
    before: str
    pusher: str
    delivery_id: str | None
    default_branch: str | None = None
    message: str = ""

    @property
    def branch(self) -> str | None:
        """The branch name, or ``None`` for a tag."""
        return short_name(self.ref) if is_branch(self.ref) else None

    @property
    def ref_name(self) -> str:
        """The branch or tag name without its ``refs/...`` prefix."""
        return short_name(self.ref)


@dataclass(frozen=True)
class Ignored:
    """A verified delivery that asks for no build, and why."""

    reason: str


def media_type(content_type: str | None) -> str:
    """Return the bare media type of a ``Content-Type`` header, lowercased."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def decode_body(body: bytes, content_type: str | None) -> Mapping[str, Any]:
    """Decode a JSON or form-encoded (``payload=<json>``) delivery body into a mapping."""
    kind = media_type(content_type)
    if kind == FORM_TYPE:
        try:
            fields = parse_qs(body.decode("ascii"), strict_parsing=True, max_num_fields=16)
        except (UnicodeDecodeError, ValueError) as exc:
            raise BadRequest("form body is not valid application/x-www-form-urlencoded") from exc
        if len(fields.get("payload", [])) != 1:
            raise BadRequest("form body must carry exactly one 'payload' field")
        text = fields["payload"][0]
    elif kind == JSON_TYPE:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadRequest("JSON body is not UTF-8") from exc
    else:
        raise UnsupportedMediaType(f"content type must be {JSON_TYPE} or {FORM_TYPE}")
    _check_depth(text)
    try:
        payload = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise BadRequest("body is not valid JSON") from exc
    if not isinstance(payload, dict):
        raise BadRequest("payload must be a JSON object")
    return payload


def _check_depth(text: str) -> None:
    """Refuse JSON nested deeper than :data:`MAX_JSON_DEPTH`, counting brackets outside strings."""
    depth = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                raise BadRequest(f"JSON is nested deeper than {MAX_JSON_DEPTH} levels")
        elif char in "]}":
            depth -= 1


def _get(payload: Mapping[str, Any], *path: str) -> Any:
    """Follow ``path`` through nested objects; ``None`` where any step is missing."""
    value: Any = payload
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _text(payload: Mapping[str, Any], *path: str, required: bool = False) -> str | None:
    """Return a string field, refusing a value of another type."""
    value = _get(payload, *path)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise BadRequest(f"payload field {'.'.join(path)} must be a non-empty string")
    return value


def repo_of(forge: str, payload: Mapping[str, Any]) -> str | None:
    """Return the repository's full name as the forge names it, or ``None`` if absent."""
    return _text(payload, *REPO_FIELDS[forge])


REPO_FIELDS: dict[str, tuple[str, ...]] = {
    "github": ("repository", "full_name"),
    "gitlab": ("project", "path_with_namespace"),
}


def _push(forge: str, payload: Mapping[str, Any], *, sha: object, delivery_id: str | None,
          default_branch: object, pusher: object, message: object) -> PushEvent:
    """Validate the fields every forge shares and build the :class:`PushEvent`."""
    before = _get(payload, "before") or ZERO_SHA
    return PushEvent(
        forge=forge,
        repo=_text(payload, *REPO_FIELDS[forge], required=True),
        ref=validate_ref(_get(payload, "ref")),
        sha=validate_sha(sha),
        before=validate_sha(before),
        pusher=pusher if isinstance(pusher, str) else "",
        delivery_id=delivery_id,
        default_branch=default_branch if isinstance(default_branch, str) else None,
        message=message if isinstance(message, str) else "",
    )


def parse_github(headers: Mapping[str, str], payload: Mapping[str, Any]) -> PushEvent | Ignored:
    """Parse a GitHub delivery (``X-GitHub-Event``)."""
    event = headers.get("x-github-event")
    if not event:
        raise BadRequest("missing X-GitHub-Event header")
    if event != "push":
        return Ignored(event if event == "ping" else f"event {event!r} is not a push")
    if _get(payload, "deleted") is True or _get(payload, "after") == ZERO_SHA:
        return Ignored("ref deleted")
    head = _get(payload, "head_commit") or {}
    return _push(
        "github", payload,
        # For an annotated tag `after` is the tag object; head_commit is the commit.
        sha=_get(head, "id") or _get(payload, "after"),
        # The delivery id is shared by every hook on the event: dedupe on (hook id, delivery id).
        delivery_id=_joined(headers.get("x-github-hook-id"), headers.get("x-github-delivery")),
        default_branch=_get(payload, "repository", "default_branch"),
        pusher=_get(payload, "pusher", "name"),
        message=_get(head, "message"),
    )


def _joined(*parts: str | None) -> str | None:
    """Join the present parts of a delivery key with ``:``; ``None`` if the last is absent."""
    if not parts[-1]:
        return None
    return ":".join(part for part in parts if part)


GITLAB_PUSH_KINDS = {"push", "tag_push"}


def parse_gitlab(headers: Mapping[str, str], payload: Mapping[str, Any]) -> PushEvent | Ignored:
    """Parse a GitLab delivery (``X-Gitlab-Event``: ``Push Hook``, ``Tag Push Hook``, ``System Hook``)."""
    event = headers.get("x-gitlab-event")
    if not event:
        raise BadRequest("missing X-Gitlab-Event header")
    kind = _get(payload, "object_kind") or _get(payload, "event_name")
    if event not in ("Push Hook", "Tag Push Hook", "System Hook") or kind not in GITLAB_PUSH_KINDS:
        return Ignored(f"event {event!r} is not a push")
    sha = _get(payload, "checkout_sha")
    if sha is None or _get(payload, "after") == ZERO_SHA:
        return Ignored("ref deleted")
    commits = _get(payload, "commits")
    head = next(
        (c for c in commits if isinstance(c, Mapping) and c.get("id") == sha), {}
    ) if isinstance(commits, list) else {}
    return _push(
        "gitlab", payload,
        sha=sha,
        # Resends keep Idempotency-Key / webhook-id; X-Gitlab-Event-UUID identifies older ones.
        delivery_id=headers.get("idempotency-key") or headers.get("webhook-id")
        or headers.get("x-gitlab-event-uuid"),
        default_branch=_get(payload, "project", "default_branch"),
        pusher=_get(payload, "user_username") or _get(payload, "user_name"),
        message=head.get("message"),
    )


PARSERS: dict[str, Callable[[Mapping[str, str], Mapping[str, Any]], PushEvent | Ignored]] = {
    "github": parse_github,
    "gitlab": parse_gitlab,
}
