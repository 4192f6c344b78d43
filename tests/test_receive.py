"""POST /hooks/<forge>: what is accepted, recorded and queued, and what is refused."""

import io
import json
from urllib.parse import quote

import pytest
from flask import jsonify
from werkzeug.test import EnvironBuilder

from webhook import create_app
from webhook.errors import RequestError
from webhook.web.receive import delivery_body

from .helpers.configs import BITBUCKET_SECRET, GITEA_SECRET, GITHUB_SECRET, GITLAB_TOKEN, repo_table
from .helpers.support import (
    bearer,
    bitbucket_headers,
    bitbucket_push,
    fixture,
    gitea_headers,
    gitea_push,
    github_headers,
    github_push,
    gitlab_headers,
    gitlab_push,
    queued,
    signed_in,
)

SHA = "6113728f27ae82c7b1a177c8d03f9e96e0adf246"
GH_REPO = "Codertocat/Hello-World"
GL_REPO = "mike/diaspora"


def builds(app):
    return app.extensions["pushbuild"].store.list()


def post_github(client, payload, *, secret=GITHUB_SECRET, **kwargs):
    body = json.dumps(payload).encode()
    return client.post("/hooks/github", data=body, headers=github_headers(body, secret, **kwargs))


def assert_nothing_happened(app, config):
    assert builds(app) == []
    assert queued(config) == []


def test_signed_github_push_is_recorded_and_queued(app, client, config):
    """A signed push answers 202 with the build id once the build is recorded and queued."""
    response = post_github(client, github_push(repo=GH_REPO, sha=SHA))
    assert response.status_code == 202, response.json
    build_id = response.json["build"]
    assert response.json["status_url"] == f"http://localhost/api/builds/{build_id}"
    [build] = builds(app)
    assert (build.id, build.repo, build.sha, build.ref, build.state.value) == (build_id, GH_REPO, SHA, "refs/heads/main", "queued")
    assert queued(config) == [build_id]


def test_form_encoded_github_delivery_is_verified_over_the_raw_body(app, client, config):
    """GitHub signs the whole payload=<...> form body; it is verified before being parsed."""
    body = ("payload=" + quote(json.dumps(github_push(repo=GH_REPO, sha=SHA)))).encode()
    headers = github_headers(body, GITHUB_SECRET, content_type="application/x-www-form-urlencoded")
    response = client.post("/hooks/github", data=body, headers=headers)
    assert response.status_code == 202, response.json
    assert queued(config) == [response.json["build"]]


@pytest.mark.parametrize("mangle", [
    lambda h: h.pop("X-Hub-Signature-256"),
    lambda h: h.update({"X-Hub-Signature-256": "sha256=" + "0" * 64}),
    lambda h: h.update({"X-Hub-Signature": h.pop("X-Hub-Signature-256").replace("sha256", "sha1")}),
])
def test_bad_github_signature_is_401_and_nothing_is_recorded(app, client, config, mangle):
    """A missing or wrong signature is refused with 401; no build is recorded or queued."""
    body = json.dumps(github_push(repo=GH_REPO, sha=SHA)).encode()
    headers = github_headers(body, GITHUB_SECRET)
    mangle(headers)
    response = client.post("/hooks/github", data=body, headers=headers)
    assert response.status_code == 401
    assert "error" in response.json and GITHUB_SECRET not in response.get_data(as_text=True)
    assert_nothing_happened(app, config)


def test_signature_over_reserialised_json_is_refused(app, client, config):
    """Only the raw bytes count: the same JSON serialised differently does not verify."""
    payload = github_push(repo=GH_REPO, sha=SHA)
    signed = json.dumps(payload).encode()
    sent = json.dumps(payload, indent=2).encode()
    response = client.post("/hooks/github", data=sent, headers=github_headers(signed, GITHUB_SECRET))
    assert response.status_code == 401
    assert_nothing_happened(app, config)


def test_error_bodies_never_carry_the_expected_signature(app, client, config):
    """A wrong signature's reply does not reveal what the right one would be."""
    body = json.dumps(github_push(repo=GH_REPO, sha=SHA)).encode()
    right = github_headers(body, GITHUB_SECRET)["X-Hub-Signature-256"]
    headers = {**github_headers(body, GITHUB_SECRET), "X-Hub-Signature-256": "sha256=" + "1" * 64}
    response = client.post("/hooks/github", data=body, headers=headers)
    assert response.status_code == 401 and right[7:] not in response.get_data(as_text=True)


