"""The ``pushbuild`` command: serve, worker, build, check-config."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import click

from . import defaults
from .client import TOKEN_ENV, URL_ENV, Client
from .config import ADMIN_TOKEN_ENV, CONFIG_ENV, Config, load_config
from .errors import ConfigError, PushbuildError, SignatureError
from .events import PushEvent
from .intake import take
from .redact import printable
from .refs import ZERO_SHA, is_full_sha
from .services import Services
from .signatures import ed25519_public_key, new_ed25519_secret_key, verify_ed25519, verify_standard_webhook

#: What a build's log may send to a terminal: line breaks and tabs; never an escape sequence a pusher wrote.
TERMINAL_KEEPS = "\n\t"
url_option = click.option(
    "--url", envvar=URL_ENV, metavar="URL",
    help=f"Act through a running service's API (default: ${URL_ENV}), signed in with ${TOKEN_ENV}; "
         "without it, act on the state store directly.",
)
config_option = click.option(
    "--config", "config_path", type=click.Path(dir_okay=False), envvar=CONFIG_ENV,
    help=f"TOML configuration file (default: ${CONFIG_ENV}; none means built-in defaults).",
)


def _load(config_path: str | None) -> Config:
    """Load the configuration, or exit 2 with every problem listed."""
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        click.echo(f"pushbuild: {exc.message}", err=True)
        sys.exit(2)
    for warning in config.warnings():
        click.echo(f"pushbuild: warning: {warning}", err=True)
    return config


@click.group()
def main() -> None:
    """pushbuild: build and push an image for every git push."""


@main.command("check-config")
@config_option
def check_config(config_path: str | None) -> None:
    """Validate a configuration file; print each problem with its key."""
    config = _load(config_path)
    click.echo(f"configuration is valid: {len(config.repos)} repositories")
    for repo in config.repos:
        click.echo(f"  {repo.forge}:{repo.name} -> {repo.image}")


@main.command()
@config_option
@click.option("--worker", "as_worker", is_flag=True, help="Also check the Docker engine, as a worker needs it.")
def health(config_path: str | None, as_worker: bool) -> None:
    """Check what this process needs (state store, broker; with --worker the engine too); exit 0 if all answer.

    For probes: the web process's readiness is GET /healthz; a worker's is this command.
    """
    from .health import OK, HealthChecks, broker_ping
    from .worker import make_celery

    services = Services(_load(config_path))
    timeout_s = defaults.HEALTH_TIMEOUT_S
    checks = {"store": services.store.ping,
              "broker": lambda: broker_ping(make_celery(services.config), timeout_s=timeout_s)}
    if as_worker:
        checks["engine"] = lambda: services.engine().ping()
    results = HealthChecks(checks, timeout_s=timeout_s, redact=services.redact).run()
    for name, result in results.items():
        click.echo(f"{name}: {result}")
    sys.exit(0 if all(r == OK for r in results.values()) else 1)


@main.command()
@config_option
@click.option("--concurrency", type=int, default=None, help="Builds run at once (default: server.worker_concurrency).")
def worker(config_path: str | None, concurrency: int | None) -> None:
    """Run a build worker."""
    from .worker import run_worker

    run_worker(_load(config_path), concurrency=concurrency)


@main.command()
@config_option
@click.option("--bind", default=None, help=f"HOST:PORT to listen on (default: {defaults.BIND}, or 0.0.0.0:$PORT).")
@click.option("--workers", type=int, default=defaults.WEB_WORKERS, show_default=True, help="gunicorn web workers.")
def serve(config_path: str | None, bind: str | None, workers: int) -> None:
    """Run the web app under gunicorn and one build worker, until interrupted."""
    config = _load(config_path)
    if bind is None:
        bind = f"0.0.0.0:{os.environ['PORT']}" if os.environ.get("PORT") else defaults.BIND
    if not config.auth.authenticator().configured:
        click.echo("pushbuild: no API tokens are configured: /api answers 401, only /hooks/* and /healthz are open. "
                   "Add one:\n  [[auth.tokens]]\n  name = \"admin\"\n  token_env = \"PUSHBUILD_API_TOKEN\"\n"
                   "  scope = \"operate\"\nwith a value from python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
                   f" (or set ${ADMIN_TOKEN_ENV} alone)", err=True)
    from .worker import declare_queues, make_celery

    Services(config)  # create the data directory and schema once, before two processes race to
    declare_queues(make_celery(config))  # and the broker's queues, which they would race to create too
    env = dict(os.environ)
    if config_path:
        env[CONFIG_ENV] = str(Path(config_path).resolve())
    commands = [
        [sys.executable, "-m", "gunicorn", "--config", "python:webhook.gunicorn_conf", "--bind", bind,
         "--workers", str(workers), "webhook:create_app()"],
        [sys.executable, "-m", "webhook", "worker"],
    ]
    children = [subprocess.Popen(command, env=env) for command in commands]
    click.echo(f"pushbuild listening on http://{bind} (pids {', '.join(str(c.pid) for c in children)})", err=True)

    def stop(signum: int, _frame: object) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    status = os.wait()[1]  # the first child to exit ends the service
    stop(signal.SIGTERM, None)
    for child in children:
        child.wait()
    sys.exit(os.waitstatus_to_exitcode(status) if status else 0)


@main.command()
@config_option
@url_option
@click.argument("repo_name", metavar="[FORGE:]REPO")
@click.argument("revision", metavar="REF-OR-SHA")
def build(config_path: str | None, url: str | None, repo_name: str, revision: str) -> None:
    """Build REPO at a branch, tag or full commit id, streaming the log; print the digest.

    With --url, the running service builds it (POST /api/builds: its rules, statuses and hooks
    apply, and a worker runs it) and the log streams from there.
    """
    if url:
        _build_through(_client(url), repo_name, revision)
        return
    services = Services(_load(config_path))
    found = services.config.repos_named(repo_name)
    if not found:
        raise click.ClickException(f"repository {repo_name!r} is not configured")
    if len(found) > 1:
        raise click.ClickException(f"{repo_name!r} is configured on {' and '.join(r.forge for r in found)}: "
                                   f"name one, as {found[0].forge}:{found[0].name}")
    [repo] = found
    echo = lambda text: click.echo(printable(text, keep=TERMINAL_KEEPS), nl=False)  # noqa: E731
    try:
        if is_full_sha(revision):
            sha, ref = revision, ""
        else:
            ref = revision if revision.startswith("refs/") else f"refs/heads/{revision}"
            sha = services.mirrors.resolve(repo, ref, log=echo)
    except PushbuildError as exc:
        raise click.ClickException(services.redact(exc.message)) from exc
    taken = take(services.store, None, repo, [PushEvent(
        forge=repo.forge, repo=repo.name, ref=ref, sha=sha, before=ZERO_SHA, pusher="cli", delivery_id=None,
    )], from_forge=False)  # the rules decide, as for a push; this process runs the build itself
    if taken.ignored is not None:
        raise click.ClickException(f"{repo.forge}:{repo.name}: {taken.ignored}")
    [record] = taken.builds
    claimed = services.store.claim(record.id, owner=f"cli:{os.getpid()}", lease_s=services.config.server.lease_s)
    outcome = services.pipeline().run(claimed, owner=f"cli:{os.getpid()}", echo=echo)
    services.notifier.deliver_due(build_id=record.id)
    for delivery in services.deliveries.of_build(record.id):
        click.echo(f"{delivery.kind} {delivery.target}: {delivery.state.value}"
                   + (f" ({delivery.last_error}; a worker retries it)" if delivery.state.value == "pending" else ""))
    click.echo(f"build {record.id}: {outcome.state.value}")
    if outcome.digest:
        click.echo(outcome.digest)
    sys.exit(0 if outcome.digest else 1)


def _client(url: str) -> Client:
    try:
        return Client(url, os.environ.get(TOKEN_ENV))
    except PushbuildError as exc:
        raise click.ClickException(exc.message) from exc


def _build_through(client: Client, repo_name: str, revision: str) -> None:
    """Start a build with the service's API, stream its log until it ends, and exit as it ended."""
    if is_full_sha(revision):
        what = {"sha": revision}
    elif revision.startswith("refs/tags/"):
        what = {"tag": revision.removeprefix("refs/tags/")}
    else:
        what = {"ref": revision}
    started = _operate(lambda: client.call("POST", "/api/builds", json={"repo": repo_name, **what}))
    build_id, cursor = started["id"], 0
    click.echo(f"build {build_id}: {started['url']}", err=True)
    while True:
        current = _operate(lambda: client.call("GET", f"/api/builds/{build_id}"))
        more = True
        while more:  # the log is complete before the build is recorded finished: read it all, then stop
            text, cursor, more = _operate(lambda after=cursor: client.log_page(build_id, after))
            click.echo(printable(text, keep=TERMINAL_KEEPS), nl=False)
        if current["state"] not in ("queued", "running"):
            break
        time.sleep(1)
    error = printable(current["error"]) if current.get("error") else None
    click.echo(f"build {build_id}: {current['state']}" + (f" ({error})" if error else ""))
    if current.get("digest"):
        click.echo(current["digest"])
    sys.exit(0 if current.get("digest") else 1)


