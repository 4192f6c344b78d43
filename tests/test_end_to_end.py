"""The whole product: signed push → gunicorn → worker → image in the registry, on real services."""

import json
import time
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families
from standardwebhooks.webhooks import Webhook

from webhook import defaults
from webhook.signatures import ed25519_public_key, new_ed25519_secret_key, verify_ed25519

from .helpers.configs import GITHUB_SECRET, SECRET_ENV_OF, SECRETS_ENV
from .helpers.receivers import Receiver
from .helpers.service import Pushbuild, serving
from .helpers.support import (
    API_HEADERS,
    bitbucket_headers,
    bitbucket_push,
    fixture,
    gitea_headers,
    gitea_push,
    github_headers,
    github_push,
    gitlab_headers,
    gitlab_push,
    registry_digest,
    wait_for,
)

pytestmark = pytest.mark.e2e


@pytest.fixture
def pushbuild(tmp_path, repo, git_server, docker_host, registry, base_image):
    """pushbuild serving one GitHub and one GitLab repository (the same git repo), web and worker running."""
    common = {"clone_url": git_server.url(f"{repo.name}.git"), "image": f"{registry}/{repo.name}"}
    config = {
        "server": {"data_dir": str(tmp_path / "data"), "mirror_dir": str(tmp_path / "mirrors"),
                   "lease_s": 4, "heartbeat_s": 1, "reconcile_every_s": 1},
        "engine": {"base_url": docker_host},
        "repos": [{"name": repo.name, "forge": forge, "secret_env": SECRET_ENV_OF[forge], **common} for forge in FORGES],
    }
    with serving(tmp_path, config, SECRETS_ENV) as service:
        yield service


def deliver(service, forge, repo, sha, *, secret=None):
    """Send the forge's real example push, pointed at ``repo`` and ``sha``, signed as that forge signs."""
    secret = secret or SECRETS_ENV[SECRET_ENV_OF[forge]]
    if forge == "github":
        body = json.dumps(github_push(repo=repo.name, sha=sha)).encode()
        return service.post("/hooks/github", body, github_headers(body, secret))
    if forge == "gitlab":
        body = json.dumps(gitlab_push(repo=repo.name, sha=sha)).encode()
        return service.post("/hooks/gitlab", body, gitlab_headers(token=secret))
    if forge == "gitea":
        body = json.dumps(gitea_push(repo=repo.name, sha=sha)).encode()
        return service.post("/hooks/gitea", body, gitea_headers(body, secret))
    body = json.dumps(bitbucket_push(repo=repo.name, changes=[("branch", "main", sha)])).encode()
    return service.post("/hooks/bitbucket", body, bitbucket_headers(body, secret))


FORGES = ["github", "gitlab", "gitea", "bitbucket"]


def scraped(service, name, **labels):
    """One sample of the service's /metrics (0 when absent)."""
    text = requests.get(f"{service.url}/metrics", headers=API_HEADERS, timeout=5).text
    return next((sample.value for family in text_string_to_metric_families(text) for sample in family.samples
                 if sample.name == name and sample.labels == labels), 0)


