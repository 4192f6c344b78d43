"""Who may read and operate pushbuild: tokens and scopes, the sign-in link, and an SSO proxy's header."""

import pytest

from webhook import create_app
from webhook.config import ADMIN_TOKEN_ENV
from webhook.errors import ConfigError
from webhook.events import PushEvent
from webhook.health import HealthChecks
from webhook.store import BuildState

from .helpers.configs import repo_table
from .helpers.support import OPERATE_TOKEN, READ_TOKEN, bearer, signed_in

SHA = "6113728f27ae82c7b1a177c8d03f9e96e0adf246"
NEWER = "7" * 40
REPO = "Codertocat/Hello-World"
PROXY = {"trusted_header": "X-Forwarded-User", "trusted_proxies": ["10.1.2.3"], "operators": ["alice"]}


def record(app, *, sha=SHA, ref="refs/heads/main", pusher="octocat"):
    store = app.extensions["pushbuild"].store
    [build], _ = store.record([PushEvent(forge="github", repo=REPO, ref=ref, sha=sha, before="0" * 40,
                                         pusher=pusher, delivery_id=None)])
    return build


def finish(app, build, state=BuildState.SUCCEEDED):
    store = app.extensions["pushbuild"].store
    store.claim(build.id, owner="w", lease_s=60)
    store.finish(build.id, state, owner="w", tags=[f"r/x:{build.sha}"], digest="sha256:" + "a" * 64)


@pytest.fixture
def built(app):
    """One finished build of the app's repository."""
    build = record(app)
    finish(app, build)
    return build


READS = ["/api/builds", "/api/builds/{id}", "/api/builds/{id}/log", "/api/builds/{id}/deliveries",
         "/api/deliveries/1", "/", "/no/such/page"]
OPERATES = ["/api/builds/{id}/retry", "/api/builds/{id}/cancel", "/api/deliveries/1/redeliver", "/api/builds"]


@pytest.mark.parametrize("path", READS + OPERATES)
@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token-of-a-good-length-0123456789",
                                           f"Basic {READ_TOKEN}", "Bearer ", f"Bearer {READ_TOKEN}x"])
def test_without_a_valid_token_everything_but_hooks_and_health_is_401(app, built, path, authorization):
    """No token, a wrong one or another scheme: a JSON 401 that names no build, repository or pusher."""
    client = app.test_client()
    headers = {"Authorization": authorization} if authorization else {}
    method = client.post if path in OPERATES else client.get
    response = method(path.format(id=built.id), headers=headers, json={"repo": REPO, "ref": "main"})
    assert response.status_code == 401 and response.is_json
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="pushbuild"'
    assert REPO not in response.text and "octocat" not in response.text and SHA not in response.text
    assert app.extensions["pushbuild"].store.get(built.id).state is BuildState.SUCCEEDED  # nothing was retried


@pytest.mark.parametrize("path", READS[:5])
def test_a_read_token_reads(app, built, path):
    """A read token sees builds, logs and deliveries (the delivery 404s: there is none)."""
    response = signed_in(app, READ_TOKEN).get(path.format(id=built.id))
    assert response.status_code in (200, 404) and response.status_code == (404 if "deliveries/1" in path else 200)


@pytest.mark.parametrize("path", OPERATES)
def test_a_read_token_may_not_operate(app, built, path):
    """Retry, cancel, redeliver and manual builds need the operate scope: 403, and nothing changes."""
    response = signed_in(app, READ_TOKEN).post(path.format(id=built.id), json={"repo": REPO, "sha": NEWER})
    assert response.status_code == 403 and "reader has the read scope" in response.json["error"]
    store = app.extensions["pushbuild"].store
    assert [b.id for b in store.list()] == [built.id] and store.get(built.id).state is BuildState.SUCCEEDED


def test_with_no_token_configured_the_api_says_how_to_add_one(make_config):
    """Without [[auth.tokens]], the API is closed (401) and says where tokens are configured."""
    app = create_app(make_config(repo_table(REPO), auth={}))
    response = app.test_client().get("/api/builds", headers=bearer(READ_TOKEN))
    assert response.status_code == 401 and "[[auth.tokens]]" in response.json["error"]


