"""Hostile input: every forged, malformed or abusive delivery gets a clear 4xx and changes nothing.

One table, one line a case. Each case posts to a real app (real SQLite store, real SQLite
broker) and checks: the status, that no build is recorded or queued, and that neither the
reply nor anything logged contains a secret or the MAC the request should have carried.
"""

import concurrent.futures
import json
import logging
import socket
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import quote

import pytest
import requests
import sqlalchemy as sa

from webhook import create_app
from webhook.signatures import hmac_hex, sign_github, sign_standard_webhook
from webhook.store import builds as builds_table

from .helpers.configs import BITBUCKET_SECRET, GITEA_SECRET, GITHUB_SECRET, GITLAB_TOKEN, SECRETS_ENV, repo_table
from .helpers.service import Pushbuild
from .helpers.support import API_HEADERS, bitbucket_push, gitea_push, github_push, gitlab_push, queued, signed_in

SHA = "6113728f27ae82c7b1a177c8d03f9e96e0adf246"
SIGNING = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SECRETS = [GITHUB_SECRET, GITLAB_TOKEN, GITEA_SECRET, BITBUCKET_SECRET, SIGNING]


@dataclass
class Delivery:
    """A request to send, built as a forge would, then mangled."""

    forge: str
    body: bytes
    headers: list[tuple[str, str]] = field(default_factory=list)

    def set(self, name: str, value: str | None) -> "Delivery":
        self.headers = [(k, v) for k, v in self.headers if k.lower() != name.lower()]
        if value is not None:
            self.headers.append((name, value))
        return self

    def add(self, name: str, value: str) -> "Delivery":
        self.headers.append((name, value))
        return self


def github(payload=None, *, secret=GITHUB_SECRET, body=None, sign_body=None):
    body = body if body is not None else json.dumps(payload or github_push(repo="acme/gh", sha=SHA)).encode()
    signed = sign_body if sign_body is not None else body
    return Delivery("github", body, [("Content-Type", "application/json"), ("X-GitHub-Event", "push"),
                                     ("X-GitHub-Delivery", str(time.time_ns())),
                                     ("X-Hub-Signature-256", sign_github(signed, secret))])


def gitlab(payload=None, *, token=GITLAB_TOKEN, signed=True, timestamp=None, msg_id="msg_1"):
    body = json.dumps(payload or gitlab_push(repo="acme/gl", sha=SHA)).encode()
    ts = int(timestamp if timestamp is not None else time.time())
    headers = [("Content-Type", "application/json"), ("X-Gitlab-Event", "Push Hook"), ("X-Gitlab-Token", token),
               ("webhook-id", msg_id), ("webhook-timestamp", str(ts))]
    if signed:
        headers.append(("webhook-signature", sign_standard_webhook(body, msg_id=msg_id, timestamp=ts, secret=SIGNING)))
    return Delivery("gitlab", body, headers)


def gitea(payload=None, *, secret=GITEA_SECRET):
    body = json.dumps(payload or gitea_push(repo="acme/gt", sha=SHA)).encode()
    return Delivery("gitea", body, [("Content-Type", "application/json"), ("X-Gitea-Event", "push"),
                                    ("X-Gitea-Delivery", str(time.time_ns())), ("X-Gitea-Signature", hmac_hex(secret, body))])


def gitea_form(value: bytes, *, signature: str | None):
    """A Gitea form delivery whose payload field is ``value`` as sent (already encoded)."""
    delivery = Delivery("gitea", b"payload=" + value, [("Content-Type", "application/x-www-form-urlencoded"),
                                                       ("X-Gitea-Event", "push")])
    return delivery.set("X-Gitea-Signature", signature)


def bitbucket(payload=None, *, secret=BITBUCKET_SECRET):
    body = json.dumps(payload or bitbucket_push(repo="acme/bb", changes=[("branch", "main", SHA)])).encode()
    return Delivery("bitbucket", body, [("Content-Type", "application/json"), ("X-Event-Key", "repo:push"),
                                        ("X-Hub-Signature", "sha256=" + hmac_hex(secret, body))])


def with_ref(make, ref):
    payload = {"github": lambda: github_push(repo="acme/gh", sha=SHA), "gitlab": lambda: gitlab_push(repo="acme/gl", sha=SHA),
               "gitea": lambda: gitea_push(repo="acme/gt", sha=SHA)}[make.__name__]()
    payload["ref"] = ref
    return make(payload)