def test_another_repositorys_secret_does_not_sign_for_this_one(make_config, tmp_path):
    """A delivery signed with repo B's secret but naming repo A is refused."""
    config = make_config(repo_table(GH_REPO), repo_table("other/repo", secret_env="OTHER"), env={"OTHER": "other-secret"})
    app = create_app(config)
    response = post_github(signed_in(app), github_push(repo=GH_REPO, sha=SHA), secret="other-secret")
    assert response.status_code == 401
    assert_nothing_happened(app, config)


def test_unknown_repository_signed_with_a_known_secret_is_404(app, client, config):
    """A verified delivery for a repository not in the config is a 404, not a build."""
    response = post_github(client, github_push(repo="someone/else", sha=SHA))
    assert response.status_code == 404
    assert_nothing_happened(app, config)


@pytest.mark.parametrize("replayed_delivery", ["another-delivery-id", None])
def test_a_captured_delivery_replayed_under_a_new_delivery_id_builds_nothing(app, client, config, replayed_delivery):
    """The same signed bytes under a new X-GitHub-Delivery (or none) are the same push: 200 duplicate, nothing queued."""
    body = json.dumps(github_push(repo=GH_REPO, sha=SHA)).encode()
    first = client.post("/hooks/github", data=body, headers=github_headers(body, GITHUB_SECRET, delivery="first-id"))
    headers = github_headers(body, GITHUB_SECRET, delivery=replayed_delivery)
    if replayed_delivery is None:
        del headers["X-GitHub-Delivery"]
    replay = client.post("/hooks/github", data=body, headers=headers)
    assert (first.status_code, replay.status_code) == (202, 200)
    assert replay.json == {"duplicate": first.json["build"]}
    assert [b.id for b in builds(app)] == [first.json["build"]]
    assert queued(config) == [first.json["build"]]


def test_redelivery_is_a_duplicate_of_the_first_build(app, client, config):
    """The same delivery id sent again answers 200 with the existing build."""
    payload = github_push(repo=GH_REPO, sha=SHA)
    first = post_github(client, payload, delivery="d-1")
    again = post_github(client, payload, delivery="d-1")
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json == {"duplicate": first.json["build"]}
    assert queued(config) == [first.json["build"]]


@pytest.mark.parametrize("event, payload, reason", [
    ("ping", fixture("github/ping.json"), "ping"),
    ("push", fixture("github/push_delete.json") | {"repository": {"full_name": GH_REPO}}, "ref deleted"),
    ("issues", {"action": "opened"}, "event 'issues' is not a push"),
])
def test_github_deliveries_that_build_nothing_are_200_ignored(app, client, config, event, payload, reason):
    """Pings, deletions and other events answer 200 with the reason, and record nothing."""
    response = post_github(client, payload, event=event)
    assert (response.status_code, response.json) == (200, {"ignored": reason})
    assert_nothing_happened(app, config)


def test_branches_outside_the_filter_are_ignored(make_config):
    """A push to a branch the repository does not build is acknowledged and ignored."""
    config = make_config(repo_table(GH_REPO, branches=["main", "release/*"]))
    app = create_app(config)
    client = signed_in(app)
    ignored = post_github(client, github_push(repo=GH_REPO, sha=SHA, ref="refs/heads/feature/x"))
    built = post_github(client, github_push(repo=GH_REPO, sha=SHA, ref="refs/heads/release/2"))
    assert (ignored.status_code, ignored.json) == (200, {"ignored": "no build rule matches branch 'feature/x'"})
    assert built.status_code == 202
    assert queued(config) == [built.json["build"]]


@pytest.mark.parametrize("field, value", [
    ("ref", "refs/heads/--upload-pack=touch /tmp/pwned"),
    ("ref", "refs/heads/-main"),
    ("ref", "HEAD"),
    ("after", SHA[:39]),
])
def test_invalid_refs_and_shas_are_400(app, client, config, field, value):
    """A signed payload with an option-like ref or a short SHA is refused and nothing recorded."""
    payload = github_push(repo=GH_REPO, sha=SHA)
    payload[field] = value
    if field == "after":
        payload["head_commit"]["id"] = value
    assert post_github(client, payload).status_code == 400
    assert_nothing_happened(app, config)


def test_malformed_signed_body_is_400(app, client, config):
    """A correctly signed body that is not JSON is a 400."""
    body = b"{not json"
    response = client.post("/hooks/github", data=body, headers=github_headers(body, GITHUB_SECRET))
    assert response.status_code == 400
    assert_nothing_happened(app, config)


