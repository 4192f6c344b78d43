"""The forge registry, and which repositories a delivery is signed for.

Every registered forge has every part, a forge missing one fails when it is defined (not when a
delivery needs it), and the tables the rest of pushbuild reads are derived from the forges. Then
``signed_for``: each secret checked, the signed message extracted once.
"""

import json
from dataclasses import replace
from urllib.parse import quote

import pytest

from webhook import forges
from webhook.errors import SignatureError, UnknownForge
from webhook.events import payload_bytes
from webhook.forges import (
    ALIASES,
    FORGES,
    NAMES,
    REGISTRY,
    REQUIRED_PARTS,
    SIGNATURE_HEADERS,
    STATES,
    Clock,
    DeliveryKeys,
    Forge,
    bitbucket,
    github,
    gitlab,
    signed_for,
)
from webhook.signatures import hmac_hex, sign_github

CLOCK = Clock(now=1_700_000_000.0, tolerance_s=300)
FORM = "application/x-www-form-urlencoded"
PAYLOAD = json.dumps({"ref": "refs/heads/main", "repository": {"full_name": "acme/r17"}}).encode()
FORM_BODY = b"payload=" + quote(PAYLOAD).encode()
THIRTY = [DeliveryKeys(name=f"acme/r{i}", secret=f"secret-{i}") for i in range(30)]
EACH_FORGE = pytest.mark.parametrize("forge", REGISTRY.values(), ids=REGISTRY)


# The registry


def test_the_registry_lists_each_forge_once_under_its_own_name():
    """GitHub, GitLab, Gitea (with Forgejo and Gogs) and Bitbucket, in the order messages name them."""
    assert FORGES == ("github", "gitlab", "gitea", "bitbucket")
    assert dict(ALIASES) == {"forgejo": "gitea", "gogs": "gitea"}
    assert NAMES == ("github", "gitlab", "gitea", "bitbucket", "forgejo", "gogs")
    assert all(REGISTRY[name].name == name for name in FORGES)


@EACH_FORGE
def test_every_registered_forge_has_every_part(forge):
    """Each forge gives its name, signature headers and check, signed bytes, parser, status API and git user."""
    for part in REQUIRED_PARTS:
        assert getattr(forge, part) not in (None, "", ()), part
    assert callable(forge.signed_bytes) and callable(forge.check) and callable(forge.parse)
    assert forge.signature_headers <= SIGNATURE_HEADERS
    for api in forge.status_apis:
        assert set(api.states) == set(STATES) and forges.status_api(api.name) is api


def test_the_required_parts_are_the_ones_a_forge_module_must_give():
    """Optional are only aliases and the configuration features a forge may have (GitLab's signing token)."""
    assert REQUIRED_PARTS == ("name", "signature_headers", "signed_bytes", "check", "parse", "status_apis", "git_username")


@pytest.mark.parametrize("part", REQUIRED_PARTS)
def test_a_forge_missing_a_part_fails_when_it_is_defined(part):
    """Leaving a part out is a TypeError at import, not a KeyError at request time."""
    parts = {name: getattr(github.FORGE, name) for name in REQUIRED_PARTS}
    del parts[part]
    with pytest.raises(TypeError, match=part):
        Forge(**parts)


@pytest.mark.parametrize("change, message", [
    ({"signed_bytes": None}, "signed_bytes must be callable"),
    ({"check": "verify"}, "check must be callable"),
    ({"parse": None}, "parse must be callable"),
    ({"status_apis": ()}, "status_apis must be a non-empty tuple"),
    ({"signature_headers": frozenset()}, "signature_headers must be a non-empty frozenset"),
    ({"signature_headers": frozenset({"X-Hub-Signature-256"})}, "lowercased"),
    ({"git_username": ""}, "git_username must be a non-empty string"),
    ({"name": "Git Hub"}, "must be lowercase"),
    ({"aliases": ["ghes"]}, "aliases must be a tuple"),
    ({"unsigned_warning": "is unsigned"}, "unsigned_warning needs signing_token"),
])
def test_a_forge_with_a_malformed_part_fails_when_it_is_defined(change, message):
    """A part of the wrong kind is refused as soon as the forge is made."""
    with pytest.raises(TypeError, match=message):
        replace(github.FORGE, **change)