@main.command()
@config_option
@click.argument("repo_names", metavar="[[FORGE:]REPO]...", nargs=-1)
@click.option("--dry-run", is_flag=True, help="Only list what would be built.")
def reconcile(config_path: str | None, repo_names: tuple[str, ...], dry_run: bool) -> None:
    """Build branch and tag heads that no delivery ever announced (compares `git ls-remote` with the records)."""
    from .worker import Dispatcher, make_celery

    services = Services(_load(config_path))
    repos = ([r for spec in repo_names for r in services.config.repos_named(spec)] if repo_names
             else list(services.config.repos))
    if repo_names and not repos:
        raise click.ClickException(f"none of {', '.join(repo_names)} is configured")
    dispatcher = Dispatcher(make_celery(services.config), services.store)
    missing = 0
    for repo in repos:
        try:
            heads = services.mirrors.remote_heads(repo)
        except PushbuildError as exc:
            click.echo(f"{repo.forge}:{repo.name}: {services.redact(exc.message)}", err=True)
            continue
        for ref, sha in sorted(heads.items()):
            if repo.plan(ref, sha) is None or services.store.has_build(repo.forge, repo.name, ref, sha):
                continue
            missing += 1
            click.echo(f"{repo.forge}:{repo.name} {ref} {sha}: never delivered" + ("" if dry_run else ", queued"))
            if not dry_run:
                take(services.store, dispatcher, repo, [PushEvent(
                    forge=repo.forge, repo=repo.name, ref=ref, sha=sha, before=ZERO_SHA, pusher="reconcile",
                    delivery_id=None)], from_forge=False)
    click.echo(f"{missing} missing" + (" (dry run)" if dry_run else ""))


