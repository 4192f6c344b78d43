"""Statuses and redeploy hooks: recorded, sent to local peers, retried, ordered, redelivered."""

import json
import os
import random
import signal
import sys
import threading
import time

import pytest
from click.testing import CliRunner
from standardwebhooks.webhooks import Webhook

from webhook.cli import main
from webhook.events import PushEvent
from webhook.notify.deliveries import DeliveryState, DeliveryStore
from webhook.notify.notifier import Notifier
from webhook.redact import Redactor
from webhook.store import BuildState, BuildStore, create_db_engine

from .helpers.configs import Clock, repo_table
from .helpers.receivers import Receiver
from .helpers.support import signed_in, wait_for

SHA = "6113728f27ae82c7b1a177c8d03f9e96e0adf246"
HOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
STATUS_TOKEN = "ghp_status_token_123"


@pytest.fixture
def forge_api():
    receiver = Receiver()
    yield receiver
    receiver.stop()


@pytest.fixture
def clock():
    """A hand-moved clock starting now (receivers check signature timestamps against real time)."""
    clock = Clock()
    clock.now = time.time()
    return clock


@pytest.fixture
def world(make_config, forge_api, hook_receiver, clock, tmp_path):
    """A config with a status API and a standard hook, and the stores and notifier over it."""

    def make(forge="github", hooks=None, **server):
        config = make_config(
            repo_table("acme/app", forge=forge, status={"token_env": "STATUS_TOKEN", "api_url": forge_api.url},
                       hooks=hooks if hooks is not None else [{"name": "prod", "url": hook_receiver.url + "/deploy",
                                                               "secret_env": "HOOK_SECRET"}]),
            env={"STATUS_TOKEN": STATUS_TOKEN, "HOOK_SECRET": HOOK_SECRET},
            server={"delivery_retry_s": 10, "delivery_attempts": 3, **server},
        )
        db = create_db_engine(config.server.state_url)
        builds, deliveries = BuildStore(db, clock=clock), DeliveryStore(db, clock=clock)
        (config.server.data_dir).mkdir(parents=True, exist_ok=True)
        builds.create_schema()
        notifier = Notifier(config=config, builds=builds, deliveries=deliveries, redact=Redactor(s.reveal() for s in config.secrets()),
                            clock=clock, rng=random.Random(7))
        return config, builds, deliveries, notifier

    return make


def finished_build(builds, *, forge="github", sha=SHA, ref="refs/heads/main", state=BuildState.SUCCEEDED):
    [build], _ = builds.record([PushEvent(forge=forge, repo="acme/app", ref=ref, sha=sha, before="0" * 40,
                                          pusher="p", delivery_id=None)])
    builds.claim(build.id, owner="w", lease_s=60)
    tags = (f"127.0.0.1:5000/acme/app:{sha}", "127.0.0.1:5000/acme/app:main")
    builds.finish(build.id, state, owner="w", tags=tags, digest="sha256:" + "d" * 64 if state is BuildState.SUCCEEDED else None)
    return builds.get(build.id)


def finish(notifier, build):
    notifier.build_finished(build, state=build.state, tags=build.tags, digest=build.digest, error=build.error)


def test_a_build_reports_pending_then_success_to_the_forge(world, forge_api, clock):
    """GitHub gets pending when the build starts and success with a link when the image is pushed."""
    config, builds, deliveries, notifier = world()
    build = finished_build(builds)
    notifier.build_started(build)
    notifier.deliver_due()
    finish(notifier, build)
    notifier.deliver_due()
    assert [(r.method, r.path) for r in forge_api.received] == [("POST", f"/repos/acme/app/statuses/{SHA}")] * 2
    assert [r.json()["state"] for r in forge_api.received] == ["pending", "success"]
    last = forge_api.received[-1]
    assert last.headers["authorization"] == f"Bearer {STATUS_TOKEN}"
    assert last.json()["target_url"].endswith(f"/api/builds/{build.id}") and last.json()["context"] == "pushbuild"
    assert {d.state for d in deliveries.of_build(build.id) if d.kind == "status"} == {DeliveryState.DELIVERED}


