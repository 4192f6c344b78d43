"""Each configured repository's last delivery: what arrived, and what became of it, for the console's /repos."""

import json
from urllib.parse import quote

import pytest

from webhook.events import PushEvent
from webhook.last_delivery import Heard, LastDeliveries, LastDelivery, mentioned_repo
from webhook.store import BuildStore

from .helpers.configs import GITHUB_SECRET, Clock, repo_table
from .helpers.support import API_REPO, fixture, github_headers, github_push, signed_in, sqlite_plan, sqlite_statements, writes

SHA = "6113728f27ae82c7b1a177c8d03f9e96e0adf246"
#: The repositories asked about: one name on two forges.
BOTH = [("github", "acme/app"), ("gitlab", "acme/app")]


@pytest.fixture
def last(db):
    return LastDeliveries(db, monotonic=Clock())


def refused(at, repo="acme/app"):
    return LastDelivery(forge="github", repo=repo, at=at, delivery_id=None, event=None, outcome="refused_signature",
                        detail="refused: X-Hub-Signature-256 does not match the body", verified=False)


def test_a_repository_keeps_its_last_verified_and_its_last_refused_delivery(last):
    """Each kind replaces the one before it; a refusal (anyone can send one) never replaces the last verified delivery."""
    accepted = LastDelivery(forge="github", repo="acme/app", at=1.0, delivery_id="g-1", event="push",
                            outcome="accepted", detail="build 3 queued", build_id=3)
    other = LastDelivery(forge="gitlab", repo="acme/app", at=2.0, delivery_id=None, event="ping", outcome="ignored",
                         detail="ignored: ping")
    assert last.note(accepted) and last.note(other)
    assert last.all(BOTH) == {("github", "acme/app"): Heard(last=accepted), ("gitlab", "acme/app"): Heard(last=other)}
    assert last.note(refused(5.0))
    heard = last.all(BOTH)[("github", "acme/app")]
    assert heard == Heard(last=accepted, refused=refused(5.0)) and heard.refused_since == refused(5.0)
    assert heard.refused_since.to_json()["at"].startswith("1970-01-01T00:00:05")
    later = LastDelivery(forge="github", repo="acme/app", at=9.0, delivery_id="g-2", event="push",
                         outcome="duplicate", detail="duplicate of build 3", build_id=3)
    last.monotonic.now += 1.0
    assert last.note(later)
    assert last.all(BOTH)[("github", "acme/app")].refused_since is None  # the secret matches again


def test_deliveries_that_build_nothing_are_noted_at_most_once_a_second_per_repository(last):
    """A flood of refused deliveries costs one write a second per repository; a verified one has a second of its own."""
    with writes(last.db) as statements:
        results = [last.note(refused(at=float(i))) for i in range(100)]
    assert results.count(True) == 1 and len(statements) == 1
    assert last.note(refused(at=0.0, repo="acme/other"))  # each repository has its own second
    ping = LastDelivery(forge="github", repo="acme/app", at=200.0, delivery_id=None, event="ping",
                        outcome="ignored", detail="ignored: ping")
    assert last.note(ping)
    last.monotonic.now += 1.0
    assert last.note(refused(at=300.0))


@pytest.mark.parametrize(("body", "content_type", "found"), [
    (b'{"ref": "refs/heads/main", "repository": {"full_name": "acme/app"}}', "application/json", "acme/app"),
    (b'{"repository": {"full_name": "acme/app-2"}}', "application/json", None),  # a prefix of a name is no name
    (b'{"repository": {"full_name": "acme/lib"}, "commits": [{"message": "see \\"acme/app\\""}]}', "application/json",
     "acme/lib"),
    (b"payload=" + quote(json.dumps({"repository": {"full_name": "acme/lib"}})).encode(),
     "application/x-www-form-urlencoded", "acme/lib"),
    (b"\xff\xfe not json at all", "application/json", None),
    (b'{"full_name": "acme/app"}', "application/json; charset=utf-8", "acme/app"),
])
def test_a_refused_body_is_searched_not_parsed_for_the_repository_it_names_first(body, content_type, found):
    assert mentioned_repo(["acme/app", "acme/lib"], body, content_type) == found


def test_only_the_first_bytes_of_a_refused_body_are_searched():
    body = b" " * 100 + b'"acme/app"'
    assert mentioned_repo(["acme/app"], body, "application/json", scan_bytes=100) is None


# --- what deliveries note ----------------------------------------------------------