@main.command()
@config_option
@url_option
@click.argument("build_id", metavar="BUILD", type=int)
def retry(config_path: str | None, url: str | None, build_id: int) -> None:
    """Queue a finished build (failed, succeeded, skipped or cancelled) to run again; a worker picks it up."""
    if url:
        _post(url, f"/api/builds/{build_id}/retry")
        click.echo(f"build {build_id} queued again")
        return
    from .operations import retry as requeue
    from .worker import Dispatcher, make_celery

    services = Services(_load(config_path))
    _operate(lambda: requeue(services, Dispatcher(make_celery(services.config), services.store), build_id,
                             by="pushbuild retry"))
    click.echo(f"build {build_id} queued again")


@main.command()
@config_option
@url_option
@click.argument("build_id", metavar="BUILD", type=int)
def cancel(config_path: str | None, url: str | None, build_id: int) -> None:
    """Cancel a queued or running build; a running one stops before it pushes anything more."""
    if url:
        click.echo(f"build {build_id}: {_post(url, f'/api/builds/{build_id}/cancel')['state']}")
        return
    from .operations import cancel as stop

    services = Services(_load(config_path))
    build = _operate(lambda: stop(services, build_id, by="pushbuild cancel"))
    click.echo(f"build {build_id}: {build.state.value}")


def _post(url: str, path: str) -> dict:
    """POST to the service at ``url``; return its answer, or exit with what it refused."""
    client = _client(url)
    return _operate(lambda: client.call("POST", path))


def _operate(action):
    """Run an operation; turn its refusal (no such build, not finished) into a CLI error."""
    try:
        return action()
    except PushbuildError as exc:
        raise click.ClickException(exc.message) from exc