def test_a_pending_status_not_yet_sent_is_superseded_by_the_final_one(world, forge_api):
    """The forge never sees pending after success: the stale pending is dropped."""
    config, builds, deliveries, notifier = world()
    build = finished_build(builds)
    notifier.build_started(build)
    finish(notifier, build)
    notifier.deliver_due()
    assert [r.json()["state"] for r in forge_api.received] == ["success"]
    assert [d.state for d in deliveries.of_build(build.id) if d.kind == "status"] == [
        DeliveryState.SUPERSEDED, DeliveryState.DELIVERED]


@pytest.mark.parametrize("forge, path, auth", [
    ("gitlab", f"/projects/acme%2Fapp/statuses/{SHA}", ("private-token", STATUS_TOKEN)),
    ("gitea", f"/repos/acme/app/statuses/{SHA}", ("authorization", f"token {STATUS_TOKEN}")),
    ("bitbucket", f"/repositories/acme/app/commit/{SHA}/statuses/build", ("authorization", f"Bearer {STATUS_TOKEN}")),
])
def test_each_forge_gets_its_documented_status_call(world, forge_api, forge, path, auth):
    """GitLab, Gitea and Bitbucket receive their own path and auth header."""
    config, builds, deliveries, notifier = world(forge=forge)
    build = finished_build(builds, forge=forge, state=BuildState.FAILED)
    finish(notifier, build)
    notifier.deliver_due()
    [received] = forge_api.received
    assert (received.path, received.headers[auth[0]]) == (path, auth[1])


def test_server_errors_are_retried_with_backoff_until_delivered(world, forge_api, clock):
    """503 then 201: the second attempt happens only once the backoff has passed."""
    forge_api.answers = [503, 201]
    config, builds, deliveries, notifier = world(hooks=[])
    build = finished_build(builds)
    finish(notifier, build)
    notifier.deliver_due()
    [status] = deliveries.of_build(build.id)
    assert (status.state, status.attempts) == (DeliveryState.PENDING, 1)
    assert 5 <= status.next_attempt_at - clock.now <= 10, "half to all of the 10 s base"
    notifier.deliver_due()
    assert len(forge_api.received) == 1, "not due yet"
    clock.now += 10
    notifier.deliver_due()
    [status] = deliveries.of_build(build.id)
    assert (status.state, [a.status_code for a in deliveries.attempts(status.id)]) == (DeliveryState.DELIVERED, [503, 201])


def test_client_errors_fail_at_once_and_attempts_run_out(world, forge_api, hook_receiver, clock):
    """A 401 is final after one try; a hook that keeps failing stops after delivery_attempts."""
    forge_api.answers = [401]
    hook_receiver.answers = [500]
    config, builds, deliveries, notifier = world()
    build = finished_build(builds)
    finish(notifier, build)
    for _ in range(5):
        notifier.deliver_due()
        clock.now += 1000
    status, hook = deliveries.of_build(build.id)
    assert (status.state, status.attempts, status.last_error) == (DeliveryState.FAILED, 1, "answered 401")
    assert (hook.state, hook.attempts) == (DeliveryState.FAILED, 3)
    assert len(hook_receiver.received) == 3


def test_an_unreachable_peer_is_retried(world, forge_api):
    """A refused connection is a temporary failure, recorded without any secret."""
    config, builds, deliveries, notifier = world(hooks=[])
    forge_api.stop()
    build = finished_build(builds)
    finish(notifier, build)
    notifier.deliver_due()
    [status] = deliveries.of_build(build.id)
    assert status.state is DeliveryState.PENDING and "ConnectionError" in status.last_error
    assert STATUS_TOKEN not in status.last_error


def test_the_redeploy_hook_verifies_with_the_reference_implementation(world, hook_receiver):
    """The hook receiver checks the Standard Webhooks signature with the `standardwebhooks` package."""
    config, builds, deliveries, notifier = world()
    build = finished_build(builds)
    finish(notifier, build)
    notifier.deliver_due()
    [received] = hook_receiver.received
    data = Webhook(HOOK_SECRET).verify(received.body, received.headers)["data"]
    assert data["digest"] == "127.0.0.1:5000/acme/app@sha256:" + "d" * 64
    assert (data["sha"], data["ref"], data["build_id"]) == (SHA, "refs/heads/main", build.id)
    assert received.headers["webhook-id"] == f"pushbuild_{deliveries.of_build(build.id)[1].id}"