@pytest.mark.parametrize("forge", FORGES)
def test_a_signed_push_ends_as_a_runnable_image_in_the_registry(pushbuild, repo, registry, base_image, docker_client, forge):
    """202, then the API reports succeeded with the digest the registry serves, and the image runs the commit."""
    sha = repo.commit({"Dockerfile": f"FROM {base_image}\nCOPY message.txt /message.txt\nCMD cat /message.txt\n",
                       "message.txt": f"pushed through {forge}\n"})
    response = deliver(pushbuild, forge, repo, sha)
    assert response.status_code == 202, response.text
    build = pushbuild.wait_finished(response.json()["build"])
    assert build["state"] == "succeeded", build["error"]
    assert (build["repo"], build["sha"], build["ref"]) == (repo.name, sha, "refs/heads/main")
    assert build["digest"] == registry_digest(registry, repo.name, sha)
    assert requests.get(response.json()["status_url"], headers=API_HEADERS, timeout=5).json()["digest"] == build["digest"]
    output = docker_client.containers.run(f"{registry}/{repo.name}@{build['digest']}", remove=True, network_mode="none")
    assert output == f"pushed through {forge}\n".encode()
    log = requests.get(build["log_url"], headers=API_HEADERS, timeout=5).text
    assert "COPY message.txt /message.txt" in log and build["digest"] in log
    assert set(build["timings"]) == {"queue_wait", "fetch", "context", "build", "push"} and build["context_bytes"] > 0
    assert all(build["timings"][phase] > 0 for phase in ("fetch", "context", "build", "push")), build["timings"]
    # Counted in two processes: the delivery by the web process, the build by the worker; one scrape shows both.
    wait_for(lambda: scraped(pushbuild, "pushbuild_builds_finished_total", state="succeeded") == 1, timeout_s=20,
             what="the worker's counts in the web process's /metrics")
    assert scraped(pushbuild, "pushbuild_deliveries_total", forge=forge, outcome="accepted") == 1
    assert scraped(pushbuild, "pushbuild_phase_duration_seconds_count", phase="build") == 1
    listed = requests.get(f"{pushbuild.url}/api/builds", params={"repo": repo.name}, headers=API_HEADERS, timeout=5).json()["builds"]
    assert [b["id"] for b in listed] == [build["id"]]


def test_a_failing_run_step_is_reported_failed_and_nothing_is_pushed(pushbuild, repo, registry, base_image):
    """The engine's error is in the build's error, and the registry has no such tag."""
    sha = repo.commit({"Dockerfile": f"FROM {base_image}\nRUN exit 7\n"})
    response = deliver(pushbuild, "github", repo, sha)
    build = pushbuild.wait_finished(response.json()["build"])
    assert build["state"] == "failed"
    assert "returned a non-zero code: 7" in build["error"]
    assert build["digest"] is None and registry_digest(registry, repo.name, sha) is None


def test_a_bad_signature_is_401_and_no_build_exists(pushbuild, repo):
    """A delivery signed with the wrong secret is refused and leaves no trace in the API."""
    sha = repo.commit({"Dockerfile": "FROM scratch\n"})
    response = deliver(pushbuild, "github", repo, sha, secret="not the secret")
    assert response.status_code == 401
    assert GITHUB_SECRET not in response.text
    assert requests.get(f"{pushbuild.url}/api/builds", headers=API_HEADERS, timeout=5).json()["builds"] == []


def test_a_build_survives_its_worker_being_killed(pushbuild, repo, registry, base_image):
    """SIGKILL the worker mid-build; a new worker takes the build over when its lease expires."""
    sha = repo.commit({"Dockerfile": f"FROM {base_image}\nRUN sleep 4\nCOPY . /src\n", "x": "1"})
    response = deliver(pushbuild, "github", repo, sha)
    build_id = response.json()["build"]
    wait_for(lambda: "RUN sleep 4" in requests.get(f"{pushbuild.url}/api/builds/{build_id}/log", headers=API_HEADERS, timeout=5).text,
             what="the build to reach its RUN step")
    pushbuild.workers[0].kill()
    assert pushbuild.build(build_id)["state"] == "running"
    pushbuild.start_worker()
    build = pushbuild.wait_finished(build_id)
    assert build["state"] == "succeeded", build["error"]
    assert build["attempts"] == 2
    assert build["digest"] == registry_digest(registry, repo.name, sha)


