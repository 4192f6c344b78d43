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
from webhook.config import ADMIN_TOKEN_ENV, BROKER_URL_ENV, CONFIG_ENV, DATABASE_URL_ENV
from webhook.web import streams

from .helpers.configs import GITHUB_SECRET, SECRETS_ENV
from .helpers.service import Process, free_port, write_toml
from .helpers.support import ADMIN_TOKEN, API_HEADERS, github_headers, github_push, registry_digest, wait_for

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
    """docker-compose.yml: the five services behind an nginx proxy, real commands, our variable names, mirrors on tmpfs."""
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"proxy", "web", "worker", "redis", "postgres", "registry"}
    assert "ports" not in services["web"], "the web process is reached through the proxy only"
    proxy = services["proxy"]
    assert proxy["volumes"] == ["./nginx.conf:/etc/nginx/templates/default.conf.template:ro"]
    web_bind = services["web"]["command"][services["web"]["command"].index("--bind") + 1]
    assert proxy["environment"]["PUSHBUILD_UPSTREAM"] == f"web:{web_bind.rpartition(':')[2]}"
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
    web, proxy = deployments["pushbuild-web"]["spec"]["template"]["spec"]["containers"]
    assert proxy["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    web_bind = web["command"][web["command"].index("--bind") + 1]
    assert web_bind.startswith("127.0.0.1:") and "ports" not in web, "the web process is reached through the proxy only"
    assert {"name": "PUSHBUILD_UPSTREAM", "value": web_bind} in proxy["env"]
    [service] = [d for d in docs if d["kind"] == "Service"]
    assert service["spec"]["ports"][0]["targetPort"] == "http" == proxy["ports"][0]["name"]
    [nginx] = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "pushbuild-nginx"]
    assert nginx["data"]["default.conf.template"] == (DEPLOY / "nginx.conf").read_text(), "keep it a copy of deploy/nginx.conf"
    probe = worker["containers"][0]["readinessProbe"]["exec"]["command"]
    assert_runs_something_real(probe)
    assert probe[-1] == "--worker"


def _nginx(directive: str, text: str) -> list[str]:
    return re.findall(rf"^\s*{directive}\s+([^;]+);", text, re.MULTILINE)


def test_the_nginx_proxy_buffers_requests_within_pushbuilds_own_limits():
    """deploy/nginx.conf: request buffering, the deadlines and body limit pushbuild has, streamed log follows, no secrets logged."""
    conf = (DEPLOY / "nginx.conf").read_text()
    deadline = f"{defaults.REQUEST_TIMEOUT_S:g}s"
    assert _nginx("client_header_timeout", conf) == _nginx("client_body_timeout", conf) == [deadline]
    assert _nginx("client_max_body_size", conf) == [f"{defaults.MAX_BODY_BYTES // 2**20}m"]
    assert defaults.MAX_BODY_BYTES % 2**20 == 0
    assert _nginx("proxy_request_buffering", conf) == ["on"]
    assert {"X-Forwarded-For $proxy_add_x_forwarded_for", "X-Forwarded-Proto $scheme",
            'X-Forwarded-User ""'} <= set(_nginx("proxy_set_header", conf))  # a client's X-Forwarded-User never passes
    log_format = conf[conf.index("log_format"):conf.index(";", conf.index("log_format"))]
    assert "$uri" in log_format and not re.search(r"\$(request\b|request_uri|args|query_string|arg_|http_authorization|http_cookie)", log_format)
    assert _nginx("access_log", conf) == ["/dev/stdout pushbuild"]
    follow = conf[conf.index("location ~ ^/(api/builds/[0-9]+/log|builds/[0-9]+/events)$"):]
    assert _nginx("proxy_buffering", follow) == ["off"]
    assert int(_nginx("proxy_read_timeout", follow)[0].removesuffix("s")) > streams.MAX_S


def test_the_caddyfile_buffers_requests_within_pushbuilds_own_limits():
    """deploy/Caddyfile: the same deadlines and limits, streamed log follows, no token= logged."""
    caddy = (DEPLOY / "Caddyfile").read_text()
    deadline = f"{defaults.REQUEST_TIMEOUT_S:g}s"
    assert re.search(rf"^\s*read_header {deadline}$", caddy, re.MULTILINE)
    assert re.search(rf"^\s*read_body {deadline}$", caddy, re.MULTILINE)
    assert re.search(r"^\s*write\b", caddy, re.MULTILINE) is None, "a write timeout would cut followed logs"
    assert re.search(rf"^\s*max_size {defaults.MAX_BODY_BYTES // 2**20}MiB$", caddy, re.MULTILINE)
    assert re.search(rf"^\s*request_buffers {defaults.MAX_BODY_BYTES // 2**20}MiB$", caddy, re.MULTILINE)
    assert re.search(r"@log_follow path_regexp \^/\(api/builds/\[0-9\]\+/log\|builds/\[0-9\]\+/events\)\$\n"
                     r"\s*reverse_proxy @log_follow \S+ \{\n\s*flush_interval -1",
                     caddy)
    assert re.search(r"request>uri query \{\n\s*delete token\n", caddy)
    assert caddy.count("header_up -X-Forwarded-User") == caddy.count("reverse_proxy ")  # only an SSO proxy may set it
    assert caddy.count("{") == caddy.count("}")


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
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), **SECRETS_ENV, CONFIG_ENV: str(config),
           ADMIN_TOKEN_ENV: ADMIN_TOKEN}
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
        build = wait_for(lambda: (b := requests.get(reply.json()["status_url"], headers=API_HEADERS, timeout=5).json())["state"]
                         in ("succeeded", "failed") and b, timeout_s=180, what="the build")
        assert build["state"] == "succeeded", build["error"]
        assert build["digest"] == registry_digest(registry, repo.name, sha)
    finally:
        for process in (worker, serve):
            process.stop()
            print(process.log.read_text(errors="replace")[-6000:])  # shown when the test fails
    assert "ModuleNotFoundError" not in (tmp_path / "worker.log").read_text() + (tmp_path / "serve.log").read_text()


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.ConnectionError:
        return False