def test_failed_builds_fire_no_hooks(world, hook_receiver):
    """Only a pushed image is announced."""
    config, builds, deliveries, notifier = world()
    finish(notifier, finished_build(builds, state=BuildState.FAILED))
    notifier.deliver_due()
    assert hook_receiver.received == []


def test_hooks_filter_by_branch(world, hook_receiver):
    """A hook limited to main hears nothing of other branches."""
    config, builds, deliveries, notifier = world(hooks=[{"url": hook_receiver.url, "secret_env": "HOOK_SECRET",
                                                         "branches": ["main"]}])
    finish(notifier, finished_build(builds, ref="refs/heads/dev"))
    notifier.deliver_due()
    assert hook_receiver.received == []


def test_an_older_commits_hook_never_fires_after_a_newer_ones(world, hook_receiver, clock):
    """Build 1's hook is still retrying when build 2's is delivered: build 1's is then dropped."""
    hook_receiver.answers = [503, 200]
    config, builds, deliveries, notifier = world()
    older = finished_build(builds, sha="1" * 40)
    finish(notifier, older)
    notifier.deliver_due()  # older: 503, will retry
    newer = finished_build(builds, sha="2" * 40)
    finish(notifier, newer)
    notifier.deliver_due()  # newer: 200
    clock.now += 1000
    notifier.deliver_due()  # older's retry is due, but superseded
    shas = [json.loads(r.body)["data"]["sha"] for r in hook_receiver.received]
    assert shas == ["1" * 40, "2" * 40]
    older_hook = [d for d in deliveries.of_build(older.id) if d.kind == "hook"][0]
    assert older_hook.state is DeliveryState.SUPERSEDED


def test_command_hooks_run_argv_with_the_message_on_stdin(world, tmp_path):
    """A command hook gets its arguments filled and the JSON message on stdin; no shell is involved."""
    out = tmp_path / "called.json"
    script = ("import json,sys; json.dump({'argv': sys.argv[1:], 'stdin': json.load(sys.stdin)}, "
              f"open({str(out)!r}, 'w'))")
    config, builds, deliveries, notifier = world(hooks=[{"kind": "command", "argv": [sys.executable, "-c", script, "{digest}", "{tag}"]}])
    build = finished_build(builds)
    finish(notifier, build)
    notifier.deliver_due()
    called = json.loads(out.read_text())
    assert called["argv"] == ["127.0.0.1:5000/acme/app@sha256:" + "d" * 64, "main"]
    assert called["stdin"]["data"]["build_id"] == build.id


def test_keel_hooks_post_the_native_payload(world, hook_receiver):
    """Keel hears the image name and tag to roll out."""
    config, builds, deliveries, notifier = world(hooks=[{"kind": "keel", "url": hook_receiver.url + "/v1/webhooks/native"}])
    finish(notifier, finished_build(builds))
    notifier.deliver_due()
    [received] = hook_receiver.received
    assert (received.path, received.json()) == ("/v1/webhooks/native", {"name": "127.0.0.1:5000/acme/app", "tag": "main"})


def test_deliveries_and_attempts_are_visible_in_the_api(world, forge_api, hook_receiver):
    """GET /api/builds/<id>/deliveries lists each delivery with its attempts, and no secret."""
    from webhook import create_app

    forge_api.answers = [500, 201]
    config, builds, deliveries, notifier = world()
    build = finished_build(builds)
    finish(notifier, build)
    notifier.deliver_due()
    body = signed_in(create_app(config)).get(f"/api/builds/{build.id}/deliveries")
    listed = body.json["deliveries"]
    assert [(d["kind"], d["target"], d["state"]) for d in listed] == [("status", "pushbuild", "pending"), ("hook", "prod", "delivered")]
    assert listed[0]["attempts"][0]["status_code"] == 500 and listed[0]["next_attempt_at"]
    assert STATUS_TOKEN not in body.text and HOOK_SECRET not in body.text


