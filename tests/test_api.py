"""Reading builds, their logs and health over HTTP."""


import pytest
from click.testing import CliRunner

from webhook import create_app
from webhook.cli import main
from webhook.events import PushEvent
from webhook.store import BuildState, BuildStore, create_db_engine

from .helpers.configs import repo_table
from .helpers.support import signed_in

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


def test_the_web_process_is_ready_without_a_docker_engine(make_config, tmp_path):
    """Readiness is the store and the broker: a web process can take deliveries while the engine is away."""
    config = make_config(repo_table("a/b"), engine={"base_url": f"unix://{tmp_path}/no-such.sock"})
    response = create_app(config).test_client().get("/healthz")
    assert (response.status_code, response.json) == (200, {"ok": True, "store": "ok", "broker": "ok"})


def test_healthz_names_the_failing_check_and_nothing_about_it(make_config, caplog):
    """A broker that refuses is 503 "unhealthy": no address or error text for the public, no password in the log."""
    config = make_config(repo_table("a/b"), server={"broker_url": "redis://:broker-pw-123@127.0.0.1:9/0"})
    response = create_app(config).test_client().get("/healthz")
    assert (response.status_code, response.json) == (503, {"ok": False, "store": "ok", "broker": "unhealthy"})
    assert "health check broker failed" in caplog.text and "broker-pw-123" not in caplog.text


@pytest.mark.e2e
def test_healthz_is_200_with_the_store_and_broker_reachable(make_config, docker_host):
    """With everything reachable, /healthz is 200, saying ok for each check."""
    response = create_app(make_config(engine={"base_url": docker_host})).test_client().get("/healthz")
    assert (response.status_code, response.json) == (200, {"ok": True, "store": "ok", "broker": "ok"})


@pytest.mark.e2e
@pytest.mark.parametrize("reachable", [True, False])
def test_a_worker_checks_the_engine_too(docker_host, tmp_path, reachable):
    """`pushbuild health --worker` exits 0 only when the engine answers as well."""
    engine = docker_host if reachable else f"unix://{tmp_path}/no-such.sock"
    config = tmp_path / "pushbuild.toml"
    config.write_text(f'[server]\ndata_dir = "{tmp_path / "data"}"\n[engine]\nbase_url = "{engine}"\n')
    result = CliRunner().invoke(main, ["health", "--worker", "--config", str(config)])
    assert result.exit_code == (0 if reachable else 1), result.output
    assert f"engine: {'ok' if reachable else 'unhealthy'}" in result.output and "store: ok" in result.output


def test_links_use_the_configured_public_url(make_config):
    """Behind a proxy, links are built from server.public_url."""
    app = create_app(make_config(server={"public_url": "https://pushbuild.example.com/"}))
    build = record(app)
    body = signed_in(app).get(f"/api/builds/{build.id}").json
    assert body["url"] == f"https://pushbuild.example.com/api/builds/{build.id}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.e2e)])
def any_store_app(request, make_config):
    """The app with its state on SQLite (the default) and on PostgreSQL (when ./dev test runs one)."""
    server = {} if request.param == "sqlite" else {"database_url": request.getfixturevalue("fresh_postgres_url")}
    app = create_app(make_config(repo_table("Codertocat/Hello-World"), server=server))
    yield app
    app.extensions["pushbuild"].store.db.dispose()


BIG = 2**31  # one more than the largest id PostgreSQL's INTEGER holds (SQLite's overflow at 2**63)


@pytest.mark.parametrize("path", [
    f"/api/builds/{BIG}", f"/api/builds/{2**64}/log", f"/api/builds/{2**63}/deliveries", f"/api/deliveries/{2**63}",
    f"/api/builds/{10**30}", "/api/builds/" + "9" * 5000, f"/api/deliveries/{BIG}", f"/api/builds/{BIG - 1}",
    f"/api/deliveries/{BIG - 1}", f"/api/builds/{BIG}/log",
])
def test_ids_no_database_holds_are_404(any_store_app, path):
    """A build or delivery id beyond the id columns (32 bits on PostgreSQL, 64 on SQLite; even 5,000 digits) is a JSON 404, not a 500."""
    record(any_store_app)
    response = signed_in(any_store_app).get(path)
    assert response.status_code == 404 and response.is_json, response.text


