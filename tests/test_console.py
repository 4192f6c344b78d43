"""The web console's pages, forms and live log, through Flask's test client (the browser tests drive chromium)."""

import json
import re

import pytest

from webhook import create_app
from webhook.build.buildlog import CUT_NOTE
from webhook.store import BuildState

from .helpers.configs import GITHUB_SECRET, repo_table
from .helpers.support import (
    API_REPO,
    OPERATE_TOKEN,
    READ_TOKEN,
    finish,
    github_headers,
    github_push,
    record,
    signed_in,
)

HTML = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
SAME_SITE = {**HTML, "Origin": "http://localhost"}


def browser(app, token=OPERATE_TOKEN):
    """A test client signed in the way a browser is: by the sign-in link's cookie."""
    client = app.test_client()
    assert client.get(f"/?token={token}").status_code == 303
    return client


def page_csrf(client, path="/"):
    """Open a page and return the CSRF token its forms carry."""
    page = client.get(path, headers=HTML).text
    return re.search(r'name="csrf" value="([^"]+)"', page).group(1)


def state_of(app, build):
    return app.extensions["pushbuild"].store.get(build.id).state


# --- who sees what -----------------------------------------------------------------------------------------

def test_a_stranger_gets_the_sign_in_form_and_nothing_else(app, built):
    page = app.test_client().get(f"/builds/{built.id}", headers=HTML)
    assert page.status_code == 401 and "Sign in to pushbuild" in page.text
    assert built.sha not in page.text and built.repo not in page.text
    assert f'name="next" value="/builds/{built.id}"' in page.text


def test_programs_still_get_json_errors(app):
    response = app.test_client().get("/", headers={"Accept": "application/json"})
    assert response.status_code == 401 and "error" in response.json


def test_a_bad_sign_in_link_says_so_and_never_shows_the_token(app):
    wrong = "wrong-token-of-a-good-length-0123456789"
    page = app.test_client().get(f"/?token={wrong}", headers=HTML)
    assert page.status_code == 401 and "not valid here" in page.text and wrong not in page.text


def test_pages_load_only_pushbuilds_own_assets(app, client, built):
    response = client.get(f"/builds/{built.id}", headers=HTML)
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert not re.search(r'<script(?![^>]*\bsrc="/static/)', response.text)  # no inline script
    assert not re.search(r'<(script|link|img)[^>]*(src|href)="(https?:)?//', response.text)
    assert client.get("/static/console.js").status_code == 200
    assert app.test_client().get("/static/console.css").status_code == 200  # the sign-in page needs it too


# --- signing in and out ------------------------------------------------------------------------------------

def test_the_sign_in_form_signs_in_and_goes_on_to_the_page_asked_for(app, built):
    client = app.test_client()
    response = client.post("/signin", data={"token": READ_TOKEN, "next": f"/builds/{built.id}"}, headers=SAME_SITE)
    assert response.status_code == 303 and response.headers["Location"] == f"/builds/{built.id}"
    assert "SameSite=Lax" in response.headers["Set-Cookie"] and "HttpOnly" in response.headers["Set-Cookie"]
    assert client.get(f"/builds/{built.id}", headers=HTML).status_code == 200


@pytest.mark.parametrize("elsewhere", ["//evil.example/", "https://evil.example/", "/\\evil.example", "builds"])
def test_the_sign_in_form_never_sends_the_browser_to_another_site(app, elsewhere):
    response = app.test_client().post("/signin", data={"token": READ_TOKEN, "next": elsewhere}, headers=SAME_SITE)
    assert response.status_code == 303 and response.headers["Location"] == "/"


def test_another_sites_sign_in_form_is_refused(app):
    """Login CSRF: another site cannot sign a browser in as its own user."""
    response = app.test_client().post("/signin", data={"token": READ_TOKEN},
                                      headers={**HTML, "Origin": "https://evil.example"})
    assert response.status_code == 403 and "Set-Cookie" not in response.headers


def test_a_wrong_token_in_the_form_is_a_401_page(app):
    page = app.test_client().post("/signin", data={"token": "x" * 40}, headers=SAME_SITE)
    assert page.status_code == 401 and "not valid here" in page.text and "Set-Cookie" not in page.headers


def test_cookies_are_secure_behind_https(make_config):
    app = create_app(make_config(repo_table("acme/app"), server={"public_url": "https://ci.example"}))
    assert "Secure" in app.test_client().get(f"/?token={READ_TOKEN}").headers["Set-Cookie"]


