"""Operating pushbuild: retry, cancel, redeliver and manual builds, through the API and the CLI.

The first part drives the app's API in process; the second a real service (gunicorn, a worker,
the engine, git over HTTP): manual builds, cancelling a running build, the CLI through the API,
and tokens kept out of the logs.
"""

import json
import os
import socket
import subprocess
import sys
import time

import pytest
import requests

from webhook import create_app, defaults
from webhook.build.pipeline import Outcome
from webhook.events import PushEvent
from webhook.store import BuildState

from .helpers.configs import SECRETS_ENV, repo_table
from .helpers.service import serving
from .helpers.support import (
    ADMIN_TOKEN,
    API_HEADERS,
    API_REPO,
    API_SHA,
    OPERATE_TOKEN,
    finish,
    github_headers,
    github_push,
    record,
    registry_digest,
    signed_in,
    wait_for,
)

SHA = API_SHA
NEWER = "7" * 40
REPO = API_REPO


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
    assert not store.finish(build.id, BuildState.FAILED, owner="w", error="the worker's own ending")
    assert store.get(build.id).state is BuildState.CANCELLED


def test_a_cancel_that_comes_after_the_push_began_leaves_the_truth_on_record(app):
    """The pipeline stops before pushing; a cancel arriving while it pushes cannot unpush. The build ends
    succeeded with its digest, so ordering still knows this commit holds the branch's tags."""
    build = record(app)
    services = app.extensions["pushbuild"]
    services.store.claim(build.id, owner="w", lease_s=60)
    pipeline = services.pipeline()
    digest = "sha256:" + "c" * 64

    def cancelled_while_pushing(running, log, timer):
        assert operator(app).post(f"/api/builds/{build.id}/cancel").json["state"] == "cancelled"
        return Outcome(BuildState.SUCCEEDED, tags=(f"r/x:{SHA}", "r/x:main"), digest=digest)

    pipeline._run = cancelled_while_pushing
    pipeline.run(services.store.get(build.id), owner="w")
    after = services.store.get(build.id)
    assert (after.state, after.digest, after.tags) == (BuildState.SUCCEEDED, digest, (f"r/x:{SHA}", "r/x:main"))
    assert "cancelled after its push had begun" in after.error
    later = record(app, sha=NEWER)  # a queued build cancelled before it ran can never be made to look pushed
    operator(app).post(f"/api/builds/{later.id}/cancel")
    assert not services.store.finish(later.id, BuildState.SUCCEEDED, digest=digest)


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


# --- a real service -------------------------------------------------------------------------------------

@pytest.fixture
def service(tmp_path, repo, git_server, docker_host, registry, base_image):
    """pushbuild for one GitHub repository, web and worker running, leases renewed every second."""
    config = {
        "server": {"data_dir": str(tmp_path / "data"), "mirror_dir": str(tmp_path / "mirrors"),
                   "lease_s": 4, "heartbeat_s": 1, "reconcile_every_s": 1},
        "engine": {"base_url": docker_host},
        "repos": [{"name": repo.name, "forge": "github", "secret_env": "GITHUB_SECRET",
                   "clone_url": git_server.url(f"{repo.name}.git"), "image": f"{registry}/{repo.name}"}],
    }
    with serving(tmp_path, config, SECRETS_ENV) as pushbuild:
        yield pushbuild


def api(service, method, path, **kwargs):
    return requests.request(method, f"{service.url}{path}", headers=API_HEADERS, timeout=30, **kwargs)


@pytest.mark.e2e
def test_a_manual_build_of_a_branch_builds_its_head_into_the_registry(service, repo, registry, base_image):
    """POST /api/builds with a branch: the forge's head commit is built and pushed, the pusher is the token's name."""
    repo.commit({"Dockerfile": f"FROM {base_image}\n", "a": "1"})
    head = repo.commit({"Dockerfile": f"FROM {base_image}\n", "a": "2"})
    response = api(service, "POST", "/api/builds", json={"repo": repo.name, "ref": "main"})
    assert response.status_code == 202, response.text
    assert (response.json()["sha"], response.json()["pusher"]) == (head, "admin")
    build = service.wait_finished(response.json()["id"])
    assert build["state"] == "succeeded", build["error"]
    assert build["digest"] == registry_digest(registry, repo.name, head)
    assert registry_digest(registry, repo.name, "main") == build["digest"]  # the branch tag moved, as for a push


