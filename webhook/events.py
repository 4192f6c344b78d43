"""Push deliveries from each forge, parsed into one forge-neutral value. Performs no I/O.

Which field holds what is documented in ../shared/FORGES.md ("Events and the commit to build").
Callers verify the signature over the raw body first, then call :func:`decode_body` and a
parser from :data:`PARSERS`.
"""

from __future__ import annotations

import binascii
import hashlib
import json
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from . import defaults
from .errors import BadRequest, UnsupportedMediaType
from .refs import ZERO_SHA, is_branch, short_name, validate_ref, validate_sha

JSON_TYPE = "application/json"
FORM_TYPE = "application/x-www-form-urlencoded"
#: Nesting deeper than this is not a webhook payload; refuse it before it costs anything.
MAX_JSON_DEPTH = 64
#: A form delivery has one field; more than this many is not a webhook.
MAX_FORM_FIELDS = 16
#: A form value is percent-decoded this many bytes at a time, which bounds the decoder's memory.
DECODE_SLICE_BYTES = 64 * 1024


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
    #: Files the payload says the push changed; ``None`` when it does not list them all.
    changed_paths: tuple[str, ...] | None = None

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


def payload_bytes(body: bytes, content_type: str | None) -> bytes:
    """Return the JSON document a delivery carries: the body, or the ``payload`` field of a form body."""
    kind = media_type(content_type)
    if kind == JSON_TYPE:
        return body
    if kind != FORM_TYPE:
        raise UnsupportedMediaType(f"content type must be {JSON_TYPE} or {FORM_TYPE}")
    values = []
    # maxsplit: a body of millions of '&' must not become millions of objects before it is refused.
    for field in body.split(b"&", MAX_FORM_FIELDS + 1)[:MAX_FORM_FIELDS + 1]:
        name, equals, value = field.partition(b"=")
        if not equals:
            raise BadRequest("form body is not valid application/x-www-form-urlencoded")
        if form_unquote(name) == b"payload":
            values.append(form_unquote(value))
    if len(values) != 1:
        raise BadRequest("form body must carry exactly one 'payload' field")
    return values[0]


_IS_PERCENT = bytes(int(byte == ord("%")) for byte in range(256))
_IS_HEX_DIGIT = bytes(int(chr(byte) in string.hexdigits) for byte in range(256))


def form_unquote(value: bytes, *, slice_bytes: int = DECODE_SLICE_BYTES) -> bytes:
    """Decode one form-encoded name or value: ``+`` is a space, then ``%XX`` escapes as ``unquote_to_bytes`` does.

    Malformed escapes (``%`` not followed by two hex digits) stay as they are. The value is
    decoded ``slice_bytes`` (at least 3) at a time, never cutting an escape in two.
    """
    value = value.replace(b"+", b" ")
    if b"%" not in value:
        return value
    parts = []
    start = 0
    while start < len(value):
        end = min(start + slice_bytes, len(value))
        # A '%' in the last two bytes of a slice may begin an escape: start the next slice with it.
        if end < len(value) and (cut := value.rfind(b"%", end - 2, end)) > start:
            end = cut
        parts.append(_percent_decoded(value[start:end]))
        start = end
    return b"".join(parts)


def _percent_decoded(value: bytes) -> bytes:
    """Percent-decode ``value`` exactly as :func:`urllib.parse.unquote_to_bytes`, in C rather than once per escape.

    ``unquote_to_bytes`` takes a Python loop step per ``%``: 10 s for the 8 million escapes of a
    25 MB body (30 s when they are malformed), spent before anyone knows whether it is signed.
    Here bulk operations mark the ``%`` of each well-formed escape, turn it into quoted-printable's
    ``=`` (a literal ``=`` becoming ``=3D``), and :func:`binascii.a2b_qp` decodes every ``=XX``.
    """
    value = value.replace(b"=", b"=3D")
    # One byte per input byte, 1 or 0; as integers, the byte after any byte sits 8 bits lower.
    percent = int.from_bytes(value.translate(_IS_PERCENT), "big")
    hex_digit = int.from_bytes(value.translate(_IS_HEX_DIGIT), "big")
    well_formed = percent & (hex_digit << 8) & (hex_digit << 16)
    # ord("%") + 0x18 == ord("="); adding 0 or 0x18 to each byte never carries into the next.
    marked = int.from_bytes(value, "big") + well_formed * (ord("=") - ord("%"))
    # Every '=' left is followed by two hex digits, so a2b_qp sees no soft line break or stray '='.
    return binascii.a2b_qp(marked.to_bytes(len(value), "big"))


