"""The console in a real browser (headless chromium) against real pushbuild, engine, registry and git.

Each test leaves screenshots of the pages it saw in ``.pushbuild/screenshots/``.
"""

import json
from http.server import BaseHTTPRequestHandler

import pytest
import requests
from selenium.webdriver.common.keys import Keys

from .helpers.browser import PHONE, Browser, require_chromium
from .helpers.configs import GITHUB_SECRET, SECRETS_ENV
from .helpers.loopback import LoopbackServer
from .helpers.service import Pushbuild
from .helpers.support import (
    ADMIN_TOKEN,
    API_HEADERS,
    AUTH_ENV,
    AUTH_TABLE,
    READ_TOKEN,
    github_headers,
    github_push,
    registry_digest,
    wait_for,
)

pytestmark = pytest.mark.e2e


@pytest.fixture
def pushbuild(tmp_path, repo, git_server, docker_host, registry, base_image):
    """pushbuild's web process for one GitHub repository; each test starts the worker when it wants builds run."""
    require_chromium()
    config = {
        "server": {"data_dir": str(tmp_path / "data"), "mirror_dir": str(tmp_path / "mirrors")},
        "engine": {"base_url": docker_host},
        "auth": AUTH_TABLE,
        "repos": [{"name": repo.name, "forge": "github", "secret_env": "GITHUB_SECRET",
                   "clone_url": git_server.url(f"{repo.name}.git"), "image": f"{registry}/{repo.name}"}],
    }
    service = Pushbuild(tmp_path, config, {**SECRETS_ENV, **AUTH_ENV})
    try:
        service.start_web()
        yield service
    finally:
        service.stop()
        print(service.logs()[-20000:])


@pytest.fixture
def browsers(pushbuild):
    """Open browsers on pushbuild, closed when the test ends."""
    opened = []

    def open_browser(**options):
        opened.append(Browser(pushbuild.url, **options))
        return opened[-1]

    yield open_browser
    for browser in opened:
        browser.quit()


def push(service, repo, sha):
    body = json.dumps(github_push(repo=repo.name, sha=sha)).encode()
    response = service.post("/hooks/github", body, github_headers(body, GITHUB_SECRET))
    assert response.status_code == 202, response.text
    return response.json()["build"]


def row_state(browser, build_id):
    return browser.text(f'tr[data-build="{build_id}"] .state')


def sign_in_with_form(browser, token):
    browser.open("/")
    assert browser.find("h1").text == "Sign in to pushbuild"
    browser.find("#token").send_keys(token, Keys.ENTER)
    browser.wait_until(lambda: browser.path == "/" and browser.find_all("#builds"), timeout_s=10, what="signing in")


def test_a_push_appears_live_turns_green_and_its_log_streams(pushbuild, browsers, repo, registry, base_image):
    """Signed in by the link, the list shows a push queued and then succeeded without a reload; a reader
    signed in by the form watches its log arrive line by line, with colours, and sees the image's digest."""
    operator = browsers()
    operator.open(f"/?token={ADMIN_TOKEN}")
    assert operator.path == "/" and "token" not in operator.driver.current_url
    assert "No builds yet" in operator.text("#builds")
    operator.screenshot("builds-empty")

    sha = repo.commit({"Dockerfile": (
        f"FROM {base_image}\n"
        "RUN printf '\\033[32mgreen light\\033[0m\\n'; for i in $(seq 1 30); do echo \"line $i\"; sleep 0.2; done\n")})
    build_id = push(pushbuild, repo, sha)
    operator.wait_until(lambda: "queued" in row_state(operator, build_id), timeout_s=15, what="the queued push to appear")
    assert operator.text(f'tr[data-build="{build_id}"] td[data-label="Commit"]') == sha[:7]
    operator.screenshot("builds-queued")

    reader = browsers()
    sign_in_with_form(reader, READ_TOKEN)
    reader.open(f"/builds/{build_id}")
    pushbuild.start_worker()
    log = reader.wait_until(lambda: "line 5" in reader.text("#log") and reader.text("#log"), what="log lines to arrive")
    assert "line 30" not in log and "running" in reader.text("h1 .state")  # arriving while it runs, not after
    assert reader.find("#log span.fg2").text == "green light"
    cancel = reader.button("Cancel")
    assert not cancel.is_enabled() and "reader has the read scope" in cancel.get_attribute("title")
    reader.screenshot("build-running-read-only")

    operator.wait_until(lambda: "succeeded" in row_state(operator, build_id), what="the row to turn green")
    operator.screenshot("builds-succeeded")
    digest = registry_digest(registry, repo.name, sha)
    reader.wait_until(lambda: digest in reader.text("main"), what="the finished page with the digest")
    assert "line 30" in reader.text("#log") and "succeeded" in reader.text("h1 .state")
    assert [cell.text.split()[0] for cell in reader.find_all("table.phases tbody tr td:first-child")] == [
        "waiting", "fetching", "making", "building", "pushing"]
    reader.screenshot("build-succeeded")

    phone = browsers(size=PHONE)
    phone.open(f"/?token={ADMIN_TOKEN}")
    phone.screenshot("phone-builds")
    phone.open(f"/builds/{build_id}")
    phone.screenshot("phone-build")


