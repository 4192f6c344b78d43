"""Signature checks against the forges' published vectors, and how they fail."""

import pytest

from webhook.errors import SignatureError
from webhook.signatures import (
    ed25519_public_key,
    new_ed25519_secret_key,
    sign_ed25519,
    sign_github,
    sign_standard_webhook,
    verify_ed25519,
    verify_github,
    verify_hmac_hex,
    verify_standard_webhook,
    verify_token,
)

# GitHub docs, "Validating webhook deliveries".
GITHUB_SECRET = "It's a Secret to Everybody"
GITHUB_BODY = b"Hello, World!"
GITHUB_SIGNATURE = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"

# Standard Webhooks specification, example signature.
SW_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SW_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SW_TIMESTAMP = 1614265330
SW_BODY = b'{"test": 2432232314}'
SW_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_github_signature_matches_the_documented_vector():
    """Signing GitHub's documented body with its secret gives its documented signature."""
    assert sign_github(GITHUB_BODY, GITHUB_SECRET) == GITHUB_SIGNATURE
    verify_github(GITHUB_BODY, GITHUB_SIGNATURE, GITHUB_SECRET)


@pytest.mark.parametrize("header, secret, body", [
    (None, GITHUB_SECRET, GITHUB_BODY),                                  # missing header
    ("", GITHUB_SECRET, GITHUB_BODY),                                    # empty header
    (GITHUB_SIGNATURE, None, GITHUB_BODY),                               # no secret configured
    (GITHUB_SIGNATURE, "", GITHUB_BODY),                                 # empty secret
    (GITHUB_SIGNATURE, "another secret", GITHUB_BODY),                   # another repo's secret
    (GITHUB_SIGNATURE, GITHUB_SECRET, b"Hello, World!\n"),               # body changed
    (GITHUB_SIGNATURE.upper(), GITHUB_SECRET, GITHUB_BODY),              # wrong case
    (GITHUB_SIGNATURE.replace("sha256=", "sha1="), GITHUB_SECRET, GITHUB_BODY),  # wrong prefix
    (GITHUB_SIGNATURE[len("sha256="):], GITHUB_SECRET, GITHUB_BODY),     # no prefix
    (GITHUB_SIGNATURE[:-1], GITHUB_SECRET, GITHUB_BODY),                 # truncated
    (GITHUB_SIGNATURE[:-1] + "é", GITHUB_SECRET, GITHUB_BODY),           # non-ASCII
])
def test_github_signature_refuses(header, secret, body):
    """Anything but the exact signature under a configured secret is refused."""
    with pytest.raises(SignatureError) as raised:
        verify_github(body, header, secret)
    assert GITHUB_SIGNATURE[7:] not in raised.value.message


def test_standard_webhooks_signature_matches_the_spec_vector():
    """The Standard Webhooks example message signs to the spec's example signature."""
    assert sign_standard_webhook(SW_BODY, msg_id=SW_ID, timestamp=SW_TIMESTAMP, secret=SW_SECRET) == SW_SIGNATURE
    verify_standard_webhook(SW_BODY, msg_id=SW_ID, timestamp=str(SW_TIMESTAMP), signature=SW_SIGNATURE,
                            secret=SW_SECRET, now=SW_TIMESTAMP + 10, tolerance_s=300)


def test_standard_webhooks_accepts_any_listed_signature():
    """A rotated secret sends several signatures; one match is enough."""
    verify_standard_webhook(SW_BODY, msg_id=SW_ID, timestamp=str(SW_TIMESTAMP),
                            signature=f"v1,AAAA {SW_SIGNATURE}", secret=SW_SECRET,
                            now=SW_TIMESTAMP, tolerance_s=300)


@pytest.mark.parametrize("changes", [
    {"signature": None},
    {"msg_id": None},
    {"timestamp": None},
    {"timestamp": "16142653x0"},
    {"now": SW_TIMESTAMP + 301},                        # too old
    {"now": SW_TIMESTAMP - 301},                        # from the future
    {"body": b'{"test": 2432232315}'},
    {"msg_id": "msg_other"},
    {"signature": SW_SIGNATURE.replace("v1,", "v1a,")},
    {"secret": "whsec_" + "A" * 32},
    {"secret": None},
])
def test_standard_webhooks_refuses(changes):
    """A missing header, a stale timestamp or any changed input fails the check."""
    args = dict(body=SW_BODY, msg_id=SW_ID, timestamp=str(SW_TIMESTAMP), signature=SW_SIGNATURE,
                secret=SW_SECRET, now=SW_TIMESTAMP, tolerance_s=300)
    args.update(changes)
    body = args.pop("body")
    with pytest.raises(SignatureError):
        verify_standard_webhook(body, **args)