def test_other_content_types_are_415(app, client, config):
    """Only JSON and form-encoded bodies are accepted."""
    body = json.dumps(github_push(repo=GH_REPO, sha=SHA)).encode()
    response = client.post("/hooks/github", data=body, headers=github_headers(body, GITHUB_SECRET, content_type="text/plain"))
    assert response.status_code == 415
    assert_nothing_happened(app, config)


def test_bodies_over_the_limit_are_413(make_config):
    """A body over max_body_bytes is refused before it is read whole."""
    config = make_config(repo_table(GH_REPO), server={"max_body_bytes": 1024})
    app = create_app(config)
    body = json.dumps(github_push(repo=GH_REPO, sha=SHA) | {"padding": "x" * 2048}).encode()
    response = signed_in(app).post("/hooks/github", data=body, headers=github_headers(body, GITHUB_SECRET))
    assert response.status_code == 413
    assert response.json["error"]
    assert_nothing_happened(app, config)


def test_unknown_forge_endpoint_is_404(client):
    """Only configured forges have endpoints."""
    assert client.post("/hooks/sourceforge", json={}).status_code == 404


def test_a_forges_endpoint_takes_deliveries_only(app, client, config):
    """Any other method is 405 and says which one (a HEAD gets no body); a path beyond an endpoint is no endpoint."""
    counted = []
    app.extensions["pushbuild"].metrics.delivery = lambda forge, outcome: counted.append((forge, outcome))
    for method in ("GET", "PUT", "DELETE", "OPTIONS"):
        response = client.open("/hooks/github", method=method)
        assert (response.status_code, response.headers["Allow"], response.mimetype) == (405, "POST", "application/json")
        assert response.json["error"]
    environ = EnvironBuilder(method="HEAD", path="/hooks/github").get_environ()
    assert app.wsgi_app(environ, lambda status, headers: None) == []
    for method, path in (("POST", "/hooks/github/extra"), ("GET", "/hooks/a/b"), ("POST", "/hooks/")):
        beyond = client.open(path, method=method, json={})
        assert beyond.status_code == 404 and "no such forge" not in beyond.json["error"]
    assert counted == []
    assert_nothing_happened(app, config)


def test_an_unknown_forges_name_is_said_as_it_was_sent(client):
    response = client.post("/hooks/caf%C3%A9", json={})
    assert (response.status_code, response.json) == (404, {"error": "no such forge endpoint: café"})


@pytest.mark.parametrize(("server", "base"), [({}, "https://ci.example:8443"),
                                              ({"public_url": "https://pushbuild.example/"}, "https://pushbuild.example")])
def test_the_status_url_is_on_the_public_url_else_the_address_the_delivery_came_to(make_config, server, base):
    config = make_config(repo_table(GH_REPO), server=server)
    client = create_app(config).test_client()
    body = json.dumps(github_push(repo=GH_REPO, sha=SHA)).encode()
    response = client.post("/hooks/github", data=body, headers=github_headers(body, GITHUB_SECRET),
                           base_url="https://ci.example:8443")
    assert response.json["status_url"] == f"{base}/api/builds/{response.json['build']}"


def test_a_deliverys_answer_is_made_as_the_apps_other_answers_are(app, client, config):
    """Deliveries are answered in front of Flask: each answer still has the headers every answer of the app has
    (Content-Security-Policy, nosniff, Referrer-Policy, Cache-Control) and the JSON bytes Flask's jsonify makes."""
    flask_answer = client.get("/api/no-such-path", headers=bearer())
    assert flask_answer.status_code == 404
    every_answer = {name: value for name, value in flask_answer.headers if name not in ("Content-Length", "Date")}
    assert {"Content-Security-Policy", "X-Content-Type-Options", "Referrer-Policy", "Cache-Control"} <= set(every_answer)
    body = json.dumps(github_push(repo=GH_REPO, sha=SHA)).encode()
    answers = [client.post("/hooks/github", data=body, headers=github_headers(body, GITHUB_SECRET)),  # 202
               client.post("/hooks/github", data=body, headers=github_headers(body, GITHUB_SECRET)),  # 200 duplicate
               post_github(client, {"zen": "hi"}, event="ping"),  # 200 ignored
               client.post("/hooks/github", data=body, headers=github_headers(body, "wrong")),  # 401
               client.post("/hooks/github", data=b"{", headers=github_headers(b"{", GITHUB_SECRET)),  # 400
               client.post("/hooks/sourceforge", json={})]  # 404
    assert [a.status_code for a in answers] == [202, 200, 200, 401, 400, 404]
    for answer in answers:
        assert {name: value for name, value in answer.headers if name not in ("Content-Length", "Date")} == every_answer
        with app.app_context():
            assert answer.data == jsonify(answer.json).data
    assert "WWW-Authenticate" not in answers[3].headers  # a signature's 401 asks for no sign-in