def test_signing_out_forgets_the_session(app):
    client = browser(app)
    response = client.post("/signout", data={"csrf": page_csrf(client)}, headers=SAME_SITE)
    assert response.status_code == 303 and response.headers["Location"] == "/signin"
    assert client.get("/", headers=HTML).status_code == 401


# --- the builds list ---------------------------------------------------------------------------------------

def test_the_list_shows_builds_newest_first_with_their_state(app, client):
    older, newer = record(app, sha="a" * 40), record(app, sha="b" * 40, ref="refs/tags/v1.0")
    finish(app, older)
    page = client.get("/", headers=HTML).text
    assert page.index(f'data-build="{newer.id}"') < page.index(f'data-build="{older.id}"')
    assert "aaaaaaa" in page and "v1.0" in page and "✓" in page and "succeeded" in page and "queued" in page


def test_the_list_filters_by_repository_ref_and_state(app, client):
    main, tag = record(app, sha="a" * 40), record(app, sha="b" * 40, ref="refs/tags/v1.0")
    finish(app, main)
    assert f'data-build="{tag.id}"' not in client.get("/?ref=main", headers=HTML).text
    assert f'data-build="{main.id}"' not in client.get("/?state=queued", headers=HTML).text
    assert "No builds match" in client.get("/?repo=other/repo", headers=HTML).text
    assert client.get("/?state=nonsense", headers=HTML).status_code == 400


def test_the_list_pages_back_through_older_builds(app, client):
    ids = [record(app, sha=f"{n:040x}").id for n in range(30)]
    first = client.get("/", headers=HTML).text
    assert f'data-build="{ids[-1]}"' in first and f'data-build="{ids[0]}"' not in first
    older = re.search(r'href="(/\?before=\d+)">Older', first).group(1)
    assert f'data-build="{ids[0]}"' in client.get(older, headers=HTML).text


def test_the_refresh_gets_only_the_rows(app, client, built):
    rows = client.get("/?rows=1", headers=HTML).text
    assert rows.lstrip().startswith("<tr") and f'data-build="{built.id}"' in rows and "<html" not in rows


def test_with_no_repositories_the_list_says_what_to_do_next(make_config):
    page = signed_in(create_app(make_config()), READ_TOKEN).get("/", headers=HTML).text
    assert "Next step: connect a repository" in page


# --- a build's page ----------------------------------------------------------------------------------------

def test_a_builds_page_shows_its_image_log_and_colours(app, client, built):
    app.extensions["pushbuild"].store.append_log(built.id, "\x1b[31mred\x1b[0m <script>alert(1)</script>\n")
    page = client.get(f"/builds/{built.id}", headers=HTML).text
    assert f"r/x:{built.sha}" in page and "sha256:" + "a" * 64 in page
    assert '<span class="fg1">red</span> &lt;script&gt;alert(1)&lt;/script&gt;' in page
    assert "data-events" not in page  # finished: nothing to follow


def test_a_running_builds_page_follows_its_log_from_where_it_ends(app, client):
    build = record(app)
    cursor = app.extensions["pushbuild"].store.append_log(build.id, "first\n")
    page = client.get(f"/builds/{build.id}", headers=HTML).text
    assert f'data-events="/builds/{build.id}/events?after={cursor}"' in page and "first" in page


def test_a_cut_log_says_so(app, client, built):
    app.extensions["pushbuild"].store.append_log(built.id, "head\n" + CUT_NOTE.format(cut=12345) + "tail\n")
    assert "12345 bytes of this log were cut here" in client.get(f"/builds/{built.id}", headers=HTML).text


def test_a_long_log_shows_its_end_and_links_to_the_whole(app, client, built, monkeypatch):
    from webhook.web import console

    monkeypatch.setattr(console, "LOG_VIEW_CHARS", 10)
    store = app.extensions["pushbuild"].store
    for line in ("beginning\n", "middle\n", "the end\n"):
        store.append_log(built.id, line)
    page = client.get(f"/builds/{built.id}", headers=HTML).text
    assert "the end" in page and "beginning" not in page and "read it all as text" in page


def test_a_notice_is_only_ever_one_of_pushbuilds_own(app, client, built):
    page = client.get(f"/builds/{built.id}?done=<b>owned</b>", headers=HTML).text
    assert "owned" not in page
    assert "Queued to run again." in client.get(f"/builds/{built.id}?done=retried", headers=HTML).text