def test_clients_following_logs_do_not_block_deliveries(tmp_path, repo, git_server, docker_host, registry):
    """Two followers past the cap get 429, and a webhook is still answered (tests/test_slow_clients.py has more)."""
    config = {"server": {"data_dir": str(tmp_path / "data"), "mirror_dir": str(tmp_path / "mirrors")},
              "engine": {"base_url": docker_host},
              "repos": [{"name": repo.name, "forge": "github", "secret_env": "GITHUB_SECRET",
                         "clone_url": git_server.url(f"{repo.name}.git"), "image": f"{registry}/{repo.name}"}]}
    service = Pushbuild(tmp_path, config, SECRETS_ENV)
    service.start_web()  # no worker: the first build stays queued, so its followers never finish
    followers = []
    try:
        first = deliver(service, "github", repo, repo.commit({"a": "1"}))
        log_url = f"{service.url}/api/builds/{first.json()['build']}/log?follow=1"
        followers = [requests.get(log_url, stream=True, headers=API_HEADERS, timeout=30) for _ in range(defaults.MAX_LOG_FOLLOWERS + 2)]
        codes = [f.status_code for f in followers]
        assert codes == [200] * defaults.MAX_LOG_FOLLOWERS + [429] * 2
        second = deliver(service, "github", repo, repo.commit({"a": "2"}))
        assert second.status_code == 202
    finally:
        for follower in followers:
            follower.close()
        service.stop()


def test_a_semver_tag_push_through_the_service(tmp_path, repo, git_server, docker_host, registry, base_image):
    """GitHub's real tag-push example, aimed at a fresh v2.5.0 tag, ends as 2.5.0, 2.5 and 2 in the registry."""
    config = {"server": {"data_dir": str(tmp_path / "data"), "mirror_dir": str(tmp_path / "mirrors")},
              "engine": {"base_url": docker_host},
              "repos": [{"name": repo.name, "forge": "github", "secret_env": "GITHUB_SECRET",
                         "clone_url": git_server.url(f"{repo.name}.git"), "image": f"{registry}/{repo.name}",
                         "rules": [{"tag": "v*", "semver": True, "latest": True}, {"branch": "main"}]}]}
    service = Pushbuild(tmp_path, config, SECRETS_ENV)
    service.start_web()
    service.start_worker()
    try:
        commit = repo.commit({"Dockerfile": f"FROM {base_image}\nLABEL version=2.5.0\n"})
        repo.tag("v2.5.0", annotated=True)
        payload = fixture("github/push_tag.json")
        payload.update(ref="refs/tags/v2.5.0", after=commit)
        payload["repository"]["full_name"] = repo.name
        payload["head_commit"]["id"] = commit
        body = json.dumps(payload).encode()
        response = service.post("/hooks/github", body, github_headers(body, GITHUB_SECRET))
        assert response.status_code == 202, response.text
        build = service.wait_finished(response.json()["build"])
        assert build["state"] == "succeeded", build["error"]
        assert {t.rsplit(":", 1)[1] for t in build["tags"]} == {commit, "v2.5.0", "2.5.0", "2.5", "2", "latest"}
        assert {registry_digest(registry, repo.name, t) for t in ("2.5.0", "2.5", "2", "latest")} == {build["digest"]}
    finally:
        service.stop()


