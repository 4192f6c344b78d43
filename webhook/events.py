"""Push deliveries, whatever the forge: the body as sent, decoded, and the forge-neutral value it becomes. Performs no I/O.

Callers verify the signature over the raw body first, then call :func:`decode_body` and the
forge's parser (``forge.parse``, see :mod:`webhook.forges`), which returns :class:`PushEvent`
values or :class:`Ignored`. What is here knows no forge: body decoding is shared by the view and
by Gitea's signature (which covers the JSON inside a form body).
"""

from __future__ import annotations

import binascii
import json
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import BadRequest, UnsupportedMediaType
from .refs import is_branch, short_name

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
    """Refuse JSON nested deeper than :data:`MAX_JSON_DEPTH`, counting brackets outside strings.

    The strings go first, in one regular-expression pass; only the brackets left are counted.
    (A loop over every character in Python cost a millisecond on a GitHub push payload.) Text
    with no more opening brackets than the limit, strings included, cannot be nested deeper:
    that is counted first (a push of one commit has about 60; the pass costs 0.1 ms on it).
    """
    if text.count("[") + text.count("{") <= MAX_JSON_DEPTH:
        return
    depth = 0
    for bracket in _NOT_BRACKETS.sub("", _JSON_STRING.sub("", text)):
        if bracket in "[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                raise BadRequest(f"JSON is nested deeper than {MAX_JSON_DEPTH} levels")
        else:
            depth -= 1


#: A JSON string, escapes included. An unterminated one runs to the end (the parser refuses it),
#: so no quote is a fresh start: one pass, whatever the text (a search that failed at each of
#: a million escaped quotes would go over the rest of the body a million times). Possessive: a
#: pusher's commit message of a million newlines (each an escape) must not leave a million
#: backtracking points behind (60 bytes each).
_JSON_STRING = re.compile(r'"[^"\\]*+(?:\\.[^"\\]*+)*+(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKETS = re.compile(r"[^\[\]{}]+")


#: What a forge's parser (``Forge.parse``) makes of a verified delivery: the pushes to build, or why none.
Parsed = list[PushEvent] | Ignored
