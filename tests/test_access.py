"""Who may read and operate pushbuild at the web edge: tokens and scopes, the sign-in link, an SSO proxy's header."""

import pytest

from webhook import create_app
from webhook.config import ADMIN_TOKEN_ENV
from webhook.errors import ConfigError
from webhook.health import HealthChecks
from webhook.store import BuildState
from webhook.web import csrf

from .helpers.configs import repo_table
from .helpers.support import API_REPO, API_SHA, OPERATE_TOKEN, READ_TOKEN, bearer, finish, record, signed_in

SHA = API_SHA
NEWER = "7" * 40
REPO = API_REPO
PROXY = {"trusted_header": "X-Forwarded-User", "trusted_proxies": ["10.1.2.3"], "operators": ["alice"]}


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
    body = signed_in(app, OPERATE_TOKEN).get("/api/me").json
    assert body == {"signed_in_as": "operator", "scope": "operate", "builds_url": "/api/builds", "can_operate": True}


# --- the sign-in link -------------------------------------------------------------------------------------

def test_the_sign_in_link_sets_a_lax_cookie_and_drops_the_token_from_the_address(app, built):
    """/?token=… answers 303 to / with an HttpOnly, SameSite=Lax cookie (a link from chat opens signed in)."""
    client = app.test_client()
    response = client.get(f"/?token={READ_TOKEN}")
    assert response.status_code == 303 and response.headers["Location"] == "/"
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Max-Age=43200" in cookie and "Secure" not in cookie
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert client.get("/api/me").json["signed_in_as"] == "reader"
    assert client.get(f"/api/builds/{built.id}").status_code == 200


def test_another_site_cannot_swap_a_signed_in_browsers_session(app):
    """A cross-site sign-in link (login CSRF) does not replace the cookie a browser already holds."""
    client = app.test_client()
    client.get(f"/?token={OPERATE_TOKEN}")
    response = client.get(f"/?token={READ_TOKEN}", headers={"Sec-Fetch-Site": "cross-site"})
    assert response.status_code == 303 and "Set-Cookie" not in response.headers
    assert client.get("/api/me").json["signed_in_as"] == "operator"


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
    assert client.post(url, headers={"Origin": "http://localhost"}).status_code == 403  # same site, but no CSRF token
    assert app.extensions["pushbuild"].store.get(failed.id).state is BuildState.FAILED
    client.get("/", headers={"Accept": "text/html"})  # a page gives the browser its CSRF token
    token = client.get_cookie(csrf.COOKIE).value
    wrong = ("y" if token.startswith("x") else "x") + token[1:]  # one character off (a token may start with "x")
    assert client.post(url, headers={"Origin": "http://localhost", csrf.HEADER: wrong}).status_code == 403
    assert client.post(url, headers={"Origin": "http://localhost", csrf.HEADER: token}).status_code == 202


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
    assert client.get("/api/me", headers={"X-Forwarded-User": "bob"}).json["scope"] == "read"
    client.get(f"/builds/{build.id}", headers={"X-Forwarded-User": "alice"})  # its page gives the browser its CSRF token
    client.environ_base["HTTP_X_CSRF_TOKEN"] = client.get_cookie(csrf.COOKIE).value
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
    ({"tokens": [{"name": "a", "token_env": "T", "scope": "admin"}]}, {"T": "x" * 40}, "must be one of metrics, read, operate"),
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
    assert signed_in(create_app(config), token).get("/api/me").json["signed_in_as"] == "admin"
    with pytest.raises(ConfigError, match="at least 32"):
        make_config(repo_table(REPO), auth={}, env={ADMIN_TOKEN_ENV: "short"})
