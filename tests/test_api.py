"""Reading builds, their logs and health over HTTP."""

import pytest

from webhook import create_app
from webhook.events import PushEvent
from webhook.store import BuildState

from .conftest import repo_table

SHA = "6113728f27ae82c7b1a177c8d03f9e96e0adf246"


def record(app, repo="Codertocat/Hello-World", delivery=None):
    store = app.extensions["pushbuild"].store
    [build], _ = store.record([PushEvent(forge="github", repo=repo, ref="refs/heads/main", sha=SHA,
                                      before="0" * 40, pusher="octocat", delivery_id=delivery)])
    return build


def test_a_build_shows_its_state_and_links(app, client):
    """GET /api/builds/<id> has the documented fields and links to itself and its log."""
    build = record(app)
    body = client.get(f"/api/builds/{build.id}").json
    assert {k: body[k] for k in ("id", "repo", "ref", "sha", "state", "tags", "digest", "error")} == {
        "id": build.id, "repo": "Codertocat/Hello-World", "ref": "refs/heads/main", "sha": SHA,
        "state": "queued", "tags": [], "digest": None, "error": None}
    assert body["created_at"].endswith("Z") and body["started_at"] is None
    assert body["log_url"] == f"http://localhost/api/builds/{build.id}/log"


def test_finished_builds_show_tags_digest_and_error(app, client):
    """A finished build reports what was pushed, or why it failed."""
    store = app.extensions["pushbuild"].store
    ok, failed = record(app, delivery="a"), record(app, delivery="b")
    for build in (ok, failed):
        store.claim(build.id, owner="w", lease_s=60)
    store.finish(ok.id, BuildState.SUCCEEDED, owner="w", tags=["r/x:" + SHA], digest="sha256:" + "a" * 64)
    store.finish(failed.id, BuildState.FAILED, owner="w", error="RUN exit 1 failed")
    assert client.get(f"/api/builds/{ok.id}").json["digest"] == "sha256:" + "a" * 64
    assert client.get(f"/api/builds/{failed.id}").json["error"] == "RUN exit 1 failed"


def test_list_is_newest_first_and_filters_by_repo(app, client):
    """GET /api/builds lists newest first; ?repo= filters; ?limit= pages."""
    a1, b, a2 = record(app, "a/x"), record(app, "b/y"), record(app, "a/x")
    assert [x["id"] for x in client.get("/api/builds").json["builds"]] == [a2.id, b.id, a1.id]
    assert [x["id"] for x in client.get("/api/builds?repo=a/x").json["builds"]] == [a2.id, a1.id]
    assert [x["id"] for x in client.get(f"/api/builds?limit=1&before={a2.id}").json["builds"]] == [b.id]


def test_log_is_plain_text_with_a_cursor(app, client):
    """The log endpoint returns text and a cursor to continue from."""
    build = record(app)
    store = app.extensions["pushbuild"].store
    store.append_log(build.id, "Step 1/2 : FROM busybox\n")
    first = client.get(f"/api/builds/{build.id}/log")
    store.append_log(build.id, "Step 2/2 : RUN true\n")
    rest = client.get(f"/api/builds/{build.id}/log?after={first.headers['X-Log-Cursor']}")
    assert (first.mimetype, first.text, rest.text) == ("text/plain", "Step 1/2 : FROM busybox\n", "Step 2/2 : RUN true\n")


def test_following_a_finished_builds_log_returns_all_of_it(app, client):
    """?follow=1 streams until the build has finished."""
    build = record(app)
    store = app.extensions["pushbuild"].store
    store.append_log(build.id, "one\n")
    store.claim(build.id, owner="w", lease_s=60)
    store.finish(build.id, BuildState.SUCCEEDED, owner="w")
    assert client.get(f"/api/builds/{build.id}/log?follow=1").text == "one\n"


@pytest.mark.parametrize("path", ["/api/builds/999", "/api/builds/999/log"])
def test_unknown_builds_are_404_json(client, path):
    """A missing build is a JSON 404."""
    response = client.get(path)
    assert response.status_code == 404 and response.json == {"error": "no build 999"}


@pytest.mark.parametrize("query", ["limit=-1", "limit=x", "before=1.5"])
def test_bad_query_arguments_are_400(client, query):
    """Paging arguments must be non-negative integers."""
    assert client.get(f"/api/builds?{query}").status_code == 400


def test_healthz_is_503_when_the_engine_is_unreachable(make_config, tmp_path):
    """With no engine to build on, the service says it is unhealthy and why."""
    config = make_config(repo_table("a/b"), engine={"base_url": f"unix://{tmp_path}/no-such.sock"})
    response = create_app(config).test_client().get("/healthz")
    assert response.status_code == 503
    assert response.json["store"] == "ok" and response.json["ok"] is False
    assert "engine" in response.json["engine"]


@pytest.mark.e2e
def test_healthz_is_200_with_the_engine_and_store_reachable(make_config, docker_host):
    """With the real engine reachable, /healthz is 200."""
    response = create_app(make_config(engine={"base_url": docker_host})).test_client().get("/healthz")
    assert (response.status_code, response.json) == (200, {"ok": True, "store": "ok", "engine": "ok"})


def test_links_use_the_configured_public_url(make_config):
    """Behind a proxy, links are built from server.public_url."""
    app = create_app(make_config(server={"public_url": "https://pushbuild.example.com/"}))
    build = record(app)
    body = app.test_client().get(f"/api/builds/{build.id}").json
    assert body["url"] == f"https://pushbuild.example.com/api/builds/{build.id}"