@pytest.mark.parametrize("query", [f"before={BIG}", f"before={2**63}", f"limit={2**64}", "before=" + "9" * 5000,
                                   "limit=²", f"before={10**30}"])
def test_query_arguments_no_database_holds_are_400(any_store_app, query):
    """?before= and ?limit= beyond the id columns, or digits int() refuses, are a 400, not an overflow (500)."""
    response = signed_in(any_store_app).get(f"/api/builds?{query}")
    assert response.status_code == 400 and response.is_json, response.text


@pytest.mark.parametrize("after", [str(BIG), str(2**63), "9" * 5000, "١"])
def test_a_log_cursor_no_database_holds_is_400(any_store_app, after):
    """?after= on a build's log beyond the id columns is a 400, not an overflow (500)."""
    build = record(any_store_app)
    response = signed_in(any_store_app).get(f"/api/builds/{build.id}/log?after={after}")
    assert response.status_code == 400 and response.is_json, response.text


def test_the_largest_ids_are_answered(any_store_app):
    """?before= and ?after= at 2**31 - 1 are valid: every build is older, no log line is newer."""
    build = record(any_store_app)
    client = signed_in(any_store_app)
    assert [b["id"] for b in client.get(f"/api/builds?before={BIG - 1}").json["builds"]] == [build.id]
    assert client.get(f"/api/builds/{build.id}/log?after={BIG - 1}").text == ""


@pytest.mark.e2e
def test_non_ascii_names_read_back_as_text_from_an_sql_ascii_database(sql_ascii_postgres_url, make_config):
    """On a SQL_ASCII PostgreSQL database, pushbuild still asks for UTF-8: non-ASCII refs and pushers come back as equal str."""
    engine = create_db_engine(sql_ascii_postgres_url)
    store = BuildStore(engine)
    store.create_schema()
    [build], _ = store.record([PushEvent(forge="github", repo="acme/café", ref="refs/heads/ü", sha=SHA,
                                         before="0" * 40, pusher="Jürgen 日本", delivery_id="d-ü")])
    again = store.get(build.id)
    assert (again.repo, again.ref, again.pusher) == ("acme/café", "refs/heads/ü", "Jürgen 日本")
    assert all(type(value) is str for value in (again.repo, again.ref, again.pusher))
    engine.dispose()
    app = create_app(make_config(repo_table("acme/café"), server={"database_url": sql_ascii_postgres_url}))
    body = signed_in(app).get(f"/api/builds/{build.id}").json
    assert (body["ref"], body["pusher"]) == ("refs/heads/ü", "Jürgen 日本")
    app.extensions["pushbuild"].store.db.dispose()


def test_a_followers_place_is_given_back_when_its_stream_is_closed(make_config):
    """Past max_log_followers a follower gets 429; closing a stream, even one never read, frees its place."""
    app = create_app(make_config(repo_table("acme/app"), server={"max_log_followers": 2}))
    store = app.extensions["pushbuild"].store
    [build], _ = store.record([PushEvent(forge="github", repo="acme/app", ref="refs/heads/main", sha="a" * 40,
                                         before="0" * 40, pusher="p", delivery_id=None)])
    client = signed_in(app)
    url = f"/api/builds/{build.id}/log?follow=1"
    first, second = client.get(url, buffered=False), client.get(url, buffered=False)
    refused = client.get(url, buffered=False)
    assert (first.status_code, second.status_code, refused.status_code) == (200, 200, 429)
    assert "follow logs here already" in refused.json["error"]
    first.close()
    again = client.get(url, buffered=False)
    assert again.status_code == 200
    for response in (second, again):
        response.close()


