"""Which repositories a delivery is signed for (webhook/forges/signing.py): each secret checked, the signed message extracted once."""

import json
from dataclasses import replace
from urllib.parse import quote

import pytest

from webhook.errors import SignatureError
from webhook.events import payload_bytes
from webhook.forges import REGISTRY
from webhook.forges.base import Clock, DeliveryKeys, Forge
from webhook.forges.signing import signed_for
from webhook.signatures import hmac_hex, sign_github

CLOCK = Clock(now=1_700_000_000.0, tolerance_s=300)
FORM = "application/x-www-form-urlencoded"
PAYLOAD = json.dumps({"ref": "refs/heads/main", "repository": {"full_name": "acme/r17"}}).encode()
FORM_BODY = b"payload=" + quote(PAYLOAD).encode()
THIRTY = [DeliveryKeys(name=f"acme/r{i}", secret=f"secret-{i}") for i in range(30)]


def counting_gitea() -> tuple[Forge, list[bytes]]:
    """The Gitea forge, its message extractor wrapped to record each body it is given."""
    calls: list[bytes] = []
    extract = REGISTRY["gitea"].signed_bytes

    def signed_bytes(headers, body):
        calls.append(body)
        return extract(headers, body)

    return replace(REGISTRY["gitea"], signed_bytes=signed_bytes), calls


def test_a_form_body_is_decoded_once_for_thirty_secrets():
    """With 30 repositories on 30 secrets, a Gitea form delivery's payload is decoded once, and the one secret that signed it matches."""
    gitea, calls = counting_gitea()
    headers = {"content-type": FORM, "x-gitea-signature": hmac_hex("secret-17", PAYLOAD)}
    assert signed_for(gitea, headers, FORM_BODY, THIRTY, CLOCK) == {"acme/r17"}
    assert calls == [FORM_BODY]


def test_a_forged_form_delivery_costs_one_decode_for_thirty_secrets():
    """A wrong signature is refused after one decode of the body, not one per secret."""
    gitea, calls = counting_gitea()
    headers = {"content-type": FORM, "x-gitea-signature": "0" * 64}
    with pytest.raises(SignatureError):
        signed_for(gitea, headers, FORM_BODY, THIRTY, CLOCK)
    assert len(calls) == 1


@pytest.mark.parametrize("headers", [{"content-type": FORM}, {"content-type": FORM, "x-gitea-signature": ""}])
def test_an_unsigned_form_delivery_is_refused_before_it_is_decoded(monkeypatch, headers):
    """With no signature header there is nothing to verify: the body is not decoded at all."""
    decoded: list[bytes] = []
    # Counting only: the extractor reads the decoder from its module, so no forge value can reach it.
    monkeypatch.setattr("webhook.forges.gitea.payload_bytes", lambda body, kind: decoded.append(body) or payload_bytes(body, kind))
    with pytest.raises(SignatureError, match="missing X-Gitea-Signature"):
        signed_for(REGISTRY["gitea"], headers, FORM_BODY, THIRTY, CLOCK)
    assert decoded == []


def test_a_form_body_without_a_payload_field_is_a_signature_error():
    """A body the payload cannot be found in has nothing signed: 401, not a parse error."""
    headers = {"content-type": FORM, "x-gitea-signature": hmac_hex("secret-1", b"")}
    with pytest.raises(SignatureError, match="no payload to verify"):
        signed_for(REGISTRY["gitea"], headers, b"other=1", THIRTY, CLOCK)


def test_repositories_sharing_a_secret_all_match_and_others_do_not():
    """Two repositories behind one organisation hook both match; a third with its own secret does not."""
    repos = [DeliveryKeys("acme/a", "shared"), DeliveryKeys("acme/b", "shared"), DeliveryKeys("acme/c", "own")]
    body = b'{"ok": true}'
    assert signed_for(REGISTRY["github"], {"x-hub-signature-256": sign_github(body, "shared")}, body, repos, CLOCK) == {
        "acme/a", "acme/b"}


def test_no_repository_for_the_forge_is_a_signature_error():
    """A forge endpoint with no repository configured refuses every delivery."""
    with pytest.raises(SignatureError, match="no repository is configured"):
        signed_for(REGISTRY["gitea"], {"content-type": FORM, "x-gitea-signature": "0" * 64}, FORM_BODY, [], CLOCK)
