"""Helpers the tests share: fixtures on disk, signed deliveries, and the registry's own API."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests
import sqlalchemy as sa

from webhook.events import PushEvent
from webhook.signatures import hmac_hex, sign_github, sign_standard_webhook

FIXTURES = Path(__file__).parent.parent / "fixtures"
#: API tokens the tests configure: a reader, an operator, and the admin token from the environment.
READ_TOKEN = "test-read-token-5d2f0c8e9a7b4c1d8e6f3a2b"
OPERATE_TOKEN = "test-operate-token-8c1e4f7a2d9b6e3c0a5f"
ADMIN_TOKEN = "test-admin-token-3b8e1d6c9f2a5e7d0c4b"
AUTH_ENV = {"TEST_READ_TOKEN": READ_TOKEN, "TEST_OPERATE_TOKEN": OPERATE_TOKEN}
AUTH_TABLE = {"tokens": [{"name": "reader", "token_env": "TEST_READ_TOKEN", "scope": "read"},
                         {"name": "operator", "token_env": "TEST_OPERATE_TOKEN", "scope": "operate"}]}


def bearer(token: str = READ_TOKEN) -> dict[str, str]:
    """The header that signs a request in with ``token``."""
    return {"Authorization": f"Bearer {token}"}


def all_at_once(action: Any, arguments: list[Any]) -> tuple[list[Any], list[Exception]]:
    """Call ``action(argument)`` for each argument in threads released together; return the results and the exceptions."""
    start, results, failures = threading.Barrier(len(arguments)), [], []

    def run(argument: Any) -> None:
        start.wait()
        try:
            results.append(action(argument))
        except Exception as exc:  # the failure is what the calling test looks for
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(argument,)) for argument in arguments]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results, failures


def signed_in(app: Any, token: str = READ_TOKEN) -> Any:
    """A Flask test client whose every request carries ``token`` (the reader's by default)."""
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return client


#: What a test sends to a real pushbuild's API (the admin token, which may do everything).
API_HEADERS = bearer(ADMIN_TOKEN)
MANIFEST_TYPES = ", ".join([
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
])


def fixture(name: str) -> dict[str, Any]:
    """Load a recorded payload from tests/fixtures."""
    return json.loads((FIXTURES / name).read_text())


def github_push(*, repo: str, sha: str, ref: str = "refs/heads/main", before: str = "0" * 40) -> dict[str, Any]:
    """GitHub's example push payload, pointed at ``repo`` and commit ``sha``."""
    payload = fixture("github/push_branch.json")
    payload.update(ref=ref, after=sha, before=before)
    payload["repository"].update(full_name=repo, default_branch="main")
    payload["head_commit"]["id"] = sha
    return payload


def gitlab_push(*, repo: str, sha: str, ref: str = "refs/heads/main") -> dict[str, Any]:
    """GitLab's documented push payload, pointed at ``repo`` and commit ``sha``."""
    payload = fixture("gitlab/push.json")
    payload.update(ref=ref, after=sha, checkout_sha=sha)
    payload["project"].update(path_with_namespace=repo, default_branch="main")
    return payload


def github_headers(body: bytes, secret: str, *, event: str = "push", delivery: str | None = None,
                   content_type: str = "application/json") -> dict[str, str]:
    """Headers of a GitHub delivery of ``body`` signed with ``secret``."""
    return {
        "Content-Type": content_type,
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-GitHub-Hook-ID": "109948940",
        "X-Hub-Signature-256": sign_github(body, secret),
    }


def gitlab_headers(*, token: str | None, event: str = "Push Hook", body: bytes = b"",
                   signing_token: str | None = None, delivery: str | None = None) -> dict[str, str]:
    """Headers of a GitLab delivery with a secret token and/or a Standard Webhooks signature."""
    delivery = delivery or str(uuid.uuid4())
    headers = {"Content-Type": "application/json", "X-Gitlab-Event": event, "Idempotency-Key": delivery}
    if token is not None:
        headers["X-Gitlab-Token"] = token
    if signing_token is not None:
        now = int(time.time())
        headers.update({
            "webhook-id": delivery, "webhook-timestamp": str(now),
            "webhook-signature": sign_standard_webhook(body, msg_id=delivery, timestamp=now, secret=signing_token),
        })
    return headers


def registry_digest(registry: str, name: str, tag: str) -> str | None:
    """Ask the registry's HTTP API for the manifest digest of ``name:tag``; ``None`` if absent."""
    response = requests.head(f"http://{registry}/v2/{name}/manifests/{tag}",
                             headers={"Accept": MANIFEST_TYPES}, timeout=10)
    if response.status_code == 404:
        return None
    response.raise_for_status()
    return response.headers["Docker-Content-Digest"]


def wait_for(predicate, *, timeout_s: float = 120, every_s: float = 0.25, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def gitea_push(*, repo: str, sha: str, ref: str = "refs/heads/main") -> dict[str, Any]:
    """Gitea's push payload, pointed at ``repo`` and commit ``sha``."""
    payload = fixture("gitea/push.json")
    payload.update(ref=ref, after=sha)
    payload["repository"].update(full_name=repo, default_branch="main")
    return payload


def gitea_headers(payload_json: bytes, secret: str, *, flavour: str = "Gitea", event: str = "push",
                  content_type: str = "application/json") -> dict[str, str]:
    """Headers of a Gitea/Forgejo/Gogs delivery: hex HMAC over the JSON payload itself."""
    return {
        "Content-Type": content_type,
        f"X-{flavour}-Event": event,
        f"X-{flavour}-Delivery": str(uuid.uuid4()),
        f"X-{flavour}-Signature": hmac_hex(secret, payload_json),
    }


def bitbucket_push(*, repo: str, changes: list[tuple[str, str, str]]) -> dict[str, Any]:
    """Bitbucket Cloud's repo:push payload for ``repo`` with one change per (type, name, sha)."""
    payload = fixture("bitbucket/repo_push.json")
    payload["repository"]["full_name"] = repo
    template = payload["push"]["changes"][0]
    payload["push"]["changes"] = [
        {**template, "new": {**template["new"], "type": kind, "name": name,
                             "target": {**template["new"]["target"], "hash": sha}}}
        for kind, name, sha in changes
    ]
    return payload


def bitbucket_headers(body: bytes, secret: str, *, event: str = "repo:push") -> dict[str, str]:
    """Headers of a Bitbucket delivery: X-Hub-Signature sha256= over the raw body."""
    return {
        "Content-Type": "application/json",
        "X-Event-Key": event,
        "X-Request-UUID": str(uuid.uuid4()),
        "X-Hub-Signature": "sha256=" + hmac_hex(secret, body),
    }


def run_push(services, repo, sha, ref="refs/heads/main", *, before="0" * 40, changed_paths=None):
    """Record a push of ``sha`` and run it to the end in this process."""
    [build], _ = services.store.record([PushEvent(forge="github", repo=repo.name, ref=ref, sha=sha, before=before,
                                                  pusher="t", delivery_id=None, default_branch="main",
                                                  changed_paths=changed_paths)])
    claimed = services.store.claim(build.id, owner="test", lease_s=60)
    services.pipeline().run(claimed, owner="test")
    return services.store.get(build.id)


def queued(config) -> list[int]:
    """The build ids waiting in the real SQLite broker."""
    path = config.server.data_dir / "broker.sqlite"
    if not path.exists():
        return []
    with sqlite3.connect(path) as db:
        if not db.execute("select 1 from sqlite_master where name='kombu_message'").fetchone():
            return []
        rows = db.execute("select payload from kombu_message").fetchall()
    return [json.loads(json.loads(p)["headers"]["argsrepr"])[0] for (p,) in rows]


#: The repository and commit the API tests record pushes of (the app's default configuration has it).
API_REPO = "Codertocat/Hello-World"
API_SHA = "6113728f27ae82c7b1a177c8d03f9e96e0adf246"


def record(app: Any, *, sha: str = API_SHA, ref: str = "refs/heads/main", pusher: str = "octocat") -> Any:
    """Record a push of ``API_REPO`` in the app's store, as a delivery would."""
    from webhook.events import PushEvent

    store = app.extensions["pushbuild"].store
    [build], _ = store.record([PushEvent(forge="github", repo=API_REPO, ref=ref, sha=sha, before="0" * 40,
                                         pusher=pusher, delivery_id=None)])
    return build


def finish(app: Any, build: Any, state: Any = None) -> None:
    """Run a recorded build to ``state`` (succeeded by default), as a worker would."""
    from webhook.store import BuildState

    store = app.extensions["pushbuild"].store
    store.claim(build.id, owner="w", lease_s=60)
    store.finish(build.id, state or BuildState.SUCCEEDED, owner="w", tags=[f"r/x:{build.sha}"],
                 digest="sha256:" + "a" * 64)


def can_write(db: Any, *, within_s: float = 10) -> bool:
    """Say whether a write transaction on the engine ``db`` goes through in time (a write turn never given back hangs it)."""
    done = threading.Event()

    def write() -> None:
        with db.begin() as conn:
            conn.exec_driver_sql("SELECT 1")
        done.set()

    threading.Thread(target=write, daemon=True).start()
    return done.wait(within_s)


@contextmanager
def sqlite_statements(db: Any) -> Iterator[list[str]]:
    """Collect every statement SQLite runs for the engine ``db`` while the block runs, however it was issued.

    SQLite's own trace, not SQLAlchemy's events: statements run on the driver's cursor
    (webhook.prepared) are seen too, and so are ``BEGIN`` and ``COMMIT``.
    """
    statements: list[str] = []
    traced = []

    def trace(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.set_trace_callback(statements.append)
        traced.append(dbapi_connection)

    db.dispose()  # connections opened from here on are traced
    sa.event.listen(db, "connect", trace)
    try:
        yield statements
    finally:
        sa.event.remove(db, "connect", trace)
        for dbapi_connection in traced:
            dbapi_connection.set_trace_callback(None)


def sqlite_plan(db: Any, statement: str) -> str:
    """SQLite's plan for ``statement`` (as :func:`sqlite_statements` caught it, values in place), its steps in one line."""
    with db.connect() as conn:
        return " ".join(row[-1] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement))


@contextmanager
def writes(db: Any) -> Iterator[list[str]]:
    """Collect the statements that write to ``db`` through SQLAlchemy's execute while the block runs.

    The webhook's prepared statements (webhook.prepared) bypass it: :func:`sqlite_statements` sees those.
    """
    statements = []

    def seen(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().split(" ", 1)[0].upper() in ("INSERT", "UPDATE", "DELETE"):
            statements.append(statement)

    sa.event.listen(db, "before_cursor_execute", seen)
    try:
        yield statements
    finally:
        sa.event.remove(db, "before_cursor_execute", seen)
