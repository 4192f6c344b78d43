"""Who a request comes from: tokens by digest, scopes in order, and a trusted proxy's user. No I/O."""

import ipaddress

import pytest

from webhook.auth import METRICS, OPERATE, READ, Authenticator, Principal

READER, OPERATOR = "r" * 40, "o" * 40
PROXY = ipaddress.ip_network("10.1.2.0/24")


@pytest.fixture
def auth():
    return Authenticator([("dash", READER, READ), ("bot", OPERATOR, OPERATE)], trusted_header="x-forwarded-user",
                         trusted_proxies=[PROXY], operators=["alice"])


def test_scopes_are_ordered():
    assert Principal("a", OPERATE, "token").may(READ) and Principal("a", OPERATE, "token").may(OPERATE)
    assert Principal("a", READ, "token").may(READ) and not Principal("a", READ, "token").may(OPERATE)
    assert Principal("a", READ, "token").may(METRICS) and Principal("a", METRICS, "token").may(METRICS)
    assert not Principal("a", METRICS, "token").may(READ)


@pytest.mark.parametrize(("header", "who"), [
    (f"Bearer {READER}", ("dash", READ)), (f"bearer  {OPERATOR} ", ("bot", OPERATE)),
    (f"Basic {READER}", None), ("Bearer", None), ("", None), (None, None), (f"Bearer {READER}x", None),
    (f"Bearer {READER[:-1]}", None), ("Bearer \udcff" + READER, None),
])
def test_a_bearer_header_names_its_tokens_holder_or_nobody(auth, header, who):
    found = auth.by_authorization(header)
    assert (None if found is None else (found.name, found.scope)) == who


def test_tokens_are_kept_as_digests_only(auth):
    assert all(READER.encode() not in entry.digest and len(entry.digest) == 32 for entry in auth.tokens)


@pytest.mark.parametrize(("remote", "user", "who"), [
    ("10.1.2.3", "bob", ("bob", READ)), ("10.1.2.3", "alice", ("alice", OPERATE)),
    ("::ffff:10.1.2.3", "bob", ("bob", READ)), ("10.1.3.1", "bob", None), ("not-an-address", "bob", None),
    ("10.1.2.3", "", None), ("10.1.2.3", "a, b", None), ("10.1.2.3", "x" * 257, None), ("10.1.2.3", "a\nb", None),
])
def test_a_proxy_user_counts_only_from_a_trusted_proxy(auth, remote, user, who):
    found = auth.by_proxy(remote, {"x-forwarded-user": user})
    assert (None if found is None else (found.name, found.scope)) == who


def test_with_nothing_configured_nobody_can_sign_in():
    assert not Authenticator([]).configured
    assert Authenticator([("a", READER, READ)]).configured
