"""Taking a push in (webhook/intake.py): intake.receive called with a delivery's bytes and headers, no Flask."""

import json
import time

import pytest

from webhook import forges
from webhook.errors import NotFound, SignatureError
from webhook.intake import Intake, receive
from webhook.services import Services
from webhook.worker import Dispatcher, make_celery

from .helpers.configs import GITHUB_SECRET, GITLAB_TOKEN, repo_table
from .helpers.support import fixture, github_headers, github_push, gitlab_headers, gitlab_push, queued

SHA = "6113728f27ae82c7b1a177c8d03f9e96e0adf246"
GH_REPO = "Codertocat/Hello-World"


@pytest.fixture
def intake(make_config):
    """``deliver(forge, payload, headers_of)`` hands a delivery to intake.receive as the web layer would."""

    def make(*repos, env=None):
        config = make_config(*(repos or (repo_table(GH_REPO), repo_table("mike/diaspora", forge="gitlab"))), env=env)
        store = Services(config).store
        dispatcher = Dispatcher(make_celery(config), store)

        def deliver(forge, payload, headers_of):
            body = json.dumps(payload).encode()
            headers = {name.lower(): value for name, value in headers_of(body).items()}
            return receive(config, store, dispatcher, forges.forge(forge), headers=headers, body=body,
                           content_type=headers["content-type"], now=time.time())

        return config, store, deliver

    return make


def test_a_signed_github_push_is_recorded_and_dispatched(intake):
    config, store, deliver = intake()
    taken = deliver("github", github_push(repo=GH_REPO, sha=SHA), lambda body: github_headers(body, GITHUB_SECRET, delivery="d-1"))
    assert taken.created and taken.ignored is None
    [build] = taken.builds
    assert (build.forge, build.repo, build.ref, build.sha) == ("github", GH_REPO, "refs/heads/main", SHA)
    assert store.list() == [build] and queued(config) == [build.id]


def test_the_same_delivery_again_is_the_same_build_not_a_new_one(intake):
    config, store, deliver = intake()
    payload = github_push(repo=GH_REPO, sha=SHA)
    first = deliver("github", payload, lambda body: github_headers(body, GITHUB_SECRET, delivery="d-1"))
    again = deliver("github", payload, lambda body: github_headers(body, GITHUB_SECRET, delivery="d-1"))
    assert (again.created, again.builds) == (False, first.builds)
    assert queued(config) == [first.builds[0].id]


def test_a_signed_gitlab_push_is_recorded(intake):
    config, store, deliver = intake()
    taken = deliver("gitlab", gitlab_push(repo="mike/diaspora", sha=SHA), lambda body: gitlab_headers(token=GITLAB_TOKEN))
    assert [(b.forge, b.repo) for b in taken.builds] == [("gitlab", "mike/diaspora")] and queued(config) == [taken.builds[0].id]


def test_a_push_signed_with_another_repositorys_secret_is_refused(intake):
    """Repository B's secret signs the delivery, but it names repository A: nothing is recorded."""
    config, store, deliver = intake(repo_table(GH_REPO), repo_table("other/repo", secret_env="OTHER"), env={"OTHER": "other-secret"})
    with pytest.raises(SignatureError, match=f"not valid for repository '{GH_REPO}'"):
        deliver("github", github_push(repo=GH_REPO, sha=SHA), lambda body: github_headers(body, "other-secret"))
    assert store.list() == [] and queued(config) == []


def test_a_wrong_signature_is_refused_before_anything_is_read(intake):
    config, store, deliver = intake()
    with pytest.raises(SignatureError):
        deliver("github", github_push(repo=GH_REPO, sha=SHA), lambda body: github_headers(body, "not-the-secret"))
    assert store.list() == []


def test_an_unconfigured_repository_is_not_found(intake):
    config, store, deliver = intake()
    with pytest.raises(NotFound, match="'someone/else' is not configured for github"):
        deliver("github", github_push(repo="someone/else", sha=SHA), lambda body: github_headers(body, GITHUB_SECRET))
    assert store.list() == []


def test_a_ping_is_ignored(intake):
    """GitHub's ping when a hook is made: signed, answered, and nothing is built."""
    config, store, deliver = intake()
    taken = deliver("github", fixture("github/ping.json"), lambda body: github_headers(body, GITHUB_SECRET, event="ping"))
    assert taken == Intake(ignored="ping")
    assert store.list() == [] and queued(config) == []


def test_a_push_no_rule_builds_is_ignored_with_the_reason(intake):
    config, store, deliver = intake(repo_table(GH_REPO, branches=["release/*"]))
    taken = deliver("github", github_push(repo=GH_REPO, sha=SHA), lambda body: github_headers(body, GITHUB_SECRET))
    assert taken == Intake(ignored="no build rule matches branch 'main'")
    assert store.list() == []
