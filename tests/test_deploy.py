"""The deployment files parse and point at things that exist: commands, modules, variables, paths."""

import configparser
import importlib
import re
import shlex
from pathlib import Path

import pytest
import yaml

from webhook import defaults
from webhook.cli import main
from webhook.config import BROKER_URL_ENV, CONFIG_ENV, DATABASE_URL_ENV

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