def decode_body(body: bytes, content_type: str | None) -> Mapping[str, Any]:
    """Decode a JSON or form-encoded (``payload=<json>``) delivery body into a mapping."""
    try:
        text = payload_bytes(body, content_type).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest("payload is not UTF-8") from exc
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


#: GitHub and GitLab list at most this many commits in a push payload.
PAYLOAD_COMMIT_LIMIT = 20


def _changed_paths(commits: object, *, total: object = None) -> tuple[str, ...] | None:
    """Collect added, modified and removed files from a payload's commits, if it lists every commit."""
    if not isinstance(commits, list) or not commits or len(commits) >= PAYLOAD_COMMIT_LIMIT:
        return None
    if isinstance(total, int) and total != len(commits):
        return None
    paths: set[str] = set()
    for commit in commits:
        for key in ("added", "modified", "removed"):
            files = _get(commit, key)
            if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
                return None
            paths.update(files)
    return tuple(sorted(paths))


def _push(forge: str, *, repo: object, ref: object, sha: object, before: object, delivery_id: str | None,
          default_branch: object = None, pusher: object = None, message: object = None,
          changed_paths: tuple[str, ...] | None = None) -> PushEvent:
    """Validate the fields every forge shares and build the :class:`PushEvent`."""
    if not isinstance(repo, str) or not repo:
        raise BadRequest("payload does not name the repository")
    return PushEvent(
        forge=forge,
        repo=_text(repo, "repository name", defaults.MAX_REPO_NAME_CHARS),
        ref=validate_ref(ref),
        sha=validate_sha(sha),
        before=validate_sha(before or ZERO_SHA),
        pusher=_text(pusher, "pusher name", defaults.MAX_PUSHER_CHARS) if isinstance(pusher, str) else "",
        delivery_id=delivery_id,
        default_branch=(_text(default_branch, "default branch", defaults.MAX_REF_CHARS)
                        if isinstance(default_branch, str) else None),
        message=message if isinstance(message, str) else "",
        changed_paths=changed_paths,
    )