def test_a_failure_answering_a_delivery_is_a_logged_500_the_forge_retries(app, client, config, caplog):
    """A defect or a database down: 500 with no detail, the traceback in the log, counted as an error."""
    def broken(*args, **kwargs):
        raise RuntimeError("the disk is on fire")

    counted = []
    services = app.extensions["pushbuild"]
    services.store.accept = broken
    services.metrics.delivery = lambda forge, outcome: counted.append((forge, outcome))
    with caplog.at_level("ERROR"):
        response = post_github(client, github_push(repo=GH_REPO, sha=SHA))
    assert (response.status_code, response.json) == (500, {"error": "internal error"})
    assert "unhandled error" in caplog.text and "the disk is on fire" in caplog.text
    assert counted == [("github", "error")]


def test_a_failure_counting_a_delivery_is_still_a_json_500(app, client):
    def broken(*args, **kwargs):
        raise RuntimeError("metrics broke")

    app.extensions["pushbuild"].metrics.delivery = broken
    response = post_github(client, github_push(repo=GH_REPO, sha=SHA))
    assert (response.status_code, response.json) == (500, {"error": "internal error"})
    assert response.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize(("environ", "refused"), [
    ({"CONTENT_LENGTH": "10", "wsgi.input": io.BytesIO(b"abc")}, "shorter than its Content-Length"),
    ({"CONTENT_LENGTH": str(10**9), "wsgi.input": None}, "larger than 100 bytes"),  # refused before a byte is read
    ({"wsgi.input": io.BytesIO(b"x" * 101)}, "larger than 100 bytes"),  # chunked: read to one byte past the limit
])
def test_a_body_that_is_short_or_over_the_limit_is_refused(environ, refused):
    with pytest.raises(RequestError, match=refused):
        delivery_body(environ, 100)


def test_a_chunked_body_within_the_limit_is_read_whole():
    assert delivery_body({"wsgi.input": io.BytesIO(b"x" * 100)}, 100) == b"x" * 100


def test_gitlab_push_with_the_right_token_is_queued(app, client, config):
    """GitLab's X-Gitlab-Token must match the repository's secret token."""
    body = json.dumps(gitlab_push(repo=GL_REPO, sha=SHA)).encode()
    response = client.post("/hooks/gitlab", data=body, headers=gitlab_headers(token=GITLAB_TOKEN))
    assert response.status_code == 202, response.json
    assert builds(app)[0].forge == "gitlab"
    wrong = client.post("/hooks/gitlab", data=body, headers=gitlab_headers(token="wrong"))
    assert wrong.status_code == 401
    assert len(builds(app)) == 1


def test_gitlab_signing_token_is_checked_when_configured(make_config):
    """With a signing token configured, the Standard Webhooks signature is required too."""
    signing = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    config = make_config(repo_table(GL_REPO, forge="gitlab", signing_token_env="SIGNING"), env={"SIGNING": signing})
    app = create_app(config)
    client = signed_in(app)
    body = json.dumps(gitlab_push(repo=GL_REPO, sha=SHA)).encode()
    unsigned = client.post("/hooks/gitlab", data=body, headers=gitlab_headers(token=GITLAB_TOKEN))
    signed = client.post("/hooks/gitlab", data=body,
                         headers=gitlab_headers(token=GITLAB_TOKEN, body=body, signing_token=signing))
    assert (unsigned.status_code, signed.status_code) == (401, 202)
    assert queued(config) == [signed.json["build"]]


def test_repeated_signature_header_is_refused(app, client, config):
    """Two X-Gitlab-Token headers are ambiguous and refused."""
    body = json.dumps(gitlab_push(repo=GL_REPO, sha=SHA)).encode()
    headers = list(gitlab_headers(token=GITLAB_TOKEN).items()) + [("X-Gitlab-Token", "other")]
    assert client.post("/hooks/gitlab", data=body, headers=headers).status_code == 401
    assert_nothing_happened(app, config)


GITEA_REPO = "example/example"
BB_REPO = "team_name/repo_name"