def with_field(make, path, value):
    """A delivery of ``make``'s forge whose payload has ``value`` at ``path``."""
    payload = {"github": lambda: github_push(repo="acme/gh", sha=SHA), "gitlab": lambda: gitlab_push(repo="acme/gl", sha=SHA),
               "gitea": lambda: gitea_push(repo="acme/gt", sha=SHA)}[make.__name__]()
    *parents, key = path
    target = payload
    for parent in parents:
        target = target[parent]
    target[key] = value
    return make(payload)


def with_sha(make, sha):
    payload = {"github": lambda: github_push(repo="acme/gh", sha=sha), "gitlab": lambda: gitlab_push(repo="acme/gl", sha=sha),
               "gitea": lambda: gitea_push(repo="acme/gt", sha=sha)}[make.__name__]()
    return make(payload)


GH_SIG = "X-Hub-Signature-256"
NESTED = b'{"a":' * 200 + b"1" + b"}" * 200

CASES = [
    # name, delivery factory, expected status
    ("github: no signature header", lambda: github().set(GH_SIG, None), 401),
    ("github: only the legacy SHA-1 header", lambda: github().set(GH_SIG, None).set("X-Hub-Signature", "sha1=" + "0" * 40), 401),
    ("github: sha1= prefix on the sha256 header", lambda: (d := github()).set(GH_SIG, "sha1=" + dict(d.headers)[GH_SIG][7:]), 401),
    ("github: upper-case hex", lambda: (d := github()).set(GH_SIG, "sha256=" + dict(d.headers)[GH_SIG][7:].upper()), 401),
    ("github: upper-case prefix", lambda: (d := github()).set(GH_SIG, "SHA256=" + dict(d.headers)[GH_SIG][7:]), 401),
    ("github: non-hex", lambda: github().set(GH_SIG, "sha256=" + "z" * 64), 401),
    ("github: wrong length", lambda: (d := github()).set(GH_SIG, dict(d.headers)[GH_SIG][:-2]), 401),
    ("github: non-ASCII", lambda: github().set(GH_SIG, "sha256=" + "é" * 64), 401),
    ("github: duplicated header", lambda: (d := github()).add(GH_SIG, dict(d.headers)[GH_SIG]), 401),
    ("github: signed re-serialised JSON", lambda: github(body=json.dumps(github_push(repo="acme/gh", sha=SHA), indent=1).encode(),
                                                          sign_body=json.dumps(github_push(repo="acme/gh", sha=SHA)).encode()), 401),
    ("github: another repository's secret", lambda: github(secret="other-repo-secret"), 401),
    ("github: a secret of another forge", lambda: github(secret=GITLAB_TOKEN), 401),
    ("gitlab: no token", lambda: gitlab().set("X-Gitlab-Token", None), 401),
    ("gitlab: wrong token", lambda: gitlab(token="nope"), 401),
    ("gitlab: duplicated token", lambda: gitlab().add("X-Gitlab-Token", GITLAB_TOKEN), 401),
    ("gitlab: no signing headers", lambda: gitlab(signed=False), 401),
    ("gitlab: timestamp 10 minutes old", lambda: gitlab(timestamp=time.time() - 600), 401),
    ("gitlab: timestamp 10 minutes ahead", lambda: gitlab(timestamp=time.time() + 600), 401),
    ("gitea: no signature", lambda: gitea().set("X-Gitea-Signature", None), 401),
    ("gitea: sha256= prefix", lambda: (d := gitea()).set("X-Gitea-Signature", "sha256=" + dict(d.headers)["X-Gitea-Signature"]), 401),
    ("gitea: wrong secret", lambda: gitea(secret="nope"), 401),
    ("bitbucket: bare hex without sha256=", lambda: (d := bitbucket()).set("X-Hub-Signature", dict(d.headers)["X-Hub-Signature"][7:]), 401),
    ("bitbucket: wrong secret", lambda: bitbucket(secret="nope"), 401),
    ("github: ref that is an option", lambda: with_ref(github, "refs/heads/--upload-pack=touch /tmp/pwned"), 400),
    ("gitlab: ref that is an option", lambda: with_ref(gitlab, "refs/heads/-uexec"), 400),
    ("gitea: ref HEAD", lambda: with_ref(gitea, "HEAD"), 400),
    ("github: ref with ..", lambda: with_ref(github, "refs/heads/a..b"), 400),
    ("github: ref with a control character", lambda: with_ref(github, "refs/heads/a\x07b"), 400),
    ("github: 39 hex digits", lambda: with_sha(github, SHA[:39]), 400),
    ("gitlab: SHA that is an option", lambda: with_sha(gitlab, "--upload-pack=x" + "a" * 25), 400),
    ("gitea: upper-case SHA", lambda: with_sha(gitea, SHA.upper()), 400),
    ("github: malformed JSON", lambda: github(body=b'{"ref": '), 400),
    ("github: deeply nested JSON", lambda: github(body=NESTED), 400),
    ("github: JSON that is not an object", lambda: github(body=b"[]"), 400),
    ("github: text/plain", lambda: github().set("Content-Type", "text/plain"), 415),
    ("github: no content type", lambda: github().set("Content-Type", None), 415),
    ("github: multipart", lambda: github().set("Content-Type", "multipart/form-data; boundary=x"), 415),
    ("github: form body with two payloads", lambda: github(body=b"payload=%7B%7D&payload=%7B%7D"), 400),
    ("github: unknown repository under a known secret", lambda: github(github_push(repo="evil/repo", sha=SHA)), 404),
    # Numbers and names no database holds: a 401 or 400, never a 500 from int() or a column overflow.
    ("gitlab: 5,000-digit webhook-timestamp", lambda: gitlab().set("webhook-timestamp", "9" * 5000), 401),
    ("gitlab: 13-digit webhook-timestamp", lambda: gitlab().set("webhook-timestamp", "1" * 13), 401),
    ("github: 101-character X-GitHub-Delivery", lambda: github().set("X-GitHub-Delivery", "d" * 101), 400),
    ("github: 10,000-character X-GitHub-Delivery", lambda: github().set("X-GitHub-Delivery", "d" * 10_000), 400),
    ("github: 101-character X-GitHub-Hook-ID", lambda: github().set("X-GitHub-Hook-ID", "1" * 101), 400),
    ("gitlab: 101-character signed webhook-id", lambda: gitlab(msg_id="m" * 101), 400),
    ("gitea: 101-character X-Gitea-Delivery", lambda: gitea().set("X-Gitea-Delivery", "d" * 101), 400),
    ("bitbucket: 101-character X-Request-UUID", lambda: bitbucket().set("X-Request-UUID", "u" * 101), 400),
    ("github: 1,025-character ref", lambda: with_ref(github, "refs/heads/" + "r" * 1014), 400),
    ("gitlab: 1,025-character ref", lambda: with_ref(gitlab, "refs/heads/" + "r" * 1014), 400),
    ("gitea: ref with a lone surrogate", lambda: with_ref(gitea, "refs/heads/\ud800"), 400),
    ("github: 257-character pusher", lambda: with_field(github, ("pusher", "name"), "p" * 257), 400),
    ("gitea: 257-character pusher", lambda: with_field(gitea, ("pusher", "login"), "p" * 257), 400),
    ("gitlab: 257-character pusher", lambda: with_field(gitlab, ("user_username",), "p" * 257), 400),
    ("github: pusher with a NUL", lambda: with_field(github, ("pusher", "name"), "a\x00b"), 400),
    ("github: pusher with a lone surrogate", lambda: with_field(github, ("pusher", "name"), "a\udc80"), 400),
    ("github: 256-character repository name", lambda: github(github_push(repo="acme/" + "g" * 251, sha=SHA)), 400),
    ("github: 1,025-character default branch", lambda: with_field(github, ("repository", "default_branch"), "b" * 1025), 400),
    ("gitlab: 1,025-character default branch", lambda: with_field(gitlab, ("project", "default_branch"), "b" * 1025), 400),
    ("gitea: default branch with a NUL", lambda: with_field(gitea, ("repository", "default_branch"), "ma\x00in"), 400),
    # A form body is decoded once, and only when there is a signature to check it against.
    ("gitea: form body of escapes, no signature", lambda: gitea_form(b"%7B" * 20_000, signature=None), 401),
    ("gitea: form body of escapes, forged signature", lambda: gitea_form(b"%%7" * 20_000, signature="0" * 64), 401),
]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.e2e)])
def app(request, make_config):
    """The app with its state on SQLite (the default) and on PostgreSQL (when ./dev test runs one)."""
    database = {} if request.param == "sqlite" else {"database_url": request.getfixturevalue("fresh_postgres_url")}
    config = make_config(
        repo_table("acme/gh"), repo_table("acme/gh-other", secret_env="OTHER"),
        repo_table("acme/gl", forge="gitlab", signing_token_env="SIGNING"),
        repo_table("acme/gt", forge="gitea"), repo_table("acme/bb", forge="bitbucket"),
        env={"OTHER": "other-repo-secret", "SIGNING": SIGNING}, server={"max_body_bytes": 64 * 1024, **database},
    )
    app = create_app(config)
    yield app
    app.extensions["pushbuild"].store.db.dispose()


