"""The BuildKit builder: the same in-memory context, streamed to the docker CLI's BuildKit build.

docker-py cannot drive BuildKit (docker/docker-py#2230), so this backend runs
``docker build -`` with ``DOCKER_BUILDKIT=1`` and the tar on stdin. That gives
``RUN --mount=type=cache``, build secrets and BuildKit's cache. Secret values and build
argument values travel in the CLI's environment, never on its command line (the process
list) or in the log.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from ...errors import EngineError
from ...logs import Log
from ...refs import registry_host
from .base import BuildLimits, took_too_long, within_deadline

if TYPE_CHECKING:
    from ...rules import BuildPlan
    from ..engine import Engine

#: Lines kept to explain a failure; BuildKit prints the cause last.
_TAIL_LINES = 20
#: What the CLI inherits from our environment; nothing else (no tokens of ours) reaches it.
_INHERITED = ("PATH", "HOME", "LANG", "TMPDIR", "SSL_CERT_FILE", "SSL_CERT_DIR")
#: Once the CLI is gone, how long the thread feeding it the context may take to notice. A context
#: source stalled longer is not waited for: it ends with the build's archive, whose git is killed.
_FEEDER_GRACE_S = 5.0


class BuildKitBackend:
    """Builds with BuildKit through the docker CLI; only the build's time is limited (BuildKit takes no step limits)."""

    #: RUN --mount=type=secret reads them; they reach the CLI through its environment.
    takes_secrets = True

    def __init__(self, *, cli: str, host: str | None, network: str | None, auth: Mapping[str, str] | None,
                 secrets: Mapping[str, str]) -> None:
        self.cli = cli
        self.host = host
        self.network = network
        self.auth = auth
        self.secrets = secrets

    @classmethod
    def from_engine(cls, engine: Engine, *, auth: Mapping[str, str] | None,
                    secrets: Mapping[str, str]) -> BuildKitBackend:
        """Drive ``engine`` with its configured CLI (``[engine] docker_cli``), RUN steps on its build network."""
        return cls(cli=engine.config.docker_cli, host=engine.host, network=engine.build_network, auth=auth,
                   secrets=secrets)

    def build(self, context: Iterable[bytes], *, plan: BuildPlan, labels: Mapping[str, str], limits: BuildLimits,
              log: Log) -> str:
        """Build ``context`` with BuildKit as ``plan`` says, tag it ``plan.tags[0]``, and return the image id."""
        tag = plan.tags[0]
        with tempfile.TemporaryDirectory(prefix="pushbuild-") as tmp:
            workdir = Path(tmp)
            _cli_config(workdir, self.auth, tag)
            env = {name: os.environ[name] for name in _INHERITED if name in os.environ}
            env.update(DOCKER_BUILDKIT="1", DOCKER_CONFIG=str(workdir), BUILDKIT_PROGRESS="plain")
            if self.host:
                env["DOCKER_HOST"] = self.host
            args = [self.cli, "build", "--progress=plain", "--iidfile", str(workdir / "iid"),
                    "--file", plan.dockerfile, "--tag", tag]
            for name, value in labels.items():
                args += ["--label", f"{name}={value}"]
            for name, value in plan.build_args:
                env[name] = value
                args += ["--build-arg", name]  # the CLI reads the value from its environment
            for number, (secret_id, value) in enumerate(sorted(self.secrets.items())):
                env[f"PUSHBUILD_SECRET_{number}"] = value
                args += ["--secret", f"id={secret_id},env=PUSHBUILD_SECRET_{number}"]
            for option, value in (("--target", plan.target), ("--platform", plan.platform), ("--network", self.network)):
                if value:
                    args += [option, value]
            for image in plan.cache_from:
                args += ["--cache-from", image]
            # Pushed images carry their cache metadata, so any of them can serve as a cache_from later.
            args += ["--build-arg", "BUILDKIT_INLINE_CACHE=1"]
            _run(args + ["-"], env=env, context=context, log=log, timeout_s=limits.timeout_s)
            return (workdir / "iid").read_text().strip()


def _cli_config(directory: Path, auth: Mapping[str, str] | None, image: str) -> None:
    """Write a private docker CLI config holding only the registry credentials (mode 0600)."""
    auths = {}
    if auth:
        token = base64.b64encode(f"{auth['username']}:{auth['password']}".encode()).decode()
        auths[registry_host(image)] = {"auth": token}
    path = directory / "config.json"
    path.touch(mode=0o600)
    path.write_text(json.dumps({"auths": auths}))


def _run(args: list[str], *, env: Mapping[str, str], context: Iterable[bytes], log: Log, timeout_s: float) -> None:
    """Run the CLI with ``context`` on its stdin, streaming its output to ``log``; raise on failure.

    Past ``timeout_s`` the CLI is killed with everything it started (its plugins hold its
    output open); the engine cancels a build whose client is gone. The thread feeding the
    context stops at the deadline too, and a stalled one is not waited for.
    """
    deadline = time.monotonic() + timeout_s
    try:
        process = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, env=dict(env), start_new_session=True)
    except OSError as exc:
        raise EngineError(f"cannot run the docker CLI {args[0]!r}: {exc.strerror}") from exc
    feeding_failed: list[BaseException] = []

    def kill() -> None:
        try:
            os.killpg(process.pid, signal.SIGKILL)  # its own session: the CLI and its plugins
        except ProcessLookupError:
            pass

    def feed() -> None:
        try:
            for chunk in within_deadline(context, deadline=deadline, timeout_s=timeout_s):
                process.stdin.write(chunk)
        except BrokenPipeError:
            pass  # the CLI stopped reading; its exit status says why
        except BaseException as exc:  # an unsafe context, or the deadline: stop the build, report it below
            feeding_failed.append(exc)
            kill()
        finally:
            try:
                process.stdin.close()
            except BrokenPipeError:
                pass

    feeder = threading.Thread(target=feed, name="buildkit-context", daemon=True)
    feeder.start()
    timed_out = threading.Event()

    def stop() -> None:
        timed_out.set()
        kill()

    watchdog = threading.Timer(timeout_s, stop)
    watchdog.daemon = True
    watchdog.start()
    tail: list[str] = []
    try:
        for raw in process.stdout:
            line = raw.decode("utf-8", "replace")
            log(line)
            if line.strip():
                tail = (tail + [line.strip()])[-_TAIL_LINES:]
    except BaseException:  # the log refused a line (the build was cancelled): the CLI goes too
        watchdog.cancel()
        kill()
        process.wait()
        raise
    status = process.wait()
    watchdog.cancel()
    feeder.join(timeout=_FEEDER_GRACE_S)
    if timed_out.is_set():
        raise took_too_long(timeout_s)
    if feeding_failed:
        raise feeding_failed[0]
    if status != 0:
        reason = _failure(tail) or f"the docker CLI exited with status {status}"
        raise EngineError(reason, unreachable=any(sign in reason.lower() for sign in _ENGINE_GONE))


#: How the CLI says the engine went away, rather than the build failing.
_ENGINE_GONE = ("cannot connect to the docker daemon", "connection refused", "connection reset",
                "unexpected eof", "error reading from server: eof", "is the docker daemon running")


def _failure(tail: list[str]) -> str | None:
    """Pick the line that says why BuildKit failed."""
    for line in reversed(tail):
        lowered = line.lower()
        if lowered.startswith(("error:", "error ")) or "failed to solve" in lowered or "executor failed" in lowered:
            return line.removeprefix("ERROR: ").removeprefix("error: ")
    return tail[-1] if tail else None
