"""Which clone URLs pushbuild will fetch from (webhook/urls.py), and URLs made fit for logs."""

import pytest

from webhook.urls import clone_url_problem, redacted_url


@pytest.mark.parametrize("url", [
    "https://github.com/acme/app.git", "http://127.0.0.1:8080/acme/app.git", "ssh://git@github.com/acme/app.git",
    "git@github.com:acme/app.git",
])
def test_network_urls_are_acceptable(url):
    assert clone_url_problem(url) is None


@pytest.mark.parametrize("url, problem", [
    ("", "must be a non-empty string"),
    (None, "must be a non-empty string"),
    ("-uhttps://x", "must not start with '-'"),
    ("https://github.com/acme/app .git", "must not contain spaces or control characters"),
    ("https://github.com/acme/\napp.git", "must not contain spaces or control characters"),
    ("ext::sh -c touch% /tmp/pwned", "must not contain spaces"),
    ("ext::sh%20-c%20touch", "must not use a git remote helper (such as ext::)"),
    ("fd::17", "must not use a git remote helper"),
    ("ftp://example.com/acme/app.git", "scheme must be one of https, http, ssh"),
    ("file:///srv/git/app.git", "scheme must be one of https, http, ssh (file:// needs allow_file_urls = true)"),
    ("https:///acme/app.git", "must name a host"),
    ("https://ghp_token@github.com/acme/app.git", "must not contain a user name, password or token"),
    ("http://user:pass@127.0.0.1/acme/app.git", "must not contain a user name, password or token"),
    ("ssh://git:pass@github.com/acme/app.git", "must not contain a password or token"),
])
def test_unsafe_urls_say_why_they_are_refused(url, problem):
    """Remote helpers run commands, a leading - reads as an option, and tokens belong in the environment."""
    assert problem in clone_url_problem(url)


def test_file_urls_need_opting_in():
    assert clone_url_problem("file:///srv/git/app.git", allow_file=True) is None
    assert clone_url_problem("/srv/git/app.git", allow_file=True) == "scheme must be one of https, http, ssh, file"


def test_redacted_urls_lose_their_user_information():
    shown = {"https://user:tok@github.com/acme/app.git": "https://github.com/acme/app.git",
             "ssh://git@github.com/acme/app.git": "ssh://github.com/acme/app.git",
             "https://github.com/acme/app.git": "https://github.com/acme/app.git",
             "git@github.com:acme/app.git": "git@github.com:acme/app.git"}
    assert {url: redacted_url(url) for url in shown} == shown