@pytest.mark.e2e
def test_a_manual_build_of_a_ref_the_forge_lacks_is_404(service, repo, base_image):
    repo.commit({"Dockerfile": f"FROM {base_image}\n"})
    response = api(service, "POST", "/api/builds", json={"repo": repo.name, "ref": "no-such-branch"})
    assert response.status_code == 404 and "has no refs/heads/no-such-branch" in response.json()["error"]


@pytest.mark.e2e
def test_cancelling_a_running_build_stops_it_before_anything_is_pushed(service, repo, registry, base_image):
    """A build cancelled in its RUN step ends cancelled at its worker's next lease renewal, and pushes nothing."""
    sha = repo.commit({"Dockerfile": f"FROM {base_image}\n"
                                     "RUN for i in 1 2 3 4 5 6 7 8 9 10 11 12; do echo tick $i; sleep 1; done\n"})
    body = json.dumps(github_push(repo=repo.name, sha=sha)).encode()
    build_id = service.post("/hooks/github", body, github_headers(body, SECRETS_ENV["GITHUB_SECRET"])).json()["build"]
    wait_for(lambda: "tick 2" in api(service, "GET", f"/api/builds/{build_id}/log").text, what="the RUN step to tick")
    response = api(service, "POST", f"/api/builds/{build_id}/cancel")
    assert response.status_code == 200 and response.json()["state"] == "cancelled", response.text
    log = wait_for(lambda: (text := api(service, "GET", f"/api/builds/{build_id}/log").text)
                   and "stopped before pushing" in text and text, what="the worker to stop the build")
    assert "tick 12" not in log
    assert f"pushing {registry}" not in log
    assert "--- cancelled by admin ---" in log
    build = service.build(build_id)
    assert (build["state"], build["digest"], build["error"]) == ("cancelled", None, "cancelled by admin")
    assert registry_digest(registry, repo.name, sha) is None
    assert api(service, "POST", f"/api/builds/{build_id}/retry").status_code == 202
    assert service.wait_finished(build_id)["digest"] == registry_digest(registry, repo.name, sha)


@pytest.mark.e2e
def test_tokens_never_reach_the_logs(service):
    """Neither the sign-in link's ?token= nor an Authorization header shows in gunicorn's or pushbuild's logs."""
    session = requests.Session()
    assert session.get(f"{service.url}/?token={ADMIN_TOKEN}", timeout=10).status_code == 200  # the console, signed in
    assert session.get(f"{service.url}/api/me", timeout=10).json()["signed_in_as"] == "admin"
    assert requests.get(f"{service.url}/api/builds", headers=API_HEADERS, timeout=10).status_code == 200
    assert requests.get(f"{service.url}/api/builds?token={ADMIN_TOKEN}", timeout=10).status_code == 401
    assert requests.get(f"{service.url}/api/builds", auth=(ADMIN_TOKEN, ""), timeout=10).status_code == 401  # Basic
    forged = '/x%20HTTP/1.1%22%20200%200%0a10.0.0.9%20-%20admin%20%5B-%5D%20%22POST%20/api/builds/1/cancel'
    assert requests.get(f"{service.url}{forged}", timeout=10).status_code == 401
    wait_for(lambda: "/x HTTP/1.1" in service.logs(), what="the access log")
    assert ADMIN_TOKEN not in service.logs()
    assert not [line for line in service.logs().splitlines() if line.startswith("10.0.0.9")]  # no forged line