def test_redeliver_sends_again(world, hook_receiver, tmp_path):
    """`pushbuild redeliver <id>` resends a delivered hook and says how it went."""
    config, builds, deliveries, notifier = world()
    build = finished_build(builds)
    finish(notifier, build)
    notifier.deliver_due()
    hook = [d for d in deliveries.of_build(build.id) if d.kind == "hook"][0]
    config_file = tmp_path / "pb.toml"
    from .helpers.service import write_toml

    write_toml(config_file, {"server": {"data_dir": str(config.server.data_dir)},
                             "repos": [{"name": "acme/app", "forge": "github", "secret_env": "S",
                                        "clone_url": "https://h/a.git", "image": "127.0.0.1:5000/acme/app",
                                        "hooks": [{"name": "prod", "url": hook_receiver.url + "/deploy", "secret_env": "HOOK_SECRET"}]}]})
    result = CliRunner().invoke(main, ["redeliver", "--config", str(config_file), str(hook.id)],
                                env={"S": "x", "HOOK_SECRET": HOOK_SECRET})
    assert result.exit_code == 0, result.output
    assert "delivered, answered 200" in result.output
    assert len(hook_receiver.received) == 2
    assert hook_receiver.received[0].headers["webhook-id"] == hook_receiver.received[1].headers["webhook-id"]


def test_verify_hook_checks_a_received_message(world, hook_receiver, tmp_path):
    """`pushbuild verify-hook` (shared code) accepts a real delivery and refuses a tampered one."""
    config, builds, deliveries, notifier = world()
    finish(notifier, finished_build(builds))
    notifier.deliver_due()
    [received] = hook_receiver.received
    args = ["verify-hook", "--id", received.headers["webhook-id"], "--timestamp", received.headers["webhook-timestamp"],
            "--signature", received.headers["webhook-signature"], "--secret-env", "HOOK_SECRET"]
    ok = CliRunner().invoke(main, args, input=received.body, env={"HOOK_SECRET": HOOK_SECRET})
    bad = CliRunner().invoke(main, args, input=received.body + b" ", env={"HOOK_SECRET": HOOK_SECRET})
    assert (ok.exit_code, bad.exit_code) == (0, 1)


def test_a_hook_that_times_out_is_retried(world, hook_receiver):
    """A receiver slower than the hook's timeout counts as a temporary failure."""
    hook_receiver.delay_s = 1.0
    config, builds, deliveries, notifier = world(hooks=[{"url": hook_receiver.url, "secret_env": "HOOK_SECRET", "timeout_s": 0.2}])
    build = finished_build(builds)
    finish(notifier, build)
    notifier.deliver_due()
    hook = [d for d in deliveries.of_build(build.id) if d.kind == "hook"][0]
    assert hook.state is DeliveryState.PENDING and "Timeout" in hook.last_error


def test_bitbucket_data_center_gets_its_build_status_api(world, forge_api, make_config):
    """`api = "bitbucket-datacenter"` posts to /rest/build-status/1.0/commits/<sha>."""
    config, builds, deliveries, notifier = world(forge="bitbucket", hooks=[])
    dc = make_config(repo_table("acme/app", forge="bitbucket",
                                status={"token_env": "STATUS_TOKEN", "api_url": forge_api.url, "api": "bitbucket-datacenter"}),
                     env={"STATUS_TOKEN": STATUS_TOKEN})
    notifier.config = dc
    finish(notifier, finished_build(builds, forge="bitbucket"))
    notifier.deliver_due()
    [received] = forge_api.received
    assert (received.path, received.json()["state"]) == (f"/rest/build-status/1.0/commits/{SHA}", "SUCCESSFUL")


