"""The BuildKit backend: the docker CLI's BuildKit build, fed the context on stdin, secrets only in its environment."""

import json
import stat
import threading
import time
from pathlib import Path

import pytest

from webhook.build.backends.base import BuildLimits
from webhook.build.backends.buildkit import BuildKitBackend, _run
from webhook.build.engine import Engine
from webhook.config import EngineConfig
from webhook.errors import Cancelled, EngineError

from .helpers.build_contexts import plan_for, tar_context, tar_header
from .helpers.support import wait_for

LIMITS = BuildLimits(timeout_s=60)


def fake_cli(tmp_path: Path, body: str) -> str:
    """A docker CLI stand-in: a shell script running ``body``, with ``$out`` a directory to leave evidence in."""
    out = tmp_path / "out"
    out.mkdir(parents=True)
    script = tmp_path / "docker"
    script.write_text(f"#!/bin/sh\nout={out}\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


#: Records what it was given, then writes the image id where --iidfile says, as the CLI does.
RECORDING = """printf '%s\\n' "$@" > "$out/argv"
env > "$out/env"
cp "$DOCKER_CONFIG/config.json" "$out/config.json"
cat > "$out/context"
while [ $# -gt 0 ]; do [ "$1" = --iidfile ] && echo sha256:f00d > "$2"; shift; done
echo '#1 DONE 0.1s'"""


def test_secrets_and_build_argument_values_reach_the_cli_through_its_environment_only(tmp_path, monkeypatch):
    """Values never appear on the command line (the process list); names, labels and settings do."""
    monkeypatch.setenv("ACME_DEPLOY_TOKEN", "ours-not-theirs")
    backend = BuildKitBackend(cli=fake_cli(tmp_path, RECORDING), host="tcp://engine:2375", network="none",
                              auth={"username": "u", "password": "p"}, secrets={"npm": "npm-s3cret"})
    lines = []
    context = b"".join(tar_context({"Dockerfile": "FROM scratch\n"}))
    image_id = backend.build(iter([context]), labels={"org.example": "yes"}, limits=LIMITS, log=lines.append,
                             plan=plan_for("registry.example.com:5000/acme/app:sha", target="prod",
                                           build_args=(("VERSION", "arg-value-7"),), cache_from=("registry.example.com:5000/acme/app:main",)))
    out = tmp_path / "out"
    argv, env = (out / "argv").read_text(), (out / "env").read_text()
    assert image_id == "sha256:f00d" and lines == ["#1 DONE 0.1s\n"]
    assert (out / "context").read_bytes() == context
    assert "npm-s3cret" not in argv and "arg-value-7" not in argv
    assert "id=npm,env=PUSHBUILD_SECRET_0" in argv and "PUSHBUILD_SECRET_0=npm-s3cret" in env
    assert "--build-arg\nVERSION\n" in argv and "VERSION=arg-value-7" in env
    for expected in ("--label\norg.example=yes\n", "--target\nprod\n", "--network\nnone\n", "--file\nDockerfile\n",
                     "--cache-from\nregistry.example.com:5000/acme/app:main\n", "BUILDKIT_INLINE_CACHE=1\n"):
        assert expected in argv
    assert "DOCKER_BUILDKIT=1" in env and "DOCKER_HOST=tcp://engine:2375" in env
    assert "ACME_DEPLOY_TOKEN" not in env, "the CLI inherits none of the worker's own secrets"
    assert json.loads((out / "config.json").read_text()) == {"auths": {"registry.example.com:5000": {"auth": "dTpw"}}}


def test_the_reason_buildkit_gives_is_the_error_and_an_engine_gone_is_unreachable(tmp_path):
    """The line saying why it failed becomes the message; the CLI losing the engine marks it unreachable."""
    failing = BuildKitBackend(cli=fake_cli(tmp_path / "failing", "cat > /dev/null\necho '#5 ERROR: process did not complete'\n"
                                                     "echo 'ERROR: failed to solve: exit code: 2'\nexit 1"),
                              host=None, network=None, auth=None, secrets={})
    with pytest.raises(EngineError, match="^failed to solve: exit code: 2$") as raised:
        failing.build(tar_context({}), plan=plan_for("r/app:sha"), labels={}, limits=LIMITS, log=lambda _: None)
    assert not raised.value.unreachable
    gone = BuildKitBackend(cli=fake_cli(tmp_path / "gone", "cat > /dev/null\necho 'ERROR: Cannot connect to the Docker daemon "
                                                          "at unix:///var/run/docker.sock. Is the docker daemon running?'\nexit 1"),
                           host=None, network=None, auth=None, secrets={})
    with pytest.raises(EngineError) as raised:
        gone.build(tar_context({}), plan=plan_for("r/app:sha"), labels={}, limits=LIMITS, log=lambda _: None)
    assert raised.value.unreachable


def test_a_log_that_refuses_a_line_kills_the_cli_with_everything_it_started(tmp_path):
    """Cancelling: the log raises on the next line, and the CLI's whole process group is killed."""
    pidfile = tmp_path / "child.pid"
    backend = BuildKitBackend(cli=fake_cli(tmp_path, f"sleep 60 & echo $! > {pidfile}\necho started\nsleep 61"),
                              host=None, network=None, auth=None, secrets={})

    def log(text):
        raise Cancelled("the build was cancelled")

    started = time.monotonic()
    with pytest.raises(Cancelled):
        backend.build(iter([]), plan=plan_for("r/app:sha"), labels={}, limits=LIMITS, log=log)
    assert time.monotonic() - started < 30
    _gone(int(pidfile.read_text()))


def _gone(pid: int) -> None:
    wait_for(lambda: not Path(f"/proc/{pid}").exists() or Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z",
             timeout_s=10, what="the CLI's child to be killed")


@pytest.mark.e2e
def test_the_buildkit_cli_is_stopped_with_everything_it_started(tmp_path):
    """At the deadline the CLI's whole session is killed: a child holding its output (a CLI plugin) cannot keep the build going."""
    pidfile = tmp_path / "child.pid"
    started = time.monotonic()
    with pytest.raises(EngineError, match="the build took longer than 2s and was stopped"):
        _run(["sh", "-c", f"sleep 60 & echo $! > {pidfile}; sleep 61"], env={"PATH": "/usr/bin:/bin"},
             context=iter([]), log=lambda _: None, timeout_s=2)
    assert time.monotonic() - started < 30
    _gone(int(pidfile.read_text()))


@pytest.mark.e2e
def test_a_stalled_context_cannot_keep_a_buildkit_build_past_its_deadline(docker_host, docker_cli):
    """A context source that stalls: the BuildKit build still ends within seconds of build_timeout_s, failing with the timeout."""
    resume = threading.Event()

    def stalled():
        yield tar_header("stalled.bin", 65536)
        resume.wait(90)
        yield b"\0" * 65536

    engine = Engine.connect(EngineConfig(base_url=docker_host, docker_cli=docker_cli))
    backend = BuildKitBackend.from_engine(engine, auth=None, secrets={})
    started = time.monotonic()
    try:
        with pytest.raises(EngineError, match="the build took longer than 5s and was stopped"):
            backend.build(stalled(), plan=plan_for("pushbuild-test/deadline:stalled"), labels={}, log=lambda _: None,
                          limits=BuildLimits(timeout_s=5))
        assert time.monotonic() - started < 30
    finally:
        resume.set()