def delivery_keys(app) -> list[str]:
    """The delivery keys of every recorded build, oldest first."""
    with app.extensions["pushbuild"].store.db.connect() as conn:
        return list(conn.execute(sa.select(builds_table.c.delivery_key).order_by(builds_table.c.id)).scalars())


@pytest.mark.parametrize("name, make, status", CASES, ids=[c[0] for c in CASES])
def test_hostile_delivery_is_refused_and_changes_nothing(app, caplog, name, make, status):
    """The case gets its 4xx, nothing is recorded or queued, and no secret or expected MAC leaks."""
    delivery = make()
    caplog.set_level(logging.DEBUG)
    response = signed_in(app).post(f"/hooks/{delivery.forge}", data=delivery.body, headers=delivery.headers)
    assert response.status_code == status, response.text
    assert response.is_json and response.json["error"]
    config = app.extensions["pushbuild"].config
    assert app.extensions["pushbuild"].store.list() == [] and queued(config) == []
    exposed = response.text + caplog.text
    expected_macs = [sign_github(delivery.body, GITHUB_SECRET)[7:], hmac_hex(GITEA_SECRET, delivery.body),
                     hmac_hex(BITBUCKET_SECRET, delivery.body)]
    assert not [s for s in SECRETS + expected_macs if s in exposed]