def test_hooks_and_health_need_no_token(app):
    """Forges deliver without a token; /healthz answers anyone, and a wrong token is not an error there."""
    client = app.test_client()
    assert client.post("/hooks/github", json={}).status_code == 401  # the signature's 401, not the API's
    assert "WWW-Authenticate" not in client.post("/hooks/github", json={}).headers
    assert client.get("/healthz", headers=bearer("not-a-token")).status_code in (200, 503)


def failing_health(app):
    app.extensions["pushbuild.health"] = HealthChecks(
        {"store": lambda: None, "broker": lambda: (_ for _ in ()).throw(OSError("refused by 10.9.8.7:6379"))},
        timeout_s=1)


def test_health_says_why_only_to_someone_signed_in(app):
    """A stranger learns ok/unhealthy per check; a token holder also learns why, for the checks that failed."""
    failing_health(app)
    anonymous = app.test_client().get("/healthz")
    assert anonymous.status_code == 503 and anonymous.json == {"ok": False, "store": "ok", "broker": "unhealthy"}
    detailed = signed_in(app).get("/healthz").json
    assert detailed["reasons"] == {"broker": "OSError: refused by 10.9.8.7:6379"}


def test_tokens_are_kept_out_of_replies_and_redacted_from_text(app):
    """A token is a secret of the configuration: the redactor masks it, replies name only the token's name."""
    services = app.extensions["pushbuild"]
    assert READ_TOKEN not in services.redact(f"token={READ_TOKEN}")
    body = signed_in(app, OPERATE_TOKEN).get("/").json
    assert body == {"signed_in_as": "operator", "scope": "operate", "builds_url": "/api/builds", "can_operate": True}


# --- the sign-in link -------------------------------------------------------------------------------------

def test_the_sign_in_link_sets_a_strict_cookie_and_drops_the_token_from_the_address(app, built):
    """/?token=… answers 303 to / with an HttpOnly, SameSite=Strict cookie; the browser is then signed in."""
    client = app.test_client()
    response = client.get(f"/?token={READ_TOKEN}")
    assert response.status_code == 303 and response.headers["Location"] == "/"
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Max-Age=43200" in cookie
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert client.get("/").json["signed_in_as"] == "reader"
    assert client.get(f"/api/builds/{built.id}").status_code == 200


def test_another_site_cannot_swap_a_signed_in_browsers_session(app):
    """A cross-site sign-in link (login CSRF) does not replace the cookie a browser already holds."""
    client = app.test_client()
    client.get(f"/?token={OPERATE_TOKEN}")
    response = client.get(f"/?token={READ_TOKEN}", headers={"Sec-Fetch-Site": "cross-site"})
    assert response.status_code == 303 and "Set-Cookie" not in response.headers
    assert client.get("/").json["signed_in_as"] == "operator"


def test_a_wrong_sign_in_link_sets_nothing(app):
    response = app.test_client().get("/?token=wrong-token-of-a-good-length-0123456789")
    assert response.status_code == 401 and "Set-Cookie" not in response.headers


def test_a_cookie_operates_only_from_this_sites_own_pages(app):
    """Another site's form cannot make a signed-in browser retry a build (the cookie is SameSite, and Origin is checked)."""
    failed = record(app)
    finish(app, failed, BuildState.FAILED)
    client = app.test_client()
    client.get(f"/?token={OPERATE_TOKEN}")
    url = f"/api/builds/{failed.id}/retry"
    assert client.post(url, headers={"Origin": "https://evil.example"}).status_code == 403
    assert client.post(url).status_code == 403  # no Origin, no Sec-Fetch-Site: not known to be ours
    assert app.extensions["pushbuild"].store.get(failed.id).state is BuildState.FAILED
    assert client.post(url, headers={"Origin": "http://localhost"}).status_code == 202


# --- an SSO proxy's header ---------------------------------------------------------------------------------

def proxied(app, remote_addr):
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = remote_addr
    return client


def test_a_trusted_proxy_names_the_user(make_config):
    """From a trusted_proxies address, X-Forwarded-User signs in with trusted_scope; operators may operate."""
    app = create_app(make_config(repo_table(REPO), auth=PROXY))
    build = record(app)
    finish(app, build, BuildState.FAILED)
    client = proxied(app, "10.1.2.3")
    client.environ_base["HTTP_ORIGIN"] = "http://localhost"
    assert client.get("/", headers={"X-Forwarded-User": "bob"}).json["scope"] == "read"
    assert client.post(f"/api/builds/{build.id}/retry", headers={"X-Forwarded-User": "bob"}).status_code == 403
    assert client.post(f"/api/builds/{build.id}/retry", headers={"X-Forwarded-User": "alice"}).status_code == 202
    assert "--- queued again by alice ---" in app.extensions["pushbuild"].store.log(build.id)[0]


