"""The forge registry (webhook/forges/__init__.py): the table of forges the rest of pushbuild reads.

Every registered forge has every part, two forges cannot claim one name, and the tables the
rest of pushbuild reads are derived from the forges. What a single forge value must hold is in
tests/forges/test_base.py, and ``signed_for`` in tests/forges/test_signing.py.
"""

from dataclasses import replace

import pytest

from webhook import forges
from webhook.errors import UnknownForge
from webhook.forges import (
    ALIASES,
    FORGES,
    NAMES,
    REGISTRY,
    REQUIRED_PARTS,
    SIGNATURE_HEADERS,
    STATES,
    bitbucket,
    github,
    gitlab,
)

EACH_FORGE = pytest.mark.parametrize("forge", REGISTRY.values(), ids=REGISTRY)


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