def pushbuild_cli(*args, token=None, url=None):
    env = {k: v for k, v in os.environ.items() if k not in ("PUSHBUILD_TOKEN", "PUSHBUILD_URL", "PUSHBUILD_CONFIG")}
    env |= {"PUSHBUILD_TOKEN": token} if token else {}
    env |= {"PUSHBUILD_URL": url} if url else {}
    return subprocess.run([sys.executable, "-m", "webhook", *args], env=env, capture_output=True, text=True, timeout=180)


@pytest.mark.e2e
def test_the_cli_builds_through_the_services_api_and_streams_the_log(service, repo, registry, base_image):
    """`pushbuild build --url` starts the build on the service, prints its log as it comes, and the digest."""
    sha = repo.commit({"Dockerfile": f"FROM {base_image}\nRUN echo hello from the build\n"})
    done = pushbuild_cli("build", "--url", service.url, repo.name, "main", token=ADMIN_TOKEN)
    assert done.returncode == 0, done.stderr
    assert "hello from the build" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == registry_digest(registry, repo.name, sha)
    assert ADMIN_TOKEN not in done.stdout + done.stderr


@pytest.mark.e2e
def test_the_cli_through_the_api_says_what_the_service_refused(service, repo, base_image):
    """A read token may not retry (403), no token is a clear error, and the token never shows."""
    read = "read-only-token-for-the-cli-0123456789abc"
    service.stop()
    service.env["PUSHBUILD_READER"] = read
    service.config_path.write_text(service.config_path.read_text() + (
        '\n[[auth.tokens]]\nname = "reader"\ntoken_env = "PUSHBUILD_READER"\nscope = "read"\n'))
    service.start_web()
    refused = pushbuild_cli("retry", "1", url=service.url, token=read)
    assert refused.returncode == 1 and "answered 403" in refused.stderr and read not in refused.stderr
    anonymous = pushbuild_cli("cancel", "1", url=service.url)
    assert anonymous.returncode == 1 and "set PUSHBUILD_TOKEN" in anonymous.stderr
    missing = pushbuild_cli("cancel", "999", url=service.url, token=ADMIN_TOKEN)
    assert missing.returncode == 1 and "no build 999" in missing.stderr


@pytest.mark.e2e
def test_a_manual_build_of_a_commit_the_rules_never_build_is_refused(service, repo, base_image):
    """A commit that is neither the head of a ref the rules build nor a recorded push is 422: it could be anyone's."""
    service.stop()
    service.config_path.write_text(service.config_path.read_text() + '\n[[repos.rules]]\nbranch = "main"\n')
    service.start_web()
    repo.commit({"Dockerfile": f"FROM {base_image}\n"})
    stray = repo.commit({"Dockerfile": f"FROM {base_image}\n", "x": "1"}, branch="experiment")
    response = api(service, "POST", "/api/builds", json={"repo": repo.name, "sha": stray})
    assert response.status_code == 422 and "is not the head of a branch or tag" in response.json()["error"]
    main = api(service, "POST", "/api/builds", json={"repo": repo.name, "ref": "main"})
    assert main.status_code == 202
    assert api(service, "POST", "/api/builds", json={"repo": repo.name, "sha": main.json()["sha"]}).status_code == 202


def test_a_manual_build_asks_a_silent_forge_only_briefly(make_config, monkeypatch):
    """git ls-remote runs in the web request: a forge that accepts and never answers is a 502 after
    WEB_GIT_TIMEOUT_S, not a request held for git's five minutes."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts (the kernel does), never answers
    url = f"http://127.0.0.1:{silent.getsockname()[1]}/acme/app.git"
    monkeypatch.setattr(defaults, "WEB_GIT_TIMEOUT_S", 1.0)
    app = create_app(make_config(repo_table(REPO, clone_url=url)))
    started = time.monotonic()
    try:
        response = operator(app).post("/api/builds", json={"repo": REPO, "ref": "main"})
    finally:
        silent.close()
    assert response.status_code == 502 and "cannot list" in response.json["error"]
    assert time.monotonic() - started < 60  # git's own timeout is 300 s: this bound tells the two apart