def test_a_body_over_the_limit_is_413_and_changes_nothing(app):
    """A declared body over max_body_bytes is refused before it is read."""
    big = github(github_push(repo="acme/gh", sha=SHA) | {"pad": "x" * 70_000})
    response = signed_in(app).post("/hooks/github", data=big.body, headers=big.headers)
    assert response.status_code == 413 and app.extensions["pushbuild"].store.list() == []


def test_replayed_delivery_ids_build_once_sequentially_and_concurrently(app):
    """The same delivery sent 5 times in a row and 20 times at once is one build."""
    delivery = github()
    codes = [signed_in(app).post("/hooks/github", data=delivery.body, headers=delivery.headers).status_code
             for _ in range(5)]
    results: list[int] = []

    def send():
        results.append(signed_in(app).post("/hooks/github", data=delivery.body, headers=delivery.headers).status_code)

    threads = [threading.Thread(target=send) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert codes == [202, 200, 200, 200, 200] and results == [200] * 20
    assert len(app.extensions["pushbuild"].store.list()) == 1
    assert len(queued(app.extensions["pushbuild"].config)) == 1


def test_a_replayed_gitlab_delivery_under_another_idempotency_key_builds_once(app):
    """A captured signed GitLab delivery resent with a new Idempotency-Key is the duplicate of the first: keyed on the signed webhook-id."""
    first = gitlab().set("Idempotency-Key", "key-1")
    replay = Delivery(first.forge, first.body, list(first.headers)).set("Idempotency-Key", "key-2")
    client = signed_in(app)
    accepted = client.post("/hooks/gitlab", data=first.body, headers=first.headers)
    again = client.post("/hooks/gitlab", data=replay.body, headers=replay.headers)
    assert accepted.status_code == 202, accepted.text
    assert (again.status_code, again.json) == (200, {"duplicate": accepted.json["build"]})
    assert delivery_keys(app) == ["gitlab:acme/gl:msg_1"]
    assert len(queued(app.extensions["pushbuild"].config)) == 1


@pytest.mark.parametrize("make, ref", [
    (lambda ref: github(github_push(repo="acme/gh", sha=SHA, ref=ref)), "refs/heads/" + "r" * 1013),
    (lambda ref: bitbucket(bitbucket_push(repo="acme/bb", changes=[("branch", ref[len("refs/heads/"):], SHA)]))
     .set("X-Request-UUID", "u" * 100), "refs/heads/" + "r" * 1013),
])
def test_names_as_long_as_the_store_holds_are_recorded(app, make, ref):
    """A 1,024-character ref and a 100-character delivery id are recorded whole (Bitbucket's key names the ref by hash)."""
    delivery = make(ref)
    response = signed_in(app).post(f"/hooks/{delivery.forge}", data=delivery.body, headers=delivery.headers)
    assert response.status_code == 202, response.text
    [build] = app.extensions["pushbuild"].store.list()
    assert build.ref == ref and all(len(key) <= 512 for key in delivery_keys(app))


def test_a_form_delivery_is_verified_before_its_form_is_read(app):
    """A form body with a wrong signature is refused as unsigned, not parsed."""
    body = ("payload=" + quote(json.dumps(github_push(repo="acme/gh", sha=SHA)))).encode()
    delivery = github(body=body, sign_body=b"something else").set("Content-Type", "application/x-www-form-urlencoded")
    assert signed_in(app).post("/hooks/github", data=delivery.body, headers=delivery.headers).status_code == 401


def test_empty_secret_stops_the_service_from_starting(make_config):
    """A repository whose secret variable is empty is a configuration error, not an open door."""
    from webhook.errors import ConfigError

    with pytest.raises(ConfigError, match="unset or empty"):
        make_config(repo_table("acme/gh", secret_env="EMPTY"), env={"EMPTY": ""})


# --- the same at the socket level, against gunicorn ------------------------------------------


@pytest.fixture
def web(tmp_path, docker_host):
    """gunicorn serving the app (no worker: nothing here should ever be built)."""
    config = {"server": {"data_dir": str(tmp_path / "data"), "mirror_dir": str(tmp_path / "mirrors"),
                         "max_body_bytes": 64 * 1024},
              "engine": {"base_url": docker_host},
              "repos": [{"name": "acme/gh", "forge": "github", "secret_env": "GITHUB_SECRET",
                         "clone_url": "https://git.example.com/acme/gh.git", "image": "127.0.0.1:5000/acme/gh"}]}
    service = Pushbuild(tmp_path, config, SECRETS_ENV)
    service.start_web()
    yield service
    service.stop()


def raw(service, request: bytes, *, close_early: bool = False, timeout_s: float = 10) -> bytes:
    """Send raw bytes to gunicorn; return what it answers (b"" if it just closes)."""
    with socket.create_connection(("127.0.0.1", service.port), timeout=timeout_s) as sock:
        sock.sendall(request)
        if close_early:
            return b""
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except (ConnectionResetError, socket.timeout):
            pass
        return answer


def head(delivery: Delivery, *, length: int | None, chunked: bool = False) -> bytes:
    lines = [b"POST /hooks/github HTTP/1.1", b"Host: 127.0.0.1", b"Connection: close"]
    lines += [f"{k}: {v}".encode() for k, v in delivery.headers]
    if length is not None:
        lines.append(f"Content-Length: {length}".encode())
    if chunked:
        lines.append(b"Transfer-Encoding: chunked")
    return b"\r\n".join(lines) + b"\r\n\r\n"


def chunked(body: bytes, size: int = 4096) -> bytes:
    parts = [f"{len(body[i:i + size]):x}\r\n".encode() + body[i:i + size] + b"\r\n" for i in range(0, len(body), size)]
    return b"".join(parts) + b"0\r\n\r\n"


def builds_of(service) -> list:
    return requests.get(f"{service.url}/api/builds", headers=API_HEADERS, timeout=5).json()["builds"]


@pytest.mark.e2e
def test_a_chunked_delivery_is_accepted(web):
    """A valid delivery sent chunked (no Content-Length) is read whole and verified."""
    delivery = github()
    answer = raw(web, head(delivery, length=None, chunked=True) + chunked(delivery.body))
    assert answer.startswith(b"HTTP/1.1 202"), answer[:200]
    assert len(builds_of(web)) == 1


@pytest.mark.e2e
def test_a_chunked_body_over_the_limit_is_413(web):
    """Without a Content-Length to refuse up front, the limit still holds while reading."""
    delivery = github(github_push(repo="acme/gh", sha=SHA) | {"pad": "x" * 100_000})
    answer = raw(web, head(delivery, length=None, chunked=True) + chunked(delivery.body))
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert builds_of(web) == []


@pytest.mark.e2e
@pytest.mark.parametrize("declared, sent", [(4000, 1000), (100_000, 10)])
def test_truncated_bodies_and_disconnects_change_nothing(web, declared, sent):
    """A client that sends less than it declared, or hangs up mid-body, leaves no build and a healthy server."""
    delivery = github()
    raw(web, head(delivery, length=declared) + delivery.body[:sent], close_early=True)
    answer = raw(web, head(delivery, length=declared) + delivery.body[:sent])
    assert answer == b"" or answer.startswith((b"HTTP/1.1 400", b"HTTP/1.1 413")), answer[:300]
    assert builds_of(web) == []
    assert requests.get(f"{web.url}/healthz", timeout=5).status_code == 200


@pytest.mark.e2e
def test_concurrent_replays_through_gunicorn_build_once(web):
    """20 copies of one delivery at once, across gunicorn's workers, record exactly one build."""
    delivery = github()
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        codes = list(pool.map(lambda _: requests.post(f"{web.url}/hooks/github", data=delivery.body,
                                                      headers=dict(delivery.headers), timeout=10).status_code, range(20)))
    assert sorted(codes) == [200] * 19 + [202]
    assert len(builds_of(web)) == 1