#: Digits only, but no Unix time: int() refuses more than 4300 digits with a ValueError.
HUGE_TIMESTAMPS = ["9" * 5000, "0" * 4301 + str(SW_TIMESTAMP), "1" * 13, "١٦١٤٢٦٥٣٣٠", "²"]


@pytest.mark.parametrize("timestamp", HUGE_TIMESTAMPS)
def test_standard_webhooks_refuses_timestamps_that_are_no_unix_time(timestamp):
    """A 5,000-digit, over-long or non-ASCII-digit webhook-timestamp is a SignatureError (401), never a ValueError (500)."""
    with pytest.raises(SignatureError, match="not a Unix time"):
        verify_standard_webhook(SW_BODY, msg_id=SW_ID, timestamp=timestamp, signature=SW_SIGNATURE,
                                secret=SW_SECRET, now=SW_TIMESTAMP, tolerance_s=300)


@pytest.mark.parametrize("timestamp", HUGE_TIMESTAMPS)
def test_ed25519_refuses_timestamps_that_are_no_unix_time(timestamp):
    """The asymmetric check refuses the same timestamps with a SignatureError, even signed ones."""
    secret_key = new_ed25519_secret_key()
    signature = sign_ed25519(SW_BODY, msg_id=SW_ID, timestamp=timestamp, secret_key=secret_key)
    with pytest.raises(SignatureError, match="not a Unix time"):
        verify_ed25519(SW_BODY, msg_id=SW_ID, timestamp=timestamp, signature=signature,
                       public_key=ed25519_public_key(secret_key), now=SW_TIMESTAMP, tolerance_s=300)


def test_ed25519_accepts_a_signature_within_the_tolerance():
    """The v1a signature of a current message verifies under its public key."""
    secret_key = new_ed25519_secret_key()
    signature = sign_ed25519(SW_BODY, msg_id=SW_ID, timestamp=SW_TIMESTAMP, secret_key=secret_key)
    verify_ed25519(SW_BODY, msg_id=SW_ID, timestamp=str(SW_TIMESTAMP), signature=signature,
                   public_key=ed25519_public_key(secret_key), now=SW_TIMESTAMP + 10, tolerance_s=300)


@pytest.mark.parametrize("header, secret, ok", [
    ("token", "token", True),
    ("token ", "token", False),
    ("TOKEN", "token", False),
    (None, "token", False),
    ("token", None, False),
    ("tokén", "token", False),
])
def test_gitlab_token_is_compared_exactly(header, secret, ok):
    """X-Gitlab-Token must equal the configured token exactly."""
    if ok:
        verify_token(header, secret)
    else:
        with pytest.raises(SignatureError):
            verify_token(header, secret)


@pytest.mark.parametrize("header, prefix, ok", [
    ("sha256=" + GITHUB_SIGNATURE[7:], "sha256=", True),      # Bitbucket: the GitHub vector under its header
    (GITHUB_SIGNATURE[7:], "", True),                          # Gitea: bare hex
    (GITHUB_SIGNATURE[7:], "sha256=", False),
    ("sha256=" + GITHUB_SIGNATURE[7:], "", False),
    (GITHUB_SIGNATURE[7:].upper(), "", False),
    (" " + GITHUB_SIGNATURE[7:], "", False),
])
def test_hex_hmac_headers_with_and_without_prefix(header, prefix, ok):
    """One helper checks every hex-HMAC forge; the prefix must be exactly the forge's."""
    if ok:
        verify_hmac_hex(GITHUB_BODY, header, GITHUB_SECRET, name="X-Test", prefix=prefix)
    else:
        with pytest.raises(SignatureError):
            verify_hmac_hex(GITHUB_BODY, header, GITHUB_SECRET, name="X-Test", prefix=prefix)