@pytest.mark.parametrize("flavour, endpoint", [("Gitea", "gitea"), ("Forgejo", "forgejo"), ("Gogs", "gogs")])
def test_signed_gitea_family_push_is_queued(app, client, config, flavour, endpoint):
    """Gitea, Forgejo and Gogs deliveries are verified by their own signature header."""
    body = json.dumps(gitea_push(repo=GITEA_REPO, sha=SHA)).encode()
    response = client.post(f"/hooks/{endpoint}", data=body, headers=gitea_headers(body, GITEA_SECRET, flavour=flavour))
    assert response.status_code == 202, response.json
    assert builds(app)[0].forge == "gitea"
    assert queued(config) == [response.json["build"]]


def test_gitea_form_delivery_is_verified_over_the_json_payload(app, client, config):
    """Unlike GitHub, Gitea signs the JSON payload even when it sends a form body."""
    payload_json = json.dumps(gitea_push(repo=GITEA_REPO, sha=SHA)).encode()
    body = b"payload=" + quote(payload_json).encode()
    over_json = gitea_headers(payload_json, GITEA_SECRET, content_type="application/x-www-form-urlencoded")
    over_form = gitea_headers(body, GITEA_SECRET, content_type="application/x-www-form-urlencoded")
    assert client.post("/hooks/gitea", data=body, headers=over_form).status_code == 401
    assert client.post("/hooks/gitea", data=body, headers=over_json).status_code == 202


@pytest.mark.parametrize("mangle", [
    lambda h: h.pop("X-Gitea-Signature"),
    lambda h: h.update({"X-Gitea-Signature": "sha256=" + h["X-Gitea-Signature"]}),
    lambda h: h.update({"X-Gitea-Signature": h["X-Gitea-Signature"].upper()}),
])
def test_bad_gitea_signature_is_401(app, client, config, mangle):
    """A missing, prefixed or upper-cased Gitea signature is refused."""
    body = json.dumps(gitea_push(repo=GITEA_REPO, sha=SHA)).encode()
    headers = gitea_headers(body, GITEA_SECRET)
    mangle(headers)
    assert client.post("/hooks/gitea", data=body, headers=headers).status_code == 401
    assert_nothing_happened(app, config)


def test_bitbucket_push_of_two_refs_records_two_builds(app, client, config):
    """One Bitbucket push changing a branch and a tag becomes two builds, both queued."""
    other = "b" * 40
    body = json.dumps(bitbucket_push(repo=BB_REPO, changes=[("branch", "main", SHA), ("tag", "v1.0.0", other)])).encode()
    headers = bitbucket_headers(body, BITBUCKET_SECRET)
    response = client.post("/hooks/bitbucket", data=body, headers=headers)
    assert response.status_code == 202, response.json
    assert sorted((b.ref, b.sha) for b in builds(app)) == [("refs/heads/main", SHA), ("refs/tags/v1.0.0", other)]
    assert sorted(queued(config)) == sorted(response.json["builds"])
    again = client.post("/hooks/bitbucket", data=body, headers=headers)
    assert (again.status_code, again.json) == (200, {"duplicate": response.json["build"]})


def test_a_push_naming_the_same_change_twice_records_it_once(app, client, config):
    """A Bitbucket push listing one branch change twice is one build, accepted (not a server error)."""
    body = json.dumps(bitbucket_push(repo=BB_REPO, changes=[("branch", "main", SHA), ("branch", "main", SHA)])).encode()
    response = client.post("/hooks/bitbucket", data=body, headers=bitbucket_headers(body, BITBUCKET_SECRET))
    assert response.status_code == 202, response.json
    assert [(b.ref, b.sha) for b in builds(app)] == [("refs/heads/main", SHA)]
    assert queued(config) == response.json["builds"] == [response.json["build"]]


def test_a_push_naming_a_branch_twice_builds_its_last_change(app, client, config):
    """Bitbucket listing main moved twice in one push: one build, of where main ended, not a server error."""
    other = "b" * 40
    body = json.dumps(bitbucket_push(repo=BB_REPO, changes=[("branch", "main", SHA), ("branch", "main", other)])).encode()
    response = client.post("/hooks/bitbucket", data=body, headers=bitbucket_headers(body, BITBUCKET_SECRET))
    assert response.status_code == 202, response.json
    assert [(b.ref, b.sha) for b in builds(app)] == [("refs/heads/main", other)]
    assert queued(config) == response.json["builds"]