def test_after_the_push_the_forge_and_the_deployer_hear_of_it(tmp_path, repo, git_server, docker_host, registry, base_image):
    """Status pending then success reach the forge API; the signed hook names the digest the registry serves."""
    forge_api, deployer = Receiver(answers=[201]), Receiver(answers=[200])
    hook_secret, signing_key = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", new_ed25519_secret_key()
    config = {"server": {"data_dir": str(tmp_path / "data"), "mirror_dir": str(tmp_path / "mirrors")},
              "engine": {"base_url": docker_host},
              "repos": [{"name": repo.name, "forge": "github", "secret_env": "GITHUB_SECRET",
                         "clone_url": git_server.url(f"{repo.name}.git"), "image": f"{registry}/{repo.name}",
                         "status": {"token_env": "STATUS_TOKEN", "api_url": forge_api.url},
                         "hooks": [{"name": "prod", "url": deployer.url + "/redeploy", "secret_env": "HOOK_SECRET",
                                    "signing_key_env": "HOOK_KEY"}]}]}
    service = Pushbuild(tmp_path, config, {**SECRETS_ENV, "STATUS_TOKEN": "tok-status", "HOOK_SECRET": hook_secret,
                                           "HOOK_KEY": signing_key})
    service.start_web()
    service.start_worker()
    try:
        sha = repo.commit({"Dockerfile": f"FROM {base_image}\nLABEL hooks=yes\n"})
        build = service.wait_finished(deliver(service, "github", repo, sha).json()["build"])
        assert build["state"] == "succeeded", build["error"]
        wait_for(lambda: len(deployer.received) == 1 and forge_api.received
                 and forge_api.received[-1].json()["state"] == "success", what="the final status and the hook")
        # pending is sent as the build starts; only a build faster than the forge API skips it
        assert [r.json()["state"] for r in forge_api.received] in (["pending", "success"], ["success"])
        assert forge_api.received[0].path == f"/repos/{repo.name}/statuses/{sha}"
        [hook] = deployer.received
        data = Webhook(hook_secret).verify(hook.body, hook.headers)["data"]
        assert data["digest"] == f"{registry}/{repo.name}@{registry_digest(registry, repo.name, sha)}"
        verify_ed25519(hook.body, msg_id=hook.headers["webhook-id"], timestamp=hook.headers["webhook-timestamp"],
                       signature=hook.headers["webhook-signature"], public_key=ed25519_public_key(signing_key),
                       now=time.time(), tolerance_s=300)
        listed = requests.get(build["deliveries_url"], headers=API_HEADERS, timeout=5).json()["deliveries"]
        assert [(d["kind"], d["state"]) for d in listed][1:] == [("status", "delivered"), ("hook", "delivered")]
    finally:
        service.stop()
        forge_api.stop()
        deployer.stop()
        print(service.logs())


def test_a_failing_status_api_never_fails_the_build(tmp_path, repo, git_server, docker_host, registry, base_image):
    """The forge API answering 500 leaves the build succeeded and the status visibly retrying."""
    forge_api = Receiver(answers=[500])
    config = {"server": {"data_dir": str(tmp_path / "data"), "mirror_dir": str(tmp_path / "mirrors")},
              "engine": {"base_url": docker_host},
              "repos": [{"name": repo.name, "forge": "github", "secret_env": "GITHUB_SECRET",
                         "clone_url": git_server.url(f"{repo.name}.git"), "image": f"{registry}/{repo.name}",
                         "status": {"token_env": "STATUS_TOKEN", "api_url": forge_api.url}}]}
    service = Pushbuild(tmp_path, config, {**SECRETS_ENV, "STATUS_TOKEN": "tok-status"})
    service.start_web()
    service.start_worker()
    try:
        sha = repo.commit({"Dockerfile": f"FROM {base_image}\n"})
        build = service.wait_finished(deliver(service, "github", repo, sha).json()["build"])
        assert build["state"] == "succeeded" and build["digest"] == registry_digest(registry, repo.name, sha)
        statuses = wait_for(lambda: [d for d in requests.get(build["deliveries_url"], headers=API_HEADERS, timeout=5).json()["deliveries"]
                                     if d["attempts"] and d["state"] == "pending"], what="a retrying status")
        assert statuses[-1]["attempts"][0]["status_code"] == 500 and statuses[-1]["next_attempt_at"]
        assert "tok-status" not in service.logs()
    finally:
        service.stop()
        forge_api.stop()


def test_a_push_survives_the_web_process_being_killed_after_answering(tmp_path, repo, git_server, docker_host, registry, base_image):
    """SIGKILL gunicorn right after its 202, start a worker: the accepted push still ends as an image."""
    config = {"server": {"data_dir": str(tmp_path / "data"), "mirror_dir": str(tmp_path / "mirrors"),
                         "reconcile_every_s": 1, "redispatch_after_s": 2},
              "engine": {"base_url": docker_host},
              "repos": [{"name": repo.name, "forge": "github", "secret_env": "GITHUB_SECRET",
                         "clone_url": git_server.url(f"{repo.name}.git"), "image": f"{registry}/{repo.name}"}]}
    service = Pushbuild(tmp_path, config, SECRETS_ENV)
    service.start_web()
    try:
        sha = repo.commit({"Dockerfile": f"FROM {base_image}\nLABEL survived=yes\n"})
        response = deliver(service, "github", repo, sha)
        assert response.status_code == 202
        service.web.kill()  # the master and its workers, no cleanup
        service.web.popen.wait()
        service.start_worker()
        service.start_web()
        build = service.wait_finished(response.json()["build"])
        assert build["state"] == "succeeded", build["error"]
        assert build["digest"] == registry_digest(registry, repo.name, sha)
    finally:
        service.stop()