def _alive(pid: int) -> bool:
    """Say whether process ``pid`` still runs (a zombie awaiting its reaper does not)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_command_hook_past_its_timeout_is_killed_with_everything_it_started(world, tmp_path):
    """At the hook's timeout its whole process group is killed: a background grandchild does not survive."""
    pidfile = tmp_path / "grandchild.pid"
    config, builds, deliveries, notifier = world(hooks=[{"kind": "command", "timeout_s": 1,
                                                         "argv": ["sh", "-c", f"sleep 300 & echo $! > {pidfile}; wait"]}])
    build = finished_build(builds)
    finish(notifier, build)
    notifier.deliver_due()
    grandchild = int(pidfile.read_text())
    try:
        wait_for(lambda: not _alive(grandchild), timeout_s=10, what="the hook's background process to be killed")
        hook = [d for d in deliveries.of_build(build.id) if d.kind == "hook"][0]
        assert hook.state is DeliveryState.PENDING and "TimeoutExpired" in hook.last_error
    finally:
        if _alive(grandchild):
            os.kill(grandchild, signal.SIGKILL)


def test_a_hook_still_running_is_not_claimed_again(world, clock, tmp_path):
    """With a hook timeout over 120 s, a poll 200 s into the attempt does not start the hook a second time."""
    starts, release = tmp_path / "starts", tmp_path / "release"
    # A second start records itself and ends at once; the first waits to be released.
    script = (f"if [ -e {starts} ]; then echo started >> {starts}; exit 0; fi; "
              f"echo started >> {starts}; while [ ! -e {release} ]; do sleep 0.05; done")
    config, builds, deliveries, notifier = world(hooks=[{"kind": "command", "timeout_s": 600, "argv": ["sh", "-c", script]}])
    build = finished_build(builds)
    finish(notifier, build)
    first = threading.Thread(target=notifier.deliver_due)
    first.start()
    try:
        wait_for(starts.exists, timeout_s=30, what="the hook to start")
        clock.now += 200
        notifier.deliver_due()  # another poller, while the first attempt is in flight
    finally:
        release.touch()
        first.join(timeout=30)
    assert starts.read_text().count("started") == 1
    hook = [d for d in deliveries.of_build(build.id) if d.kind == "hook"][0]
    assert (hook.state, hook.attempts) == (DeliveryState.DELIVERED, 1)


def hook_after_one_build(world, hooks):
    """Finish one build under ``hooks``, make the first attempt at what it owes, and return the hook's delivery."""
    config, builds, deliveries, notifier = world(hooks=hooks)
    build = finished_build(builds)
    finish(notifier, build)
    notifier.deliver_due()
    return deliveries, next(d for d in deliveries.of_build(build.id) if d.kind == "hook")


def test_a_failed_attempt_records_the_kind_and_host_never_the_urls_keys(world):
    """Deploy services put keys in hook URLs: a failure is recorded as its kind and host, nowhere the path or query."""
    url = "http://127.0.0.1:9/deploy/sekrit-path?key=sekrit-query"  # port 9: nothing listens
    deliveries, hook = hook_after_one_build(world, [{"kind": "keel", "url": url}])
    assert hook.last_error == "ConnectionError reaching 127.0.0.1"
    assert "sekrit" not in json.dumps(hook.to_json(deliveries.attempts(hook.id)))


def test_a_failing_command_hooks_output_goes_to_the_worker_log_not_the_api(world, caplog):
    """A command's stderr may quote what it was given: the API says only the exit status."""
    deliveries, hook = hook_after_one_build(world, [{"kind": "command", "argv": ["sh", "-c", "echo deploy-key-42 >&2; exit 3"]}])
    assert hook.last_error == "exit status 3 (its output is in the worker's log)"
    assert "deploy-key-42" not in json.dumps(hook.to_json(deliveries.attempts(hook.id)))
    assert "deploy-key-42" in caplog.text


def test_a_hook_url_from_the_environment_is_used_and_masked(make_config, hook_receiver):
    """url_env reads the URL from the environment; it is then a secret the redactor masks."""
    url = hook_receiver.url + "/deploy?token=url-key-123"
    config = make_config(repo_table("acme/app", hooks=[{"kind": "keel", "url_env": "HOOK_URL"}]), env={"HOOK_URL": url})
    [hook] = config.repos[0].hooks
    assert hook.url == url
    redact = Redactor(s.reveal() for s in config.secrets())
    assert "url-key-123" not in redact(f"sending to {url}")