def test_bad_bitbucket_signature_is_401(app, client, config):
    """Bitbucket's X-Hub-Signature must be sha256= over the raw body."""
    body = json.dumps(bitbucket_push(repo=BB_REPO, changes=[("branch", "main", SHA)])).encode()
    headers = bitbucket_headers(body, "wrong secret")
    assert client.post("/hooks/bitbucket", data=body, headers=headers).status_code == 401
    assert_nothing_happened(app, config)


@pytest.mark.parametrize("message", ["Fix typo [skip ci]", "docs [CI SKIP]", "[skip pushbuild] wip"])
def test_skip_markers_in_the_head_commit_message_build_nothing(app, client, config, message):
    """A head commit asking to be skipped is acknowledged and ignored."""
    payload = github_push(repo=GH_REPO, sha=SHA)
    payload["head_commit"]["message"] = message
    response = post_github(client, payload)
    assert response.status_code == 200 and "in the head commit message" in response.json["ignored"]
    assert_nothing_happened(app, config)


def test_skip_markers_can_be_turned_off(make_config):
    """With skip_markers = false, a [skip ci] commit is built anyway."""
    config = make_config(repo_table(GH_REPO, skip_markers=False))
    app = create_app(config)
    payload = github_push(repo=GH_REPO, sha=SHA)
    payload["head_commit"]["message"] = "release [skip ci]"
    assert post_github(signed_in(app), payload).status_code == 202


def test_tag_pushes_follow_the_tag_rules(make_config):
    """A rules table builds only what it names: here semver tags, not branches."""
    config = make_config(repo_table(GH_REPO, rules=[{"tag_regex": r"^v\d+\.\d+\.\d+$", "semver": True}]))
    app = create_app(config)
    client = signed_in(app)
    tag = post_github(client, github_push(repo=GH_REPO, sha=SHA, ref="refs/tags/v1.2.3"))
    branch = post_github(client, github_push(repo=GH_REPO, sha=SHA, ref="refs/heads/main"))
    other = post_github(client, github_push(repo=GH_REPO, sha=SHA, ref="refs/tags/nightly"))
    assert (tag.status_code, branch.status_code, other.status_code) == (202, 200, 200)
    assert other.json == {"ignored": "no build rule matches tag 'nightly'"}


def _push_to(client, sha, before, ref="refs/heads/main"):
    return post_github(client, github_push(repo=GH_REPO, sha=sha, before=before, ref=ref))


OLD, NEW = "a" * 40, "b" * 40


def test_a_newer_push_cancels_the_queued_build_it_replaces(app, client, config):
    """B replaces A on main while A waits in the queue: A is cancelled, saying by which build."""
    first = _push_to(client, OLD, "0" * 40).json["build"]
    second = _push_to(client, NEW, OLD).json["build"]
    old = app.extensions["pushbuild"].store.get(first)
    assert old.state.value == "cancelled" and f"superseded by build {second}" in old.error
    assert app.extensions["pushbuild"].store.get(second).state.value == "queued"


def test_an_older_push_arriving_late_is_still_built(app, client, config):
    """Delivered out of order, the older push is kept: its SHA-tagged image may be deployed by SHA."""
    newer = _push_to(client, NEW, OLD).json["build"]
    older = _push_to(client, OLD, "0" * 40).json["build"]
    store = app.extensions["pushbuild"].store
    assert (store.get(newer).state.value, store.get(older).state.value) == ("queued", "queued")


def test_tag_builds_and_opted_out_repositories_are_never_cancelled(make_config):
    """Tags are releases; cancel_superseded = false keeps every branch build."""
    config = make_config(repo_table(GH_REPO, cancel_superseded=False))
    app = create_app(config)
    client = signed_in(app)
    first = _push_to(client, OLD, "0" * 40).json["build"]
    _push_to(client, NEW, OLD)
    tag_one = _push_to(client, OLD, "0" * 40, ref="refs/tags/v1").json["build"]
    _push_to(client, NEW, OLD, ref="refs/tags/v1")
    store = app.extensions["pushbuild"].store
    assert store.get(first).state.value == "queued" and store.get(tag_one).state.value == "queued"


def test_repositories_sharing_an_organisation_secret_each_accept_their_pushes(make_config):
    """One org-wide hook secret for two repositories: each repository's push is accepted as itself."""
    config = make_config(repo_table("org/one"), repo_table("org/two"))
    app = create_app(config)
    client = signed_in(app)
    one = post_github(client, github_push(repo="org/one", sha=SHA))
    two = post_github(client, github_push(repo="org/two", sha=SHA))
    assert (one.status_code, two.status_code) == (202, 202)
    assert sorted(b.repo for b in builds(app)) == ["org/one", "org/two"]
