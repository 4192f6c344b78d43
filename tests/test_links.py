"""The links to a build that replies, statuses and hook messages carry."""

import pytest

from webhook import links
from webhook.links import base_url, build_links, build_url


@pytest.mark.parametrize(("public", "request_base", "expected"), [
    ("https://pb.example.com", "http://10.0.0.1:8080/", "https://pb.example.com"),
    (None, "http://10.0.0.1:8080/", "http://10.0.0.1:8080"),
    (None, None, "http://127.0.0.1:8080"),  # a worker, with no request: the default bind
])
def test_links_start_at_the_public_url_else_where_the_request_came_else_the_bind(public, request_base, expected):
    assert base_url(public, request_base) == expected


def test_a_builds_links():
    assert build_url("https://pb", 7) == "https://pb/api/builds/7"
    assert build_links("https://pb", 7) == {"url": "https://pb/api/builds/7", "log_url": "https://pb/api/builds/7/log",
                                            "deliveries_url": "https://pb/api/builds/7/deliveries"}


@pytest.mark.parametrize(("clone_url", "web"), [
    ("https://github.com/acme/app.git", "https://github.com/acme/app"),
    ("https://x-access-token:secret@gitlab.example.com:8443/group/app.git/", "https://gitlab.example.com:8443/group/app"),
    ("http://[::1]:3000/acme/app", "http://[::1]:3000/acme/app"),
    ("git@github.com:acme/app.git", None),
    ("ssh://git@example.com/acme/app.git", None),
    ("file:///srv/git/app", None),
])
def test_a_repositorys_web_address_comes_from_an_https_clone_url_without_credentials(clone_url, web):
    assert links.web_url(clone_url) == web


def test_commit_links_follow_each_forges_path():
    assert links.commit_url("https://gitlab.com/g/app.git", "/-/commit/{sha}", "abc") == "https://gitlab.com/g/app/-/commit/abc"
    assert links.commit_url("file:///srv/app", "/commit/{sha}", "abc") is None
    assert links.hook_url("https://ci.example", "gitea") == "https://ci.example/hooks/gitea"