def test_scaled_out_on_redis_and_postgresql_a_build_survives_a_killed_worker(
        tmp_path, repo, git_server, docker_host, registry, base_image, fresh_postgres_url, fresh_redis_url):
    """Celery on Redis, state on PostgreSQL, two workers: SIGKILL the one building; the other finishes it."""
    config = {"server": {"data_dir": str(tmp_path / "data"), "mirror_dir": str(tmp_path / "mirrors"),
                         "database_url": fresh_postgres_url, "broker_url": fresh_redis_url,
                         "lease_s": 4, "heartbeat_s": 1, "reconcile_every_s": 1},
              "engine": {"base_url": docker_host},
              "repos": [{"name": repo.name, "forge": "github", "secret_env": "GITHUB_SECRET",
                         "clone_url": git_server.url(f"{repo.name}.git"), "image": f"{registry}/{repo.name}"}]}
    service = Pushbuild(tmp_path, config, SECRETS_ENV)
    service.start_web()
    first, second = service.start_worker(), service.start_worker()
    try:
        sha = repo.commit({"Dockerfile": f"FROM {base_image}\nLABEL run={repo.name}\nRUN sleep 4\n"})
        build_id = deliver(service, "github", repo, sha).json()["build"]
        wait_for(lambda: "RUN sleep 4" in requests.get(f"{service.url}/api/builds/{build_id}/log", headers=API_HEADERS, timeout=5).text,
                 what="the build to reach its RUN step")
        db = sa.create_engine(fresh_postgres_url)
        with db.connect() as conn:
            owner = conn.execute(sa.text("select lease_owner from builds where id = :id"), {"id": build_id}).scalar_one()
        db.dispose()
        holder = next(w for w in (first, second) if f":{w.popen.pid}:" in owner)  # host:pid:nonce
        holder.kill()
        build = service.wait_finished(build_id)
        assert build["state"] == "succeeded", build["error"]
        assert build["attempts"] == 2 and build["digest"] == registry_digest(registry, repo.name, sha)
    finally:
        service.stop()


def test_urls_in_the_payload_are_never_fetched(pushbuild, repo, repo_factory, git_server, registry, base_image, docker_client):
    """A signed payload naming another repository's, ext:: and metadata URLs still builds the configured clone_url."""
    decoy = repo_factory("evil/decoy")
    decoy.commit({"Dockerfile": f"FROM {base_image}\nCOPY message.txt /message.txt\nCMD cat /message.txt\n",
                  "message.txt": "from the decoy\n"})
    sha = repo.commit({"Dockerfile": f"FROM {base_image}\nCOPY message.txt /message.txt\nCMD cat /message.txt\n",
                       "message.txt": "from the configured repository\n"})
    payload = github_push(repo=repo.name, sha=sha)
    payload["repository"].update(clone_url=git_server.url(f"{decoy.name}.git"), git_url="ext::sh -c touch% /tmp/pwned",
                                 ssh_url="http://169.254.169.254/latest/meta-data", html_url=git_server.url(decoy.name))
    body = json.dumps(payload).encode()
    build = pushbuild.wait_finished(pushbuild.post("/hooks/github", body, github_headers(body, GITHUB_SECRET)).json()["build"])
    assert build["state"] == "succeeded", build["error"]
    image = f"{registry}/{repo.name}@{build['digest']}"
    assert docker_client.containers.run(image, remove=True, network_mode="none") == b"from the configured repository\n"
    assert not any(decoy.name in path for _, path in git_server.requests)
    assert not Path("/tmp/pwned").exists()