def test_a_reader_sees_the_buttons_disabled_with_the_reason(app, client):
    failed = record(app)
    finish(app, failed, BuildState.FAILED)
    page = client.get(f"/builds/{failed.id}", headers=HTML).text
    assert re.search(r'<button type="submit" disabled[^>]*title="reader has the read scope; this needs operate">Retry',
                     page)


# --- what the console changes ------------------------------------------------------------------------------

def failed_build(app):
    build = record(app)
    finish(app, build, BuildState.FAILED)
    return build


def test_retry_from_the_page_queues_the_build_again(app):
    build = failed_build(app)
    client = browser(app)
    response = client.post(f"/builds/{build.id}/retry", data={"csrf": page_csrf(client, f"/builds/{build.id}")},
                           headers=SAME_SITE)
    assert response.status_code == 303 and response.headers["Location"] == f"/builds/{build.id}?done=retried"
    assert state_of(app, build) is BuildState.QUEUED


@pytest.mark.parametrize("forged", [
    {"data": {}, "headers": SAME_SITE},  # no CSRF token
    {"data": {"csrf": "x" * 43}, "headers": SAME_SITE},  # a wrong one
    {"data": "TOKEN", "headers": {**HTML, "Origin": "https://evil.example"}},  # the right one, from another site
])
def test_a_forged_form_changes_nothing(app, forged):
    build = failed_build(app)
    client = browser(app)
    token = page_csrf(client, f"/builds/{build.id}")
    data = {"csrf": token} if forged["data"] == "TOKEN" else forged["data"]
    response = client.post(f"/builds/{build.id}/retry", data=data, headers=forged["headers"])
    assert response.status_code == 403 and state_of(app, build) is BuildState.FAILED


def test_a_readers_form_changes_nothing_even_with_its_csrf_token(app):
    build = failed_build(app)
    client = browser(app, READ_TOKEN)
    response = client.post(f"/builds/{build.id}/retry", data={"csrf": page_csrf(client, f"/builds/{build.id}")},
                           headers=SAME_SITE)
    assert response.status_code == 403 and "needs operate" in response.text
    assert state_of(app, build) is BuildState.FAILED


def test_cancel_from_the_page(app):
    build = record(app)
    client = browser(app)
    client.post(f"/builds/{build.id}/cancel", data={"csrf": page_csrf(client, f"/builds/{build.id}")}, headers=SAME_SITE)
    assert state_of(app, build) is BuildState.CANCELLED


def test_an_action_that_cannot_happen_is_explained_on_a_page(app, built):
    client = browser(app)
    page = client.post(f"/builds/{built.id}/cancel", data={"csrf": page_csrf(client, f"/builds/{built.id}")},
                       headers=SAME_SITE)
    assert page.status_code == 409 and "has already ended" in page.text and "<html" in page.text


# --- the live log ------------------------------------------------------------------------------------------

def events(client, build_id, **headers):
    return client.get(f"/builds/{build_id}/events", headers=headers).text


def test_a_finished_builds_events_are_its_log_then_the_end(app, client, built):
    store = app.extensions["pushbuild"].store
    first = store.append_log(built.id, "\x1b[32mone\x1b[0m\n")
    store.append_log(built.id, "two\n")
    stream = events(client, built.id)
    assert stream.startswith("retry: 2000\nevent: state\ndata: succeeded\n\n")
    assert 'data: <span class="fg2">one</span>\ndata: two\ndata: \n\n' in stream and stream.endswith("event: end\ndata: \n\n")
    resumed = events(client, built.id, **{"Last-Event-ID": str(first)})
    assert "one" not in resumed and "data: two" in resumed


def test_a_carriage_return_cannot_end_an_event_early(app, client, built):
    app.extensions["pushbuild"].store.append_log(built.id, "50%\rdone\nevent: end\n")
    stream = events(client, built.id)
    assert "data: 50%\ndata: done\ndata: event: end\n" in stream and stream.count("\nevent: end\n") == 1


# --- repositories ------------------------------------------------------------------------------------------

def test_each_repository_shows_its_webhook_address_steps_and_rules(app, client):
    page = client.get("/repos", headers=HTML).text
    for forge in ("github", "gitlab", "gitea", "bitbucket"):
        assert f"http://localhost/hooks/{forge}" in page
    assert "Settings → Webhooks → Add webhook" in page and "every branch → {sha}, {ref}" in page
    assert "Build a branch or tag" in page


def test_with_no_repositories_the_repositories_page_says_how_to_add_one(make_config):
    page = signed_in(create_app(make_config()), READ_TOKEN).get("/repos", headers=HTML).text
    assert "No repository is configured yet" in page and "[[repos]]" in page


