"""The worker's recovery: lost builds are re-queued, hopeless ones failed, held ones left alone."""

import json
import sqlite3
import subprocess
import sys
import threading

import pytest

from webhook.events import PushEvent
from webhook.services import Services
from webhook.store import BuildState
from webhook.worker import BuildWorker, Dispatcher, make_celery

from .helpers.configs import repo_table
from .helpers.service import write_toml
from .helpers.support import queued

SHA = "6113728f27ae82c7b1a177c8d03f9e96e0adf246"


@pytest.fixture
def config(make_config):
    return make_config(repo_table("acme/app"), server={"lease_s": 30, "heartbeat_s": 5, "max_attempts": 2})


@pytest.fixture
def services(config):
    return Services(config)


@pytest.fixture
def worker(services, config):
    return BuildWorker(services, Dispatcher(make_celery(config), services.store), owner="this-worker")


def record(services, delivery="d"):
    [build], _ = services.store.record([PushEvent(forge="github", repo="acme/app", ref="refs/heads/main", sha=SHA,
                                               before="0" * 40, pusher="p", delivery_id=delivery)])
    return build


def test_a_build_recorded_but_never_queued_is_queued_by_the_reconciler(worker, services, config):
    """If the web process died between recording and queueing, the reconciler sends the build."""
    build = record(services)
    assert queued(config) == []
    worker.reconcile()
    assert queued(config) == [build.id]
    assert services.store.get(build.id).state is BuildState.QUEUED


def test_a_build_whose_worker_died_too_often_is_failed_visibly(worker, services, config):
    """After max_attempts lost runs the build fails with the reason instead of looping forever."""
    build = record(services)
    for owner in ("dead-1", "dead-2"):
        services.store.claim(build.id, owner=owner, lease_s=-1)  # a lease that has already expired
    worker.reconcile()
    ended = services.store.get(build.id)
    assert ended.state is BuildState.FAILED and "interrupted 2 times" in ended.error
    assert queued(config) == []


def test_a_build_held_by_a_live_worker_is_skipped(worker, services):
    """A duplicate delivery of a running build does not start a second run."""
    build = record(services)
    services.store.claim(build.id, owner="other-worker", lease_s=300)
    worker.run_build(build.id)  # would fail loudly if it tried to build: no engine is configured
    held = services.store.get(build.id)
    assert (held.state, held.attempts) == (BuildState.RUNNING, 1)


def test_a_claimed_build_beyond_its_attempts_is_failed_not_run(worker, services):
    """A redelivered message for a build already tried max_attempts times fails it."""
    build = record(services)
    for owner in ("dead-1", "dead-2"):
        services.store.claim(build.id, owner=owner, lease_s=-1)
    worker.run_build(build.id)
    assert services.store.get(build.id).state is BuildState.FAILED


def test_retry_queues_a_finished_build_again(services, config, tmp_path):
    """`pushbuild retry <build>` puts a failed build back in the queue from the start."""
    from click.testing import CliRunner

    from webhook.cli import main

    from .helpers.service import write_toml

    build = record(services)
    services.store.claim(build.id, owner="w", lease_s=60)
    services.store.finish(build.id, BuildState.FAILED, owner="w", error="registry down")
    path = write_toml(tmp_path / "pb.toml", {"server": {"data_dir": str(config.server.data_dir)},
                                             "repos": [repo_table("acme/app")]})
    result = CliRunner().invoke(main, ["retry", "--config", str(path), str(build.id)], env={"GITHUB_SECRET": "x"})
    assert result.exit_code == 0, result.output
    again = services.store.get(build.id)
    assert (again.state, again.error, again.attempts) == (BuildState.QUEUED, None, 0)
    assert queued(config) == [build.id]
    running = CliRunner().invoke(main, ["retry", "--config", str(path), str(build.id)], env={"GITHUB_SECRET": "x"})
    assert running.exit_code == 1 and "has not finished yet" in running.output


def test_a_build_over_its_repositorys_limit_is_offered_again_later(make_config):
    """With max_concurrent_builds = 1 and one build running, the next waits in the queue instead of starting."""
    config = make_config(repo_table("acme/app", max_concurrent_builds=1))
    services = Services(config)
    worker = BuildWorker(services, Dispatcher(make_celery(config), services.store), owner="this-worker")
    running, waiting = record(services, "one"), record(services, "two")
    services.store.claim(running.id, owner="other-worker", lease_s=300)
    worker.run_build(waiting.id)
    assert services.store.get(waiting.id).state is BuildState.QUEUED
    assert queued(config) == [waiting.id]


def test_processes_starting_together_on_the_sqlite_broker_create_its_queue_once(tmp_path):
    """pushbuild serve starts web and worker at once: each declares the queue, and no start fails (four tries of six)."""
    code = ("import sys; from webhook.config import parse_config; from webhook.worker import declare_queues, make_celery; "
            "declare_queues(make_celery(parse_config({'server': {'data_dir': sys.argv[1]}}, {})))")
    for attempt in range(4):
        data_dir = tmp_path / str(attempt)
        data_dir.mkdir()
        starts = [subprocess.Popen([sys.executable, "-c", code, str(data_dir)], stderr=subprocess.PIPE, text=True)
                  for _ in range(6)]
        failed = [p.stderr.read()[-300:] for p in starts if p.wait() != 0]
        assert failed == []
        with sqlite3.connect(data_dir / "broker.sqlite") as db:
            assert db.execute("select name from kombu_queue").fetchall() == [("celery",)]


def test_a_worker_starts_with_one_ready_line_and_no_banner_or_warnings_to_interpret(tmp_path):
    """What a newcomer reads when `pushbuild worker` (or serve) starts: no Celery banner, no root warning."""
    config = write_toml(tmp_path / "pushbuild.toml", {"server": {"data_dir": str(tmp_path / "data"),
                                                                 "mirror_dir": str(tmp_path / "mirrors")}})
    worker = subprocess.Popen([sys.executable, "-m", "webhook", "worker", "--config", str(config)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines, watchdog = [], threading.Timer(60, worker.kill)  # a worker that never gets ready ends the read
    watchdog.start()
    try:
        for line in worker.stdout:
            lines.append(line)
            if " ready." in line or len(lines) > 200:
                break
    finally:
        watchdog.cancel()
        worker.terminate()
        worker.wait(timeout=30)
    output = "".join(lines)
    assert " ready." in output, output
    assert "absolutely not recommended" not in output and "SecurityWarning" not in output, output
    assert "[tasks]" not in output and "-------------- [queues]" not in output, output


def test_with_log_format_json_a_worker_writes_json_lines(tmp_path):
    """For a log collector: every line a worker writes on start-up is one JSON object."""
    config = write_toml(tmp_path / "pushbuild.toml", {"server": {"data_dir": str(tmp_path / "data"),
                                                                 "mirror_dir": str(tmp_path / "mirrors"),
                                                                 "log_format": "json"}})
    worker = subprocess.Popen([sys.executable, "-m", "webhook", "worker", "--config", str(config)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines, watchdog = [], threading.Timer(60, worker.kill)
    watchdog.start()
    try:
        for line in worker.stdout:
            lines.append(json.loads(line))
            if lines[-1]["message"].endswith(" ready."):
                break
    finally:
        watchdog.cancel()
        worker.terminate()
        worker.wait(timeout=30)
    assert lines and lines[-1]["logger"] == "celery.apps.worker" and all(line["time"].endswith("Z") for line in lines)