def _text(value: str, what: str, max_chars: int) -> str:
    """Return a payload string that a database column holds as it is, or raise.

    PostgreSQL refuses NUL characters and strings longer than the column; no database stores a
    lone surrogate (JSON's ``"\\ud800"``) as UTF-8.
    """
    if len(value) > max_chars:
        raise BadRequest(f"{what} is longer than {max_chars} characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise BadRequest(f"{what} is not valid text") from exc
    if "\0" in value:
        raise BadRequest(f"{what} is not valid text")
    return value


def _joined(*parts: str | None) -> str | None:
    """Join the present parts of a delivery key with ``:``; ``None`` if the last is absent."""
    if not parts[-1]:
        return None
    return ":".join(part for part in parts if part)


def _first(headers: Mapping[str, str], *names: str) -> str | None:
    """Return the first of ``names`` present in ``headers``."""
    return next((headers[n] for n in names if headers.get(n)), None)


def _delivery_header(headers: Mapping[str, str], *names: str) -> str | None:
    """Return the first of ``names`` present in ``headers``, refusing a value no forge sends as a delivery id.

    Forges send UUIDs and numbers; a long value would overflow the store's delivery key, and
    control characters would forge lines in our log.
    """
    name = next((n for n in names if headers.get(n)), None)
    if name is None:
        return None
    value = headers[name]
    if len(value) > defaults.MAX_DELIVERY_ID_CHARS or not (value.isascii() and value.isprintable()):
        raise BadRequest(f"{name} header is not a delivery id (printable ASCII, "
                         f"at most {defaults.MAX_DELIVERY_ID_CHARS} characters)")
    return value


def _ref_key(ref: object) -> str | None:
    """Return how a delivery id names one of several refs: the ref, or its SHA-256 when it is long."""
    if not isinstance(ref, str):
        return None  # no delivery id; the ref itself is refused when the event is built
    if len(ref) > defaults.MAX_DELIVERY_ID_CHARS:
        return hashlib.sha256(ref.encode("utf-8", "surrogatepass")).hexdigest()
    return ref


Parsed = list[PushEvent] | Ignored


def parse_github(headers: Mapping[str, str], payload: Mapping[str, Any]) -> Parsed:
    """Parse a GitHub delivery (``X-GitHub-Event``)."""
    event = headers.get("x-github-event")
    if not event:
        raise BadRequest("missing X-GitHub-Event header")
    if event != "push":
        return Ignored(event if event == "ping" else f"event {event!r} is not a push")
    if _get(payload, "deleted") is True or _get(payload, "after") == ZERO_SHA:
        return Ignored("ref deleted")
    head = _get(payload, "head_commit") or {}
    return [_push(
        "github",
        repo=_get(payload, "repository", "full_name"),
        ref=_get(payload, "ref"),
        # For an annotated tag `after` is the tag object; head_commit is the commit.
        sha=_get(head, "id") or _get(payload, "after"),
        before=_get(payload, "before"),
        # The delivery id is shared by every hook on the event: dedupe on (hook id, delivery id).
        delivery_id=_joined(_delivery_header(headers, "x-github-hook-id"), _delivery_header(headers, "x-github-delivery")),
        default_branch=_get(payload, "repository", "default_branch"),
        pusher=_get(payload, "pusher", "name"),
        message=_get(head, "message"),
        changed_paths=_changed_paths(_get(payload, "commits")),
    )]


GITLAB_PUSH_KINDS = {"push", "tag_push"}


def parse_gitlab(headers: Mapping[str, str], payload: Mapping[str, Any]) -> Parsed:
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
    return [_push(
        "gitlab",
        repo=_get(payload, "project", "path_with_namespace"),
        ref=_get(payload, "ref"),
        sha=sha,
        before=_get(payload, "before"),
        # Resends keep webhook-id / Idempotency-Key; X-Gitlab-Event-UUID identifies older ones. webhook-id
        # first: with a signing token it is signed, so a replay cannot change it as it can Idempotency-Key.
        delivery_id=_delivery_header(headers, "webhook-id", "idempotency-key", "x-gitlab-event-uuid"),
        default_branch=_get(payload, "project", "default_branch"),
        pusher=_get(payload, "user_username") or _get(payload, "user_name"),
        message=head.get("message"),
        changed_paths=_changed_paths(commits, total=_get(payload, "total_commits_count")),
    )]


def parse_gitea(headers: Mapping[str, str], payload: Mapping[str, Any]) -> Parsed:
    """Parse a Gitea, Forgejo or Gogs delivery (``X-Gitea-Event`` / ``X-Forgejo-Event`` / ``X-Gogs-Event``)."""
    event = _first(headers, "x-forgejo-event", "x-gitea-event", "x-gogs-event")
    if not event:
        raise BadRequest("missing X-Gitea-Event (or X-Forgejo-Event, X-Gogs-Event) header")
    if event != "push":
        return Ignored(f"event {event!r} is not a push")
    if _get(payload, "after") == ZERO_SHA:
        return Ignored("ref deleted")
    head = _get(payload, "head_commit") or {}
    return [_push(
        "gitea",
        repo=_get(payload, "repository", "full_name"),
        ref=_get(payload, "ref"),
        sha=_get(payload, "after"),
        before=_get(payload, "before"),
        delivery_id=_delivery_header(headers, "x-forgejo-delivery", "x-gitea-delivery", "x-gogs-delivery"),
        default_branch=_get(payload, "repository", "default_branch"),
        pusher=_get(payload, "pusher", "login") or _get(payload, "pusher", "username"),
        message=_get(head, "message"),
        changed_paths=_changed_paths(_get(payload, "commits"), total=_get(payload, "total_commits")),
    )]


#: Bitbucket's change types (Cloud: ``new.type``; Data Center: ``ref.type``) and their ref prefixes.
_BITBUCKET_REF_KINDS = {"branch": "refs/heads/", "tag": "refs/tags/", "annotated_tag": "refs/tags/"}


def parse_bitbucket(headers: Mapping[str, str], payload: Mapping[str, Any]) -> Parsed:
    """Parse Bitbucket Cloud ``repo:push`` and Data Center ``repo:refs_changed``; one push may change several refs."""
    event = headers.get("x-event-key")
    if not event:
        raise BadRequest("missing X-Event-Key header")
    if event == "repo:push":
        repo, changes = _get(payload, "repository", "full_name"), _bitbucket_cloud_changes(payload)
        pusher = _get(payload, "actor", "nickname") or _get(payload, "actor", "display_name")
    elif event == "repo:refs_changed":
        key, slug = _get(payload, "repository", "project", "key"), _get(payload, "repository", "slug")
        repo = f"{key}/{slug}" if isinstance(key, str) and isinstance(slug, str) else None
        changes = _bitbucket_server_changes(payload)
        pusher = _get(payload, "actor", "name")
    else:
        return Ignored("ping" if event == "diagnostics:ping" else f"event {event!r} is not a push")
    delivery = _delivery_header(headers, "x-request-uuid", "x-request-id")
    events = [
        _push("bitbucket", repo=repo, ref=ref, sha=sha, before=before, pusher=pusher, message=message,
              delivery_id=_joined(delivery, _ref_key(ref)) if delivery else None)
        for ref, sha, before, message in changes
    ]
    return events or Ignored("ref deleted")


def _bitbucket_cloud_changes(payload: Mapping[str, Any]) -> list[tuple[object, object, object, object]]:
    """Return (ref, sha, before, message) for each created or updated ref of a Cloud push."""
    changes = _get(payload, "push", "changes")
    if not isinstance(changes, list):
        raise BadRequest("payload field push.changes must be a list")
    found = []
    for change in changes:
        new = _get(change, "new")
        if not isinstance(new, Mapping) or _get(change, "closed") is True:
            continue  # a deleted branch or tag
        prefix = _BITBUCKET_REF_KINDS.get(new.get("type"))
        name = new.get("name")
        if prefix is None or not isinstance(name, str):
            raise BadRequest("push change has no branch or tag name")
        found.append((prefix + name, _get(new, "target", "hash"), _get(change, "old", "target", "hash"),
                      _get(new, "target", "message")))
    return found


def _bitbucket_server_changes(payload: Mapping[str, Any]) -> list[tuple[object, object, object, object]]:
    """Return (ref, sha, before, message) for each added or updated ref of a Data Center push."""
    changes = _get(payload, "changes")
    if not isinstance(changes, list):
        raise BadRequest("payload field changes must be a list")
    return [
        (_get(c, "ref", "id") or _get(c, "refId"), _get(c, "toHash"), _get(c, "fromHash"), None)
        for c in changes
        if _get(c, "type") != "DELETE" and _get(c, "toHash") != ZERO_SHA
    ]


PARSERS: dict[str, Callable[[Mapping[str, str], Mapping[str, Any]], Parsed]] = {
    "github": parse_github,
    "gitlab": parse_gitlab,
    "gitea": parse_gitea,
    "bitbucket": parse_bitbucket,
}
