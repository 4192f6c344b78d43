"""Operating a real service through its API: manual builds, cancelling a running build, and tokens kept out of logs."""

import json
import os
import subprocess
import sys

import pytest
import requests

from .helpers.configs import SECRETS_ENV
from .helpers.service import serving
from .helpers.support import ADMIN_TOKEN, API_HEADERS, github_headers, github_push, registry_digest, wait_for

pytestmark = pytest.mark.e2e


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


def test_a_manual_build_of_a_ref_the_forge_lacks_is_404(service, repo, base_image):
    repo.commit({"Dockerfile": f"FROM {base_image}\n"})
    response = api(service, "POST", "/api/builds", json={"repo": repo.name, "ref": "no-such-branch"})
    assert response.status_code == 404 and "has no refs/heads/no-such-branch" in response.json()["error"]


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


def test_tokens_never_reach_the_logs(service):
    """Neither the sign-in link's ?token= nor an Authorization header shows in gunicorn's or pushbuild's logs."""
    session = requests.Session()
    assert session.get(f"{service.url}/?token={ADMIN_TOKEN}", timeout=10).json()["signed_in_as"] == "admin"
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


def test_the_cli_builds_through_the_services_api_and_streams_the_log(service, repo, registry, base_image):
    """`pushbuild build --url` starts the build on the service, prints its log as it comes, and the digest."""
    sha = repo.commit({"Dockerfile": f"FROM {base_image}\nRUN echo hello from the build\n"})
    done = pushbuild_cli("build", "--url", service.url, repo.name, "main", token=ADMIN_TOKEN)
    assert done.returncode == 0, done.stderr
    assert "hello from the build" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == registry_digest(registry, repo.name, sha)
    assert ADMIN_TOKEN not in done.stdout + done.stderr


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