def test_a_proxy_user_operates_only_from_this_sites_own_pages(make_config):
    """The SSO proxy's cookie rides along on another site's form as well: a cross-site POST is 403."""
    app = create_app(make_config(repo_table(REPO), auth=PROXY))
    build = record(app)
    finish(app, build, BuildState.FAILED)
    client = proxied(app, "10.1.2.3")
    headers = {"X-Forwarded-User": "alice", "Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}
    assert client.post(f"/api/builds/{build.id}/retry", headers=headers,
                       content_type="application/x-www-form-urlencoded").status_code == 403
    assert app.extensions["pushbuild"].store.get(build.id).state is BuildState.FAILED


@pytest.mark.parametrize(("remote", "user", "status"), [
    ("::ffff:10.1.2.3", "bob", 200),  # the proxy's address as a dual-stack listener reports it
    ("10.1.2.3", "mallory, alice", 401),  # appended to what a client sent, or sent twice
    ("10.1.2.3", "", 401),
])
def test_what_the_proxy_header_must_look_like(make_config, remote, user, status):
    app = create_app(make_config(repo_table(REPO), auth=PROXY))
    assert proxied(app, remote).get("/api/builds", headers={"X-Forwarded-User": user}).status_code == status


def test_the_header_from_anyone_else_is_ignored(make_config):
    """The same header from an address that is not a trusted proxy signs in nobody."""
    app = create_app(make_config(repo_table(REPO), auth=PROXY))
    response = proxied(app, "10.1.2.4").get("/api/builds", headers={"X-Forwarded-User": "alice"})
    assert response.status_code == 401


@pytest.mark.parametrize(("auth", "env", "problem"), [
    ({"tokens": [{"name": "a", "token_env": "T", "scope": "read"}]}, {"T": "short"}, "at least 32"),
    ({"tokens": [{"name": "a", "token_env": "T", "scope": "admin"}]}, {"T": "x" * 40}, "must be one of read, operate"),
    ({"tokens": [{"name": "a", "token_env": "T"}]}, {"T": "x" * 40}, "scope: is required"),
    ({"tokens": [{"name": "a", "token_env": "T", "scope": "read"}, {"name": "a", "token_env": "U", "scope": "read"}]},
     {"T": "x" * 40, "U": "y" * 40}, "given to more than one token"),
    ({"tokens": [{"name": "a", "token_env": "T", "scope": "read"}, {"name": "b", "token_env": "U", "scope": "operate"}]},
     {"T": "x" * 40, "U": "x" * 40}, "same value"),
    ({"tokens": [{"name": "a b", "token_env": "T", "scope": "read"}]}, {"T": "x" * 40}, "name: is required"),
    ({"tokens": [{"name": "a", "token_env": "T", "scope": "read"}]}, {}, "T is unset"),
    ({"trusted_header": "X-Forwarded-User"}, {}, "needs the proxies' addresses"),
    ({"trusted_header": "X-Forwarded-User", "trusted_proxies": ["0.0.0.0/0"]}, {}, "would trust every address"),
    ({"trusted_proxies": ["10.0.0.1"]}, {}, "needs the header they set"),
    ({"trusted_header": "X-Forwarded-User", "trusted_proxies": ["proxy.local"]}, {}, "not an address"),
    ({"token": []}, {}, "auth.token: unknown key"),
])
def test_bad_auth_settings_are_refused_with_their_key(make_config, auth, env, problem):
    with pytest.raises(ConfigError) as raised:
        make_config(repo_table(REPO), auth=auth, env=env)
    assert problem in raised.value.message
    assert "x" * 40 not in raised.value.message


def test_the_admin_token_may_come_from_the_environment_alone(make_config):
    """$PUSHBUILD_ADMIN_TOKEN is an operate token named admin, with no configuration file (./dev serve)."""
    token = "admin-token-from-the-environment-0123456789"
    config = make_config(repo_table(REPO), auth={}, env={ADMIN_TOKEN_ENV: token})
    assert signed_in(create_app(config), token).get("/").json["signed_in_as"] == "admin"
    with pytest.raises(ConfigError, match="at least 32"):
        make_config(repo_table(REPO), auth={}, env={ADMIN_TOKEN_ENV: "short"})


# --- operating --------------------------------------------------------------------------------------------

def operator(app):
    return signed_in(app, OPERATE_TOKEN)


def test_retry_queues_a_failed_build_again_and_says_who(app):
    failed = record(app)
    finish(app, failed, BuildState.FAILED)
    response = operator(app).post(f"/api/builds/{failed.id}/retry")
    assert response.status_code == 202 and response.json["state"] == "queued" and response.json["id"] == failed.id
    assert "--- queued again by operator ---" in app.extensions["pushbuild"].store.log(failed.id)[0]


def test_a_succeeded_build_is_not_run_again_in_place(app, built):
    """It moved tags and fired hooks; keeping it succeeded is what keeps older pushes from taking them back."""
    response = operator(app).post(f"/api/builds/{built.id}/retry")
    assert response.status_code == 409 and "start a new build" in response.json["error"]
    assert app.extensions["pushbuild"].store.get(built.id).state is BuildState.SUCCEEDED


def test_retry_and_cancel_cannot_hide_a_newer_push_to_roll_a_hook_back(app, built):
    """The review's attack: retry then cancel the newer build, so the older one's hook looks newest. Refused."""
    newer = push_newer(app)
    hook = app.extensions["pushbuild"].deliveries.add(build_id=built.id, repo=REPO, ref="refs/heads/main",
                                                      kind="hook", target="deploy", payload={})
    assert operator(app).post(f"/api/builds/{newer.id}/retry").status_code == 409
    assert operator(app).post(f"/api/builds/{newer.id}/cancel").status_code == 409
    assert operator(app).post(f"/api/deliveries/{hook.id}/redeliver").status_code == 409
    assert app.extensions["pushbuild"].store.get(newer.id).state is BuildState.SUCCEEDED


def test_retry_of_a_build_not_finished_is_409(app):
    build = record(app)
    response = operator(app).post(f"/api/builds/{build.id}/retry")
    assert response.status_code == 409 and "has not finished" in response.json["error"]


def test_cancel_ends_a_queued_build_and_a_finished_one_is_409(app, built):
    queued = record(app, sha=NEWER)
    response = operator(app).post(f"/api/builds/{queued.id}/cancel")
    assert response.status_code == 200 and response.json["state"] == "cancelled"
    assert response.json["error"] == "cancelled by operator"
    assert operator(app).post(f"/api/builds/{built.id}/cancel").status_code == 409


def test_cancel_takes_a_running_build_from_its_worker(app):
    """A running build is cancelled in the store; its worker's lease renewal finds it is no longer held."""
    build = record(app)
    store = app.extensions["pushbuild"].store
    store.claim(build.id, owner="w", lease_s=60)
    assert operator(app).post(f"/api/builds/{build.id}/cancel").json["state"] == "cancelled"
    assert store.renew([build.id], owner="w", lease_s=60) == set()
    assert not store.finish(build.id, BuildState.SUCCEEDED, owner="w", digest="sha256:" + "b" * 64)
    assert store.get(build.id).digest is None


def test_redeliver_makes_a_delivery_due_again(app, built):
    deliveries = app.extensions["pushbuild"].deliveries
    status = deliveries.add(build_id=built.id, repo=REPO, ref="refs/heads/main", kind="status", target="ci",
                            payload={"state": "success"})
    response = operator(app).post(f"/api/deliveries/{status.id}/redeliver")
    assert response.status_code == 202 and response.json["state"] == "pending"
    assert operator(app).post("/api/deliveries/999/redeliver").status_code == 404


def push_newer(app):
    """Record and finish a push of main that follows the ``built`` one."""
    newer = app.extensions["pushbuild"].store.record([PushEvent(
        forge="github", repo=REPO, ref="refs/heads/main", sha=NEWER, before=SHA, pusher="o", delivery_id=None)])[0][0]
    finish(app, newer)
    return newer


def test_an_older_pushs_hook_is_not_redelivered_over_a_newer_one(app, built):
    """Sending an old build's redeploy hook again would roll the deployment back: 409."""
    push_newer(app)
    hook = app.extensions["pushbuild"].deliveries.add(build_id=built.id, repo=REPO, ref="refs/heads/main",
                                                      kind="hook", target="deploy", payload={})
    response = operator(app).post(f"/api/deliveries/{hook.id}/redeliver")
    assert response.status_code == 409 and "roll the deployment back" in response.json["error"]


def test_an_older_releases_hook_is_not_redelivered_nor_its_tag_built_again(app):
    """Release hooks follow version order: after v1.1.0 was built, v1.0.0's hook and a new build of v1.0.0 are 409."""
    old, new = record(app, ref="refs/tags/v1.0.0"), record(app, sha=NEWER, ref="refs/tags/v1.1.0")
    finish(app, old)
    finish(app, new)
    hook = app.extensions["pushbuild"].deliveries.add(build_id=old.id, repo=REPO, ref=old.ref, kind="hook",
                                                      target="deploy", payload={})
    refused = operator(app).post(f"/api/deliveries/{hook.id}/redeliver")
    assert refused.status_code == 409 and "v1.1.0 (build 2) is a later release than v1.0.0" in refused.json["error"]
    again = operator(app).post("/api/builds", json={"repo": REPO, "tag": "v1.0.0"})
    assert again.status_code == 409 and "later release" in again.json["error"]


def test_a_manual_build_of_a_commit_goes_the_way_of_a_push(app):
    """POST /api/builds with a sha pushbuild recorded for main: a queued build whose pusher is the token's name.

    Asked again while it is queued: the same build.
    """
    finish(app, record(app, sha=NEWER), BuildState.FAILED)
    response = operator(app).post("/api/builds", json={"repo": REPO, "sha": NEWER})
    assert response.status_code == 202
    assert {k: response.json[k] for k in ("repo", "sha", "ref", "state", "pusher")} == {
        "repo": REPO, "sha": NEWER, "ref": "", "state": "queued", "pusher": "operator"}
    again = operator(app).post("/api/builds", json={"repo": f"github:{REPO}", "sha": NEWER})
    assert again.status_code == 200 and again.json["id"] == response.json["id"]


def test_a_commit_build_fires_no_redeploy_hook(make_config):
    """A build of a commit alone may be an old commit: it reports a status but deploys nothing."""
    hooks = [{"name": "deploy", "url": "https://deploy.example.com/h", "secret_env": "GITHUB_SECRET"}]
    app = create_app(make_config(repo_table(REPO, hooks=hooks)))
    [build], _ = app.extensions["pushbuild"].store.record([PushEvent(
        forge="github", repo=REPO, ref="", sha=NEWER, before="0" * 40, pusher="cli", delivery_id=None)])
    finish(app, build)
    app.extensions["pushbuild"].notifier.build_finished(build, state=BuildState.SUCCEEDED, tags=(),
                                                        digest="sha256:" + "a" * 64, error=None)
    assert app.extensions["pushbuild"].deliveries.of_build(build.id) == []


@pytest.mark.parametrize(("body", "status", "error"), [
    ({"repo": REPO}, 400, "exactly one of"),
    ({"repo": REPO, "ref": "main", "sha": NEWER}, 400, "exactly one of"),
    ({"repo": REPO, "sha": "abc"}, 400, "full commit id"),
    ({"repo": REPO, "ref": "bad..ref"}, 400, "ref"),
    ({"ref": "main"}, 400, '"repo" is required'),
    ({"repo": REPO, "sha": NEWER, "force": "yes"}, 400, "unknown field 'force'"),
    ({"repo": 7, "sha": NEWER}, 400, "non-empty string"),
    ({"repo": "nobody/here", "sha": NEWER}, 404, "not configured"),
    (["not", "an", "object"], 400, "JSON object"),
    ("[" * 50_000, 400, "JSON object"),  # nested past Python's recursion limit, within the 64 KiB bodies may have
])
def test_a_bad_manual_build_is_refused_and_records_nothing(app, body, status, error):
    raw = {"data": body, "content_type": "application/json"} if isinstance(body, str) else {"json": body}
    response = operator(app).post("/api/builds", **raw)
    assert response.status_code == status and error in response.json["error"]
    assert app.extensions["pushbuild"].store.list() == []


def test_a_manual_build_the_rules_do_not_build_is_422(make_config):
    """The repository's rules apply: a tag no rule builds is refused, not built."""
    config = make_config(repo_table(REPO, rules=[{"branch": "main"}]))
    response = operator(create_app(config)).post("/api/builds", json={"repo": REPO, "tag": "v1.0.0"})
    assert response.status_code == 422 and "no build rule matches tag 'v1.0.0'" in response.json["error"]
