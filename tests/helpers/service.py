"""Running pushbuild for real in tests: gunicorn and a worker as separate processes."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests

from .support import ADMIN_TOKEN, API_HEADERS, wait_for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{toml_value(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_toml(path: Path, data: dict[str, Any]) -> Path:
    """Write a configuration file as a user would (only the shapes pushbuild's config uses)."""
    lines = []
    for section, table in data.items():
        tables = table if isinstance(table, list) else [table]
        for entry in tables:
            lines.append(f"[[{section}]]" if isinstance(table, list) else f"[{section}]")
            lines += [f"{key} = {toml_value(value)}" for key, value in entry.items()]
            lines.append("")
    path.write_text("\n".join(lines))
    return path


class Process:
    """A child process started by a test and stopped by its pid."""

    def __init__(self, args: list[str], *, env: dict[str, str], log: Path) -> None:
        self.log = log
        self._out = open(log, "ab")
        # Its own process group, so a test can kill a process and its children at once.
        self.popen = subprocess.Popen(args, env=env, stdout=self._out, stderr=subprocess.STDOUT, start_new_session=True)

    def kill(self) -> None:
        """SIGKILL the process and its children: none gets a chance to clean up."""
        self._signal_group(signal.SIGKILL)
        self.popen.wait()

    def stop(self) -> None:
        """SIGTERM the process and its children; SIGKILL what is left after 15 s. Nothing outlives the test."""
        self._signal_group(signal.SIGTERM)
        try:
            self.popen.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass
        self._signal_group(signal.SIGKILL)  # workers a killed master left behind, if any
        self.popen.wait()
        self._out.close()

    def _signal_group(self, signum: int) -> None:
        try:
            os.killpg(self.popen.pid, signum)
        except ProcessLookupError:
            pass


class Pushbuild:
    """pushbuild's web app under gunicorn and its worker, each a real process."""

    def __init__(self, tmp_path: Path, config: dict[str, Any], env: dict[str, str]) -> None:
        self.tmp_path = tmp_path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config.setdefault("server", {}).setdefault("public_url", self.url)
        self.config_path = write_toml(tmp_path / "pushbuild.toml", config)
        self.env = {**os.environ, **env, "PUSHBUILD_CONFIG": str(self.config_path), "PUSHBUILD_ADMIN_TOKEN": ADMIN_TOKEN}
        self.web: Process | None = None
        self.workers: list[Process] = []

    def start_web(self) -> None:
        self.web = Process([sys.executable, "-m", "gunicorn", "--config", "python:webhook.gunicorn_conf",
                            "--bind", f"127.0.0.1:{self.port}", "webhook:create_app()"], env=self.env, log=self.tmp_path / "web.log")
        wait_for(lambda: self._up(), timeout_s=30, what="gunicorn to answer")

    def start_worker(self) -> Process:
        worker = Process([sys.executable, "-m", "webhook", "worker"], env=self.env,
                         log=self.tmp_path / f"worker{len(self.workers)}.log")
        self.workers.append(worker)
        return worker

    def _up(self) -> bool:
        if self.web.popen.poll() is not None:
            raise AssertionError(f"gunicorn exited with {self.web.popen.returncode}:\n{self.web.log.read_text()[-3000:]}")
        try:
            return requests.get(f"{self.url}/healthz", timeout=2).status_code == 200
        except requests.ConnectionError:
            return False

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> requests.Response:
        return requests.post(f"{self.url}{path}", data=body, headers=headers, timeout=10)

    def build(self, build_id: int) -> dict[str, Any]:
        return requests.get(f"{self.url}/api/builds/{build_id}", headers=API_HEADERS, timeout=10).json()

    def wait_finished(self, build_id: int, timeout_s: float = 180) -> dict[str, Any]:
        return wait_for(lambda: (b := self.build(build_id))["state"] in ("succeeded", "failed") and b,
                        timeout_s=timeout_s, what=f"build {build_id} to finish")

    def stop(self) -> None:
        for process in [*self.workers, *([self.web] if self.web else [])]:
            process.stop()

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.tmp_path.glob("*.log")))


@contextlib.contextmanager
def serving(tmp_path: Path, config: dict[str, Any], env: dict[str, str]) -> Iterator[Pushbuild]:
    """pushbuild's web process and one worker, running until the block ends; their logs are printed then."""
    service = Pushbuild(tmp_path, config, env)
    try:
        service.start_web()
        service.start_worker()
        yield service
    finally:
        service.stop()
        print(service.logs())
