"""The deployment files parse and point at things that exist: commands, modules, variables, paths."""

import configparser
import importlib
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import yaml

from webhook import defaults
from webhook.cli import main
from webhook.config import BROKER_URL_ENV, CONFIG_ENV, DATABASE_URL_ENV

from .conftest import GITHUB_SECRET, SECRETS_ENV
from .service import Process, free_port, write_toml
from .support import github_headers, github_push, registry_digest, wait_for

ROOT = Path(__file__).parent.parent
DEPLOY = ROOT / "deploy"
MIRROR_PARENT = str(Path(defaults.MIRROR_DIR).parent)


def assert_runs_something_real(argv: list[str]) -> None:
    """gunicorn on our config module and app factory, or a real pushbuild subcommand."""
    if argv[0] == "gunicorn":
        config = argv[argv.index("--config") + 1]
        assert config.startswith("python:")
        importlib.import_module(config.removeprefix("python:"))
        module, _, factory = argv[-1].partition(":")
        assert factory == "create_app()" and callable(importlib.import_module(module).create_app)
    else:
        assert argv[0] == "pushbuild"
        scripts = configparser.ConfigParser()
        scripts.read(ROOT / "setup.cfg")
        assert "pushbuild = webhook.cli:main" in scripts["options.entry_points"]["console_scripts"]
        assert argv[1] in main.commands, f"pushbuild has no {argv[1]!r} command"


def test_compose_runs_web_worker_redis_postgres_and_a_registry():
    """docker-compose.yml: the five services, real commands, our variable names, mirrors on tmpfs."""
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"web", "worker", "redis", "postgres", "registry"}
    for name in ("web", "worker"):
        assert_runs_something_real(services[name]["command"])
        assert {CONFIG_ENV, BROKER_URL_ENV, DATABASE_URL_ENV} <= set(services[name]["environment"])
        assert (ROOT / "deploy" / services[name]["build"]["dockerfile"].removeprefix("deploy/")).exists()
    assert services["web"]["environment"][BROKER_URL_ENV].startswith("redis://redis:")
    assert "@postgres/" in services["web"]["environment"][DATABASE_URL_ENV]
    for name in ("web", "worker"):
        assert_runs_something_real(services[name]["healthcheck"]["test"][1:])
    tmpfs = [v for v in services["worker"]["volumes"] if isinstance(v, dict) and v["type"] == "tmpfs"]
    assert tmpfs and tmpfs[0]["target"] == MIRROR_PARENT


def test_kubernetes_manifests_run_web_and_worker_with_memory_backed_mirrors():
    """Web and worker Deployments with real commands; mirrors on a memory-backed emptyDir."""
    docs = [d for d in yaml.safe_load_all((DEPLOY / "kubernetes" / "pushbuild.yaml").read_text()) if d]
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    assert set(deployments) == {"pushbuild-web", "pushbuild-worker"}
    for deployment in deployments.values():
        assert_runs_something_real(deployment["spec"]["template"]["spec"]["containers"][0]["command"])
    worker = deployments["pushbuild-worker"]["spec"]["template"]["spec"]
    mirrors = next(v for v in worker["volumes"] if v["name"] == "mirrors")
    assert mirrors["emptyDir"]["medium"] == "Memory"
    mounts = {m["name"]: m["mountPath"] for m in worker["containers"][0]["volumeMounts"]}
    assert mounts["mirrors"] == MIRROR_PARENT
    web = deployments["pushbuild-web"]["spec"]["template"]["spec"]["containers"][0]
    assert web["readinessProbe"]["httpGet"]["path"] == "/healthz"
    probe = worker["containers"][0]["readinessProbe"]["exec"]["command"]
    assert_runs_something_real(probe)
    assert probe[-1] == "--worker"


def test_the_image_copies_files_that_exist():
    """Every COPY source in deploy/Dockerfile exists in the repository."""
    for line in (DEPLOY / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), source


@pytest.mark.parametrize("line", [
    line for line in (ROOT / "Procfile").read_text().splitlines() if line.strip()
])
def test_procfile_processes_run_something_real(line):
    """Procfile's web and worker."""
    kind, _, command = line.partition(":")
    assert kind in ("web", "worker")
    assert_runs_something_real(shlex.split(command))


@pytest.mark.parametrize("unit", sorted((DEPLOY / "systemd").glob("*.service")), ids=lambda p: p.name)
def test_systemd_units_run_something_real(unit):
    """The systemd units' ExecStart lines."""
    exec_start = re.search(r"^ExecStart=(.+)$", unit.read_text(), re.MULTILINE).group(1)
    argv = shlex.split(exec_start)
    argv[0] = Path(argv[0]).name
    assert_runs_something_real(argv)


@pytest.mark.e2e
def test_installed_as_the_image_installs_it_serve_and_a_second_worker_build_a_push(
        tmp_path, repo, git_server, docker_host, registry, base_image, fresh_postgres_url, fresh_redis_url):
    """A fresh virtualenv with `.[redis,postgres]` only (as deploy/Dockerfile installs): serve + a worker on Redis and PostgreSQL build a push."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", f"{ROOT}[redis,postgres]"],
                   check=True, timeout=900)
    port = free_port()
    config = write_toml(tmp_path / "pushbuild.toml", {
        "server": {"data_dir": str(tmp_path / "data"), "mirror_dir": str(tmp_path / "mirrors"),
                   "database_url": fresh_postgres_url, "broker_url": fresh_redis_url},
        "engine": {"base_url": docker_host},
        "repos": [{"name": repo.name, "forge": "github", "secret_env": "GITHUB_SECRET",
                   "clone_url": git_server.url(f"{repo.name}.git"), "image": f"{registry}/{repo.name}"}]})
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), **SECRETS_ENV, CONFIG_ENV: str(config)}
    pushbuild = str(venv / "bin" / "pushbuild")
    serve = Process([pushbuild, "serve", "--bind", f"127.0.0.1:{port}"], env=env, log=tmp_path / "serve.log")
    worker = Process([pushbuild, "worker"], env=env, log=tmp_path / "worker.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(f"{url}/healthz"), timeout_s=60, what="pushbuild serve to answer")
        sha = repo.commit({"Dockerfile": f"FROM {base_image}\nLABEL installed=as-the-image\n"})
        body = json.dumps(github_push(repo=repo.name, sha=sha)).encode()
        reply = requests.post(f"{url}/hooks/github", data=body, headers=github_headers(body, GITHUB_SECRET), timeout=10)
        assert reply.status_code == 202, reply.text
        build = wait_for(lambda: (b := requests.get(reply.json()["status_url"], timeout=5).json())["state"]
                         in ("succeeded", "failed") and b, timeout_s=180, what="the build")
        assert build["state"] == "succeeded", build["error"]
        assert build["digest"] == registry_digest(registry, repo.name, sha)
    finally:
        for process in (worker, serve):
            process.stop()
    assert "ModuleNotFoundError" not in (tmp_path / "worker.log").read_text() + (tmp_path / "serve.log").read_text()


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.ConnectionError:
        return False
