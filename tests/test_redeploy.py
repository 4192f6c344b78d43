"""Redeploy hook messages: signed per Standard Webhooks, checked by an independent implementation."""

import base64
import json
import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from webhook.errors import SignatureError
from webhook.notify.redeploy import ImagePushed, command_argv, keel_request, message_body, standard_request
from webhook.signatures import ed25519_public_key, new_ed25519_secret_key, verify_ed25519

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SHA = "6113728f27ae82c7b1a177c8d03f9e96e0adf246"
EVENT = ImagePushed(repo="acme/app", forge="github", ref="refs/heads/main", sha=SHA, image="registry.example.com/acme/app",
                    tags=(f"registry.example.com/acme/app:{SHA}", "registry.example.com/acme/app:main"),
                    digest="registry.example.com/acme/app@sha256:" + "a" * 64, build_id=7,
                    build_url="https://pushbuild.example.com/api/builds/7")


def test_message_body_names_the_image_by_digest():
    """The body is a Standard Webhooks event: type, timestamp, and the pushed image's data."""
    body = json.loads(message_body(EVENT, at=1_700_000_000))
    assert body["type"] == "image.pushed" and body["timestamp"] == "2023-11-14T22:13:20Z"
    assert body["data"]["digest"] == EVENT.digest and body["data"]["tags"] == list(EVENT.tags)
    assert body["data"]["build_id"] == 7 and body["data"]["sha"] == SHA


def test_standard_hooks_verify_with_the_standardwebhooks_package():
    """The `standardwebhooks` reference implementation accepts our v1 signature."""
    body = message_body(EVENT, at=time.time())
    request = standard_request("https://deploy.example.com/hook", body, msg_id="pushbuild_1",
                               timestamp=int(time.time()), secret=SECRET, signing_key=None)
    assert Webhook(SECRET).verify(request.body, request.headers)["data"]["digest"] == EVENT.digest
    tampered = dict(request.headers, **{"webhook-id": "pushbuild_2"})
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(request.body, tampered)


def test_ed25519_signatures_need_only_the_public_key():
    """A v1a signature verifies with the whpk_ key, through cryptography directly and our shared check."""
    secret_key = new_ed25519_secret_key()
    public_key = ed25519_public_key(secret_key)
    body, now = message_body(EVENT, at=time.time()), int(time.time())
    request = standard_request("https://x/h", body, msg_id="pushbuild_3", timestamp=now, secret=SECRET, signing_key=secret_key)
    v1, v1a = request.headers["webhook-signature"].split(" ")
    assert v1.startswith("v1,") and v1a.startswith("v1a,")
    raw_public = base64.b64decode(public_key.removeprefix("whpk_"))
    Ed25519PublicKey.from_public_bytes(raw_public).verify(base64.b64decode(v1a[4:]), f"pushbuild_3.{now}.".encode() + body)
    verify_ed25519(body, msg_id="pushbuild_3", timestamp=str(now), signature=request.headers["webhook-signature"],
                   public_key=public_key, now=now, tolerance_s=300)
    with pytest.raises(SignatureError):
        verify_ed25519(body + b" ", msg_id="pushbuild_3", timestamp=str(now), signature=v1a,
                       public_key=public_key, now=now, tolerance_s=300)
    with pytest.raises(SignatureError):
        verify_ed25519(body, msg_id="pushbuild_3", timestamp=str(now), signature=v1a,
                       public_key=ed25519_public_key(new_ed25519_secret_key()), now=now, tolerance_s=300)


def test_keel_native_webhook_body():
    """Keel's native webhook takes the image name and the tag to roll out."""
    request = keel_request("http://keel:9300/v1/webhooks/native", EVENT)
    assert json.loads(request.body) == {"name": "registry.example.com/acme/app", "tag": "main"}


def test_command_arguments_are_filled_one_for_one_without_a_shell():
    """Templates fill single arguments; nothing a value contains can add arguments."""
    weird = ImagePushed(**{**EVENT.__dict__, "ref": "refs/heads/a b; rm -rf /"})
    assert command_argv(["/usr/bin/deploy", "--image={digest}", "{ref}", "{build_id}"], weird) == [
        "/usr/bin/deploy", f"--image={EVENT.digest}", "refs/heads/a b; rm -rf /", "7"]
