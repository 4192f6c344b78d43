"""The pushbuild command as a user runs it."""

import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from .helpers.configs import GITHUB_SECRET, SECRETS_ENV
from .helpers.service import free_port, write_toml
from .helpers.support import API_HEADERS, github_headers, github_push, registry_digest, wait_for

ROOT = Path(__file__).resolve().parent.parent


def pushbuild(*args, env=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "webhook", *args], capture_output=True, text=True,
                          env={**os.environ, **SECRETS_ENV, **(env or {})}, timeout=timeout, check=False)


@pytest.fixture
def config_file(tmp_path, repo, git_server, docker_host, registry):
    return write_toml(tmp_path / "pushbuild.toml", {
        "server": {"data_dir": str(tmp_path / "data"), "mirror_dir": str(tmp_path / "mirrors")},
        "engine": {"base_url": docker_host},
        "repos": [{"name": repo.name, "forge": "github", "secret_env": "GITHUB_SECRET",
                   "clone_url": git_server.url(f"{repo.name}.git"), "image": f"{registry}/{repo.name}"}],
    })


@pytest.mark.parametrize("command", [["worker"], ["serve"], ["check-config"]])
def test_commands_refuse_an_invalid_config(tmp_path, command):
    """serve, worker and check-config exit 2 naming the problem, before starting anything."""
    bad = write_toml(tmp_path / "bad.toml", {"repos": [{"name": "a/b", "forge": "github", "secret_env": "EMPTY",
                                                        "clone_url": "https://h/a.git", "image": "r/a"}]})
    result = pushbuild(*command, "--config", str(bad), env={"EMPTY": ""}, timeout=30)
    assert result.returncode == 2
    assert "repos[0].secret_env: environment variable EMPTY is unset or empty" in result.stderr


@pytest.mark.e2e
def test_build_streams_the_log_and_prints_the_digest(config_file, repo, registry, base_image):
    """`pushbuild build REPO main` builds the branch head, shows the engine's output, prints the digest."""
    sha = repo.commit({"Dockerfile": f"FROM {base_image}\nLABEL test-run={repo.name}\nRUN echo building-from-the-cli\n"})
    result = pushbuild("build", "--config", str(config_file), repo.name, "main")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "building-from-the-cli" in result.stdout
    digest = result.stdout.strip().splitlines()[-1]
    assert digest == registry_digest(registry, repo.name, sha) == registry_digest(registry, repo.name, "main")


@pytest.mark.e2e
def test_build_of_a_failing_commit_exits_1(config_file, repo, base_image):
    """A failed build says why and exits non-zero."""
    sha = repo.commit({"Dockerfile": f"FROM {base_image}\nRUN exit 5\n"})
    result = pushbuild("build", "--config", str(config_file), repo.name, sha)
    assert result.returncode == 1
    assert "returned a non-zero code: 5" in result.stdout and "failed" in result.stdout


@pytest.mark.e2e
def test_build_of_an_unknown_repo_or_ref_is_a_clear_error(config_file, repo):
    """An unconfigured repository or a missing branch exits 1 with a message."""
    repo.commit({"Dockerfile": "FROM scratch\n"})
    unknown = pushbuild("build", "--config", str(config_file), "nobody/nothing", "main", timeout=30)
    missing = pushbuild("build", "--config", str(config_file), repo.name, "no-such-branch", timeout=60)
    assert unknown.returncode == 1 and "'nobody/nothing' is not configured" in unknown.stderr
    assert missing.returncode == 1 and "git fetch failed" in missing.stderr


@pytest.mark.e2e
def test_serve_runs_web_and_worker_until_terminated(tmp_path, config_file, repo, registry, base_image):
    """`pushbuild serve` answers webhooks and builds them; SIGTERM stops it and its children.

    With no API token configured it says how to add one, and its API answers 401.
    """
    port = free_port()
    stderr = tmp_path / "serve.err"
    with open(stderr, "wb") as err:
        process = subprocess.Popen([sys.executable, "-m", "webhook", "serve", "--config", str(config_file),
                                    "--bind", f"127.0.0.1:{port}"], env={**os.environ, **SECRETS_ENV},
                                   stdout=subprocess.DEVNULL, stderr=err)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _healthy(url), timeout_s=30, what="serve to answer")
        sha = repo.commit({"Dockerfile": f"FROM {base_image}\n"})
        body = json.dumps(github_push(repo=repo.name, sha=sha)).encode()
        response = requests.post(f"{url}/hooks/github", data=body, headers=github_headers(body, GITHUB_SECRET), timeout=10)
        assert response.status_code == 202
        wait_for(lambda: registry_digest(registry, repo.name, sha), what="the image in the registry")
        assert requests.get(response.json()["status_url"], headers=API_HEADERS, timeout=5).status_code == 401
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    assert not _healthy(url)
    assert "no API tokens are configured" in stderr.read_text() and "[[auth.tokens]]" in stderr.read_text()


def _healthy(url):
    try:
        return requests.get(f"{url}/healthz", timeout=2).status_code == 200
    except requests.ConnectionError:
        return False