@main.command()
@config_option
@url_option
@click.argument("delivery_id", metavar="DELIVERY", type=int)
def redeliver(config_path: str | None, url: str | None, delivery_id: int) -> None:
    """Send a commit status or redeploy hook again now (its id is in /api/builds/<id>/deliveries).

    With --url, the service's worker sends it (an older push's hook is refused: 409).
    """
    if url:
        delivery = _post(url, f"/api/deliveries/{delivery_id}/redeliver")
        click.echo(f"delivery {delivery_id} ({delivery['kind']} {delivery['target']}): due again; a worker sends it")
        return
    services = Services(_load(config_path))
    delivery = services.notifier.redeliver(delivery_id)
    if delivery is None:
        raise click.ClickException(f"no delivery {delivery_id}")
    attempts = services.deliveries.attempts(delivery_id)
    last = attempts[-1] if attempts else None
    click.echo(f"delivery {delivery_id} ({delivery.kind} {delivery.target}): {delivery.state.value}"
               + (f", answered {last.status_code}" if last and last.status_code else "")
               + (f": {delivery.last_error}" if delivery.last_error and delivery.state.value != "delivered" else ""))
    sys.exit(0 if delivery.state.value == "delivered" else 1)


@main.command("verify-hook")
@click.option("--id", "msg_id", envvar="WEBHOOK_ID", required=True, help="The webhook-id header.")
@click.option("--timestamp", envvar="WEBHOOK_TIMESTAMP", required=True, help="The webhook-timestamp header.")
@click.option("--signature", envvar="WEBHOOK_SIGNATURE", required=True, help="The webhook-signature header.")
@click.option("--secret-env", help="Environment variable holding the whsec_ secret (HMAC, v1).")
@click.option("--public-key", help="The whpk_ Ed25519 public key (v1a); not a secret.")
@click.option("--tolerance-s", type=float, default=defaults.SIGNATURE_TOLERANCE_S, show_default=True)
@click.argument("body", type=click.File("rb"), default="-")
def verify_hook(msg_id: str, timestamp: str, signature: str, secret_env: str | None, public_key: str | None,
                tolerance_s: float, body) -> None:
    """Check a redeploy hook's Standard Webhooks signature over BODY (default stdin); exit 0 if valid."""
    if bool(secret_env) == bool(public_key):
        raise click.UsageError("give exactly one of --secret-env and --public-key")
    data = body.read()
    try:
        if secret_env:
            verify_standard_webhook(data, msg_id=msg_id, timestamp=timestamp, signature=signature,
                                    secret=os.environ.get(secret_env), now=time.time(), tolerance_s=tolerance_s)
        else:
            verify_ed25519(data, msg_id=msg_id, timestamp=timestamp, signature=signature, public_key=public_key,
                           now=time.time(), tolerance_s=tolerance_s)
    except SignatureError as exc:
        click.echo(f"invalid: {exc.message}", err=True)
        sys.exit(1)
    click.echo("valid")


@main.command("hook-keys")
def hook_keys() -> None:
    """Generate an Ed25519 key pair for signing redeploy hooks (whsk_ for pushbuild, whpk_ for receivers)."""
    secret = new_ed25519_secret_key()
    click.echo(f"secret key (set it in the variable signing_key_env names): {secret}")
    click.echo(f"public key (give it to receivers): {ed25519_public_key(secret)}")


@main.command()
@config_option
@click.option("--dry-run", is_flag=True, help="Only count what would be removed.")
@click.option("--engine", "with_engine", is_flag=True, help="Also clean the Docker engine (images, build cache).")
def prune(config_path: str | None, dry_run: bool, with_engine: bool) -> None:
    """Prune old build records now, as workers do every housekeeping_every_s (docs/operations.md: Retention and disk)."""
    from .build.housekeeping import Housekeeper
    from .retention import Retention, RetentionPolicy

    services = Services(_load(config_path))
    retention = Retention(services.store.db, RetentionPolicy.of(services.config.server))
    click.echo(f"{'would prune' if dry_run else 'pruned'} {retention.dry_run() if dry_run else retention.prune()}")
    if with_engine:
        try:
            report = Housekeeper(services.config, services.store, services.engine).run(dry_run=dry_run)
        except PushbuildError as exc:
            raise click.ClickException(exc.message) from exc
        click.echo(f"{'would remove' if dry_run else 'removed'} {report}")