def test_a_status_api_missing_a_state_fails_when_it_is_defined():
    """A status API must say what each of pending, success and failure is called."""
    with pytest.raises(TypeError, match="states must map exactly"):
        replace(github.STATUS_API, states={"pending": "pending", "success": "success"})
    with pytest.raises(TypeError, match="fields may only be filled from"):
        replace(github.STATUS_API, fields={"state": "colour"})


@pytest.mark.parametrize("clash, message", [
    ((github.FORGE, replace(gitlab.FORGE, name="github")), "'github' is claimed by both github and github"),
    ((github.FORGE, replace(gitlab.FORGE, aliases=("github",))), "'github' is claimed by both github and gitlab"),
    ((bitbucket.FORGE, replace(gitlab.FORGE, status_apis=(bitbucket.DATACENTER_STATUS_API,))),
     "status API 'bitbucket-datacenter' is defined twice"),
])
def test_two_forges_claiming_one_name_fail_at_registration(clash, message):
    """Names and status API names are unique across the registry."""
    with pytest.raises(ValueError, match=message):
        forges.index(clash)


@pytest.mark.parametrize("name, expected", [
    ("github", "github"), ("gitlab", "gitlab"), ("gitea", "gitea"), ("forgejo", "gitea"), ("gogs", "gitea"),
    ("bitbucket", "bitbucket"),
])
def test_forge_resolves_names_and_aliases(name, expected):
    """Forgejo and Gogs follow Gitea's rules."""
    assert forges.forge(name) is REGISTRY[expected]


@pytest.mark.parametrize("name", ["sourceforge", "GitHub", "", "bitbucket-datacenter"])
def test_an_unknown_forge_is_a_clear_error(name):
    """An unknown name says which names there are (a status API is not a forge)."""
    with pytest.raises(UnknownForge, match=r"no such forge: .* \(known: github, gitlab, gitea, bitbucket, forgejo, gogs\)"):
        forges.forge(name)


def test_status_apis_and_their_defaults():
    """Bitbucket has Cloud's and Data Center's APIs; Gitea and Data Center servers have no default URL."""
    assert {name: forge.status_api_names for name, forge in REGISTRY.items()} == {
        "github": ("github",), "gitlab": ("gitlab",), "gitea": ("gitea",),
        "bitbucket": ("bitbucket", "bitbucket-datacenter")}
    defaults = {api: forges.status_api(api).default_url for forge in REGISTRY.values() for api in forge.status_api_names}
    assert defaults == {"github": "https://api.github.com", "gitlab": "https://gitlab.com/api/v4", "gitea": None,
                        "bitbucket": "https://api.bitbucket.org/2.0", "bitbucket-datacenter": None}
    with pytest.raises(UnknownForge, match="no such status API: 'forgejo'"):
        forges.status_api("forgejo")


def test_forge_specific_facts():
    """The git user beside a token, which forges take a signing token, and the signature headers."""
    assert {name: forge.git_username for name, forge in REGISTRY.items()} == {
        "github": "x-access-token", "gitlab": "oauth2", "bitbucket": "x-token-auth", "gitea": "oauth2"}
    assert [name for name, forge in REGISTRY.items() if forge.signing_token] == ["gitlab"]
    assert [name for name, forge in REGISTRY.items() if forge.unsigned_warning] == ["gitlab"]
    assert SIGNATURE_HEADERS == {"x-hub-signature-256", "x-hub-signature", "x-gitlab-token", "webhook-signature",
                                 "webhook-id", "webhook-timestamp", "x-forgejo-signature", "x-gitea-signature",
                                 "x-gogs-signature"}


def test_a_forge_is_data():
    """A forge is a frozen value: nothing can change a registered forge's rules at run time."""
    with pytest.raises(AttributeError):
        github.FORGE.git_username = "other"  # type: ignore[misc]


# signed_for


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
