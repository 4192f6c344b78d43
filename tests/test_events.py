"""Delivery bodies, whatever the forge: JSON or form-encoded, decoded exactly and refused when malformed.

Each forge's parser is tested beside its module, in tests/forges/.
"""

import json
import random
import tracemalloc
from urllib.parse import quote, quote_plus, unquote_to_bytes

import pytest

from webhook.errors import BadRequest, UnsupportedMediaType
from webhook.events import decode_body, form_unquote, payload_bytes

from .helpers.support import fixture


def test_form_encoded_body_carries_the_json_payload():
    """GitHub's form deliveries send payload=<percent-encoded JSON>."""
    payload = fixture("github/push_branch.json")
    body = ("payload=" + quote(json.dumps(payload))).encode()
    assert decode_body(body, "application/x-www-form-urlencoded") == payload


@pytest.mark.parametrize("body, content_type, error", [
    (b"{", "application/json", BadRequest),
    (b"[1, 2]", "application/json", BadRequest),
    (b"\xff\xfe", "application/json", BadRequest),
    (b"[" * 100 + b"]" * 100, "application/json", BadRequest),
    (b"payload=%7B&payload=%7B", "application/x-www-form-urlencoded", BadRequest),
    (b"other=1", "application/x-www-form-urlencoded", BadRequest),
    (b"{}", "text/plain", UnsupportedMediaType),
    (b"{}", None, UnsupportedMediaType),
])
def test_malformed_bodies_are_refused(body, content_type, error):
    """Bodies that are not a JSON object, deeply nested, or of another type are refused."""
    with pytest.raises(error):
        decode_body(body, content_type)


def test_brackets_inside_strings_do_not_count_as_nesting():
    """Depth is counted outside strings only."""
    assert decode_body(b'{"a": "' + b"[" * 200 + b'"}', "application/json") == {"a": "[" * 200}
    assert decode_body(b'{"a": "\\"' + b"{" * 200 + b'\\\\", "b": [[1]]}', "application/json") == {
        "a": '"' + "{" * 200 + "\\", "b": [[1]]}


def test_an_escaped_quote_does_not_end_a_string_that_hides_nesting():
    """A backslash escaped before a quote leaves the quote to end the string: the brackets after it count."""
    deep = b"[" * 100 + b"]" * 100
    with pytest.raises(BadRequest, match="nested deeper"):
        decode_body(b'{"a": "x\\\\", "b": ' + deep + b"}", "application/json")


def test_a_string_of_a_million_escapes_is_checked_without_memory_growing_with_it():
    """A pusher chooses the commit message: a million newlines (escapes) must not cost a backtracking point each."""
    body = b'{"head_commit": {"message": "' + b"\\n" * 1_000_000 + b'"}}'
    tracemalloc.start()
    try:
        decoded = decode_body(body, "application/json")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert decoded["head_commit"]["message"] == "\n" * 1_000_000
    assert peak < 8 * len(body)  # the text and what json makes of it; a point an escape was 60 bytes each


def test_form_payload_bytes_are_the_exact_json_signed():
    """Gitea signs the JSON payload; the form field decodes back to those exact bytes."""
    raw = json.dumps({"a": "é & = +"}).encode()
    assert payload_bytes(b"payload=" + quote(raw).encode(), "application/x-www-form-urlencoded") == raw
    assert payload_bytes(b"payload=" + quote_plus(raw).encode(), "application/x-www-form-urlencoded") == raw


#: Inputs where percent-decoding has edge cases, and where quoted-printable (which the decoder
#: builds on) differs from it: '=', soft line breaks, '_', malformed and cut escapes.
TRICKY_FORM_VALUES = [
    b"", b"%", b"%%", b"%4", b"%zz", b"%4g", b"%%41", b"%4%41", b"%41%", b"%41%4", b"=", b"==", b"=41", b"=\n",
    b"=\r\n", b"%=41", b"%0A", b"%0d%0A", b"%3d%3D=3D", b"_%5F_", b"a+b%2Bc", b"%e2%82%AC", b"\x00%00\xff%FF",
    bytes(range(256)), quote(bytes(range(256))).encode(),
]


@pytest.mark.parametrize("value", TRICKY_FORM_VALUES)
@pytest.mark.parametrize("slice_bytes", [3, 4, 5, 64 * 1024])
def test_form_values_decode_exactly_as_the_standard_library_decodes_them(value, slice_bytes):
    """'+' is a space, then every byte matches unquote_to_bytes, whatever slices the value is decoded in."""
    assert form_unquote(value, slice_bytes=slice_bytes) == unquote_to_bytes(value.replace(b"+", b" "))


@pytest.mark.parametrize("slice_bytes", [3, 4, 7, 64 * 1024])
def test_random_form_values_decode_exactly_as_the_standard_library_decodes_them(slice_bytes):
    """Thousands of random values over an alphabet of escapes, '=', '+', line ends and hex digits decode as unquote_to_bytes does."""
    alphabet = b"%%%=+_\r\n \x00\xff\xc3aAzZ0129fFgG3D"
    rng = random.Random(7)
    for _ in range(3000):
        value = bytes(rng.choice(alphabet) for _ in range(rng.randint(0, 24)))
        assert form_unquote(value, slice_bytes=slice_bytes) == unquote_to_bytes(value.replace(b"+", b" ")), value


def test_a_form_field_of_many_slices_of_escapes_decodes_exactly():
    """A 1 MB payload of escapes, well-formed and malformed, decodes to the bytes unquote_to_bytes gives."""
    value = (b"%7B%7d%%zz%4=x+" * 70_000)
    assert payload_bytes(b"payload=" + value, "application/x-www-form-urlencoded") == unquote_to_bytes(
        value.replace(b"+", b" "))


def test_nesting_exactly_at_the_limit_is_taken_and_one_deeper_is_refused():
    """64 levels are taken, whether the text has few brackets (counted at once) or many more beside them; 65 are not."""
    lists = b"[" * 63 + b"]" * 63  # in an object: 64 levels
    assert decode_body(b'{"a": ' + lists + b"}", "application/json")["a"] == json.loads(lists)
    crowded = b'{"many": [' + b",".join([b"[]"] * 100) + b'], "a": ' + lists + b"}"
    assert len(decode_body(crowded, "application/json")["many"]) == 100
    for deeper in (b'{"a": [' + lists + b"]}", b'{"many": [' + b",".join([b"[]"] * 100) + b'], "a": [' + lists + b"]}"):
        with pytest.raises(BadRequest, match="nested deeper"):
            decode_body(deeper, "application/json")