@pytest.fixture
def app(make_config):
    from webhook import create_app

    return create_app(make_config(repo_table(API_REPO), repo_table("acme/lib", secret_env="GITLAB_TOKEN")))


def post(app, payload, *, secret=GITHUB_SECRET, event="push"):
    body = json.dumps(payload).encode()
    return signed_in(app).post("/hooks/github", data=body, headers=github_headers(body, secret, event=event,
                                                                                   delivery="d-42"))


def noted(app):
    services = app.extensions["pushbuild"]
    return services.last_deliveries.all((repo.forge, repo.name) for repo in services.config.repos)


def test_an_accepted_push_is_noted_with_its_build(app):
    """The console shows the push's delivery id, its build, and that it was queued: read from the build, not written twice."""
    with writes(app.extensions["pushbuild"].store.db) as statements:
        build_id = post(app, github_push(repo=API_REPO, sha=SHA)).json["build"]
    assert not [s for s in statements if "last_deliveries" in s]
    note = noted(app)[("github", API_REPO)].last
    assert (note.event, note.outcome, note.detail, note.build_id) == ("push", "accepted", f"build {build_id} queued",
                                                                      build_id)
    assert note.delivery_id.endswith(":d-42")


def test_a_ping_is_noted_as_ignored_for_the_repository_whose_secret_signed_it(app):
    """A ping names no repository the forges agree on: the one whose secret signs it gets the note."""
    assert post(app, fixture("github/ping.json"), event="ping").status_code == 200
    assert list(noted(app)) == [("github", API_REPO)]
    ping = noted(app)[("github", API_REPO)].last
    assert (ping.event, ping.detail) == ("ping", "ignored: ping")


def test_a_wrong_secret_is_noted_on_the_repository_the_delivery_names(app):
    """What an operator needs to debug a wrong secret: the refusal, on the repository it was meant for."""
    assert post(app, github_push(repo=API_REPO, sha=SHA), secret="the wrong one").status_code == 401
    note = noted(app)[("github", API_REPO)].refused_since
    assert (note.outcome, note.detail) == ("refused_signature", "refused: X-Hub-Signature-256 does not match the body")
    assert "the wrong one" not in note.detail


def test_another_repositorys_secret_is_noted_as_refused_for_the_named_repository(app):
    """acme/lib's secret does not sign for Hello-World: the refusal is noted on Hello-World, with the reason."""
    from .helpers.configs import GITLAB_TOKEN

    assert post(app, github_push(repo=API_REPO, sha=SHA), secret=GITLAB_TOKEN).status_code == 401
    assert noted(app)[("github", API_REPO)].refused.detail == f"refused: the signature is not valid for repository {API_REPO!r}"


def test_deliveries_for_repositories_not_configured_note_nothing(app):
    """A stranger naming any repository they like cannot grow the table, signed or not."""
    assert post(app, github_push(repo="stranger/repo", sha=SHA), secret="whatever").status_code == 401
    assert post(app, github_push(repo="stranger/repo", sha=SHA)).status_code == 404
    assert noted(app) == {}


def test_each_repositorys_last_accepted_delivery_is_one_index_lookup(last, db, db_url):
    """The console's /repos reads the newest delivered build of each configured repository, never all builds."""
    if not db_url.startswith("sqlite"):
        pytest.skip("SQLite's query plan")
    store = BuildStore(db)
    for i, repo in enumerate(["acme/app", "acme/other"] * 3):
        store.record([PushEvent(forge="github", repo=repo, ref="refs/heads/main", sha=f"{i + 1:040x}", before="0" * 40,
                                pusher="p", delivery_id=f"d-{i}")], from_forge=True)
    store.record([PushEvent(forge="github", repo="acme/app", ref="refs/heads/main", sha="f" * 40, before=None,
                            pusher="someone", delivery_id=None)])  # a manual build: not a delivery
    with sqlite_statements(db) as statements:  # the same name on another forge, never delivered to, too
        heard = last.all([("github", "acme/app"), ("gitlab", "acme/app"), ("github", "nobody/else")])
    assert list(heard) == [("github", "acme/app")] and heard["github", "acme/app"].last.build_id == 5
    lookups = [s for s in statements if "FROM builds" in s]
    plans = [sqlite_plan(db, lookup) for lookup in lookups]
    # One entry of the delivered builds' index each, not a walk through the repository's builds.
    assert len(plans) == 3 and all(plan == "SEARCH builds USING INDEX ix_builds_delivered (forge=? AND repo=?)"
                                   for plan in plans), plans