def test_reconcile_builds_heads_no_delivery_announced(tmp_path, repo, git_server):
    """Heads the forge never told us about are queued once; a second run finds nothing missing."""
    from .helpers.support import queued

    main_sha = repo.commit({"Dockerfile": "FROM scratch\n"})
    repo.tag("v1.0.0", annotated=True)
    repo.commit({"x": "1"}, branch="feature/wip")
    config_file = write_toml(tmp_path / "pushbuild.toml", {
        "server": {"data_dir": str(tmp_path / "data"), "mirror_dir": str(tmp_path / "mirrors")},
        "repos": [{"name": repo.name, "forge": "github", "secret_env": "GITHUB_SECRET", "branches": ["main"],
                   "clone_url": git_server.url(f"{repo.name}.git"), "image": f"127.0.0.1:5000/{repo.name}"}],
    })
    dry = pushbuild("reconcile", "--config", str(config_file), "--dry-run", timeout=60)
    assert dry.returncode == 0, dry.stderr
    assert f"refs/heads/main {main_sha}: never delivered" in dry.stdout
    assert f"refs/tags/v1.0.0 {main_sha}: never delivered" in dry.stdout, "an annotated tag is built as its commit"
    assert "feature/wip" not in dry.stdout and "2 missing (dry run)" in dry.stdout
    first = pushbuild("reconcile", "--config", str(config_file), timeout=60)
    assert "2 missing" in first.stdout
    from webhook.config import load_config

    assert len(queued(load_config(config_file, {**SECRETS_ENV}))) == 2
    again = pushbuild("reconcile", "--config", str(config_file), timeout=60)
    assert "0 missing" in again.stdout


def _sign_in_link(state: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ./dev's sign_in_link (what ./dev serve does before serving) with its state in ``state``."""
    script = 'source ./dev && STATE="$1" && shift && sign_in_link "$@" && echo "token=$PUSHBUILD_ADMIN_TOKEN"'
    return subprocess.run(["bash", "-c", script, "sign_in_link", str(state), *args], cwd=ROOT, capture_output=True,
                          text=True, check=True, env={"PATH": os.environ["PATH"], **(env or {})})


def test_dev_serve_makes_a_private_token_once_and_prints_a_sign_in_link(tmp_path):
    """./dev serve: an operate token in .pushbuild/admin-token (0600), the same one on the next start, and its link."""
    first = _sign_in_link(tmp_path / "state")
    token_file = tmp_path / "state" / "admin-token"
    token = token_file.read_text().strip()
    assert len(token) >= 32 and stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert f"sign in at http://127.0.0.1:8080/?token={token}" in first.stderr and f"token={token}" in first.stdout
    again = _sign_in_link(tmp_path / "state", "--bind", "0.0.0.0:9000")
    assert f"http://127.0.0.1:9000/?token={token}" in again.stderr
    own = _sign_in_link(tmp_path / "other", env={"PUSHBUILD_ADMIN_TOKEN": "mine-" + "x" * 40})
    assert "token=mine-" in own.stdout and not (tmp_path / "other" / "admin-token").exists()


def _packages_dev_would_install(tmp_path: Path, function: str, *, engine_installed: bool) -> list[str]:
    """Run ./dev's install step with dpkg saying nothing is installed; return what apt-get was asked to install."""
    fake = tmp_path / "bin"
    fake.mkdir(parents=True)
    asked = tmp_path / "apt-get.args"
    (fake / "dpkg").write_text("#!/bin/sh\nexit 1\n")
    (fake / "apt-get").write_text(f'#!/bin/sh\n[ "$1" = install ] && echo "$@" >> {asked}\nexit 0\n')
    (fake / "id").write_text("#!/bin/sh\necho 0\n")
    for engine_command in ("dockerd", "docker") if engine_installed else ():
        (fake / engine_command).write_text("#!/bin/sh\nexit 0\n")
    for script in fake.iterdir():
        script.chmod(0o755)
    path = f"{fake}:/usr/bin:/bin"
    subprocess.run(["bash", "-c", f"source ./dev && {function}"], cwd=ROOT, env={"PATH": path}, check=True,
                   capture_output=True)
    return asked.read_text().split()[4:]  # after "install -y -qq --no-install-recommends"


def test_dev_serve_installs_only_what_serving_needs_and_keeps_an_installed_engine(tmp_path):
    """Redis, PostgreSQL, sshd and htpasswd are for ./dev test; Docker CE's engine is never replaced by docker.io."""
    serving = _packages_dev_would_install(tmp_path / "a", "install_system", engine_installed=False)
    assert {"docker.io", "docker-registry", "busybox-static", "git"} <= set(serving)
    assert not {"redis-server", "postgresql", "openssh-server", "apache2-utils"} & set(serving)
    testing = _packages_dev_would_install(tmp_path / "b", "install_system redis-server postgresql", engine_installed=True)
    assert {"redis-server", "postgresql"} <= set(testing) and "docker.io" not in testing