def test_a_build_form_with_no_name_is_refused_plainly(app):
    client = browser(app)
    page = client.post("/repos/build", data={"csrf": page_csrf(client, "/repos"), "repo": "Codertocat/Hello-World",
                                             "kind": "branch", "name": ""}, headers=SAME_SITE)
    assert page.status_code == 400 and "name a branch or tag" in page.text


def test_a_build_form_for_a_ref_no_rule_builds_is_refused_before_asking_the_forge(make_config):
    app = create_app(make_config(repo_table("acme/app", branches=["main"])))
    client = browser(app)
    page = client.post("/repos/build", data={"csrf": page_csrf(client, "/repos"), "repo": "acme/app",
                                             "kind": "branch", "name": "feature"}, headers=SAME_SITE)
    assert page.status_code == 422 and "no build rule matches branch" in page.text


def test_a_repository_shows_its_last_delivery_and_a_refusal_since(app, client):
    """What an operator setting up a webhook needs: the build a push became, and that a later one was refused."""
    body = json.dumps(github_push(repo=API_REPO, sha="c" * 40)).encode()
    build_id = client.post("/hooks/github", data=body, headers=github_headers(body, GITHUB_SECRET)).json["build"]
    page = client.get("/repos", headers=HTML).text
    assert f"push, <span class=\"outcome accepted\">build {build_id} queued</span>" in page and "Refused since" not in page
    client.post("/hooks/github", data=body, headers=github_headers(body, "not the secret"))
    page = client.get("/repos", headers=HTML).text
    assert f"build {build_id} queued" in page  # a stranger's refusal never hides the real last delivery
    assert "Refused since" in page and "X-Hub-Signature-256 does not match the body" in page


@pytest.mark.parametrize("elsewhere", ["/\t/evil.example/login", "/\x0b/evil.example", " //evil.example", "/\n/evil.example"])
def test_a_next_address_with_invisible_characters_cannot_leave_the_site(app, elsewhere):
    """URL parsers drop tabs and newlines: /<tab>/evil.example would become //evil.example."""
    response = app.test_client().post("/signin", data={"token": READ_TOKEN, "next": elsewhere}, headers=SAME_SITE)
    assert response.headers["Location"] == "/"


def test_behind_a_proxy_that_ends_tls_the_public_urls_origin_is_this_sites(make_config):
    """The request says http:// (the proxy spoke plain HTTP to pushbuild); the browser's Origin says https://."""
    app = create_app(make_config(repo_table("acme/app"), server={"public_url": "https://ci.example"}))
    response = app.test_client().post("/signin", data={"token": READ_TOKEN}, base_url="http://ci.example",
                                      headers={**HTML, "Origin": "https://ci.example"})
    assert response.status_code == 303
    refused = app.test_client().post("/signin", data={"token": READ_TOKEN}, base_url="http://ci.example",
                                     headers={**HTML, "Origin": "https://evil.example"})
    assert refused.status_code == 403


def test_sec_fetch_site_decides_when_the_browser_sends_it(app):
    for site, status in (("same-origin", 303), ("same-site", 403), ("cross-site", 403)):
        response = app.test_client().post("/signin", data={"token": READ_TOKEN},
                                          headers={**HTML, "Origin": "http://localhost", "Sec-Fetch-Site": site})
        assert response.status_code == status, site


def test_a_log_line_no_parser_can_read_still_leaves_the_page_readable(app, client, built):
    """A pusher's build prints an escape with 4,400 digits (past int()'s limit) and an unterminated title."""
    store = app.extensions["pushbuild"].store
    store.append_log(built.id, "\x1b[" + "9" * 4400 + "mafter\n\x1b]0;title never ended\nthe next line\n")
    page = client.get(f"/builds/{built.id}", headers=HTML)
    assert page.status_code == 200 and "after" in page.text and "the next line" in page.text
    assert "the next line" in events(client, built.id)


def test_a_metrics_token_cannot_sign_in_to_the_console(make_config):
    config = make_config(repo_table("acme/app"), auth={"tokens": [
        {"name": "scraper", "token_env": "TEST_READ_TOKEN", "scope": "metrics"}]})
    response = create_app(config).test_client().get(f"/?token={READ_TOKEN}", headers=HTML)
    assert response.status_code == 403 and "Set-Cookie" not in response.headers


def test_the_sign_in_page_of_a_link_with_a_tab_offers_no_way_off_the_site(app):
    page = app.test_client().get("/%09/evil.example/login", headers=HTML).text
    assert 'name="next" value="/"' in page