def test_retry_and_build_again_from_a_build_page_with_the_keyboard(pushbuild, browsers, repo, base_image):
    """An operator retries a failed build and builds a succeeded commit again, reaching each button by Tab."""
    pushbuild.start_worker()
    failing = repo.commit({"Dockerfile": f"FROM {base_image}\nRUN echo about to fail && exit 3\n"})
    failed_id = push(pushbuild, repo, failing)
    assert pushbuild.wait_finished(failed_id)["state"] == "failed"

    operator = browsers()
    operator.open(f"/?token={ADMIN_TOKEN}")
    operator.open(f"/builds/{failed_id}")
    assert "code: 3" in operator.text("pre.error")
    operator.screenshot("build-failed")
    press_button_by_keyboard(operator, "Retry")
    operator.wait_until(lambda: operator.text("p.notice") == "Queued to run again.", timeout_s=10, what="the retry")
    wait_for(lambda: pushbuild.build(failed_id)["state"] != "failed", timeout_s=10, what="the build to be queued again")
    assert pushbuild.wait_finished(failed_id)["state"] == "failed"
    log = requests.get(f"{pushbuild.url}/api/builds/{failed_id}/log", headers=API_HEADERS, timeout=10).text
    assert "queued again by admin" in log and log.count("about to fail") >= 2  # it ran again

    good = repo.commit({"Dockerfile": f"FROM {base_image}\nRUN echo fine\n"})
    good_id = push(pushbuild, repo, good)
    assert pushbuild.wait_finished(good_id)["state"] == "succeeded"
    operator.open(f"/builds/{good_id}")
    press_button_by_keyboard(operator, "Build this commit again")
    new_id = operator.wait_until(lambda: operator.path.endswith("?done=rebuilt") and int(operator.path.split("/")[2].split("?")[0]),
                                 timeout_s=10, what="the new build's page")
    assert new_id > good_id and operator.text("p.notice").startswith("A new build of this commit is queued")
    built = pushbuild.wait_finished(new_id)
    assert (built["state"], built["sha"]) == ("succeeded", good)


def press_button_by_keyboard(browser, label):
    """Tab from the top of the page until ``label`` has the focus, then press Enter."""
    browser.find("body").send_keys(Keys.TAB)
    assert browser.driver.switch_to.active_element.text == "Skip to content"
    for _ in range(30):
        if browser.driver.switch_to.active_element.text == label:
            browser.driver.switch_to.active_element.send_keys(Keys.ENTER)
            return
        browser.driver.switch_to.active_element.send_keys(Keys.TAB)
    raise AssertionError(f"Tab never reached {label!r}")


class _ForgedForm(BaseHTTPRequestHandler):
    """Another origin's page whose form posts to pushbuild as soon as it loads."""

    target = ""

    def do_GET(self):
        page = (f'<form id="f" method="post" action="{self.target}"></form>'
                '<script>document.getElementById("f").submit()</script>').encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(page)))
        self.end_headers()
        self.wfile.write(page)

    def log_message(self, *args):
        pass


def test_forged_posts_are_refused_and_a_reader_sees_why_buttons_are_disabled(pushbuild, browsers, repo, base_image):
    """Without the page's CSRF token, or from another origin, a signed-in operator's browser changes nothing;
    a reader sees Retry and the build form disabled with the reason; the sign-in and repository pages."""
    repo.commit({"Dockerfile": f"FROM {base_image}\n"})
    reply = requests.post(f"{pushbuild.url}/api/builds", json={"repo": repo.name, "ref": "main"}, headers=API_HEADERS,
                          timeout=30)
    assert reply.status_code == 202, reply.text
    build_id = reply.json()["id"]
    assert requests.post(f"{pushbuild.url}/api/builds/{build_id}/cancel", headers=API_HEADERS, timeout=10).ok

    anonymous = browsers()
    anonymous.open("/repos")
    assert anonymous.find("h1").text == "Sign in to pushbuild"
    anonymous.screenshot("sign-in")

    operator = browsers()
    operator.open(f"/?token={ADMIN_TOKEN}")
    forged = operator.fetch(f"/builds/{build_id}/retry", method="POST", body="")
    assert forged["status"] == 403 and "reload the page" in forged["text"]

    _ForgedForm.target = f"{pushbuild.url}/builds/{build_id}/retry"
    other_origin = LoopbackServer(_ForgedForm)
    try:
        operator.driver.get(f"http://{other_origin.address}/")
        operator.wait_until(lambda: "Forbidden" in operator.text("h1"), timeout_s=10, what="the forged form's answer")
    finally:
        other_origin.stop()
    assert "this site's own pages" in operator.text("main")
    assert pushbuild.build(build_id)["state"] == "cancelled"

    reader = browsers()
    sign_in_with_form(reader, READ_TOKEN)
    reader.open(f"/builds/{build_id}")
    retry = reader.button("Retry")
    assert not retry.is_enabled() and "needs operate" in reader.text(".actions .reason")
    token = reader.find('input[name="csrf"]').get_attribute("value")
    refused = reader.fetch(f"/builds/{build_id}/retry", method="POST", body=f"csrf={token}")
    assert refused["status"] == 403 and pushbuild.build(build_id)["state"] == "cancelled"
    reader.screenshot("build-cancelled-read-only")

    reader.open("/repos")
    assert not reader.button("Build").is_enabled() and "needs operate" in reader.text("form.build-form .reason")
    assert f"{pushbuild.url}/hooks/github" in reader.text("details")
    reader.screenshot("repos-read-only")

    operator.open(f"/builds/{build_id}")
    operator.button("Retry").click()
    operator.wait_until(lambda: operator.text("p.notice") == "Queued to run again.", timeout_s=10, what="the real retry")
    wait_for(lambda: pushbuild.build(build_id)["state"] == "queued", timeout_s=10, what="the build to be queued")
    operator.open("/repos")
    operator.screenshot("repos")
