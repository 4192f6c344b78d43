"""Slow clients cannot silence deliveries: real gunicorn, real sockets, loopback only.

pushbuild's port faces the internet. Clients that send half a request and wait, bodies that
trickle, and clients following logs must never keep a forge's delivery from its answer (forges
give up after 10 s; GitLab disables a hook after four failures in a row). Timing goals are the
benchmark's (``./dev bench --stalled 1000``); these tests pin the behaviour.
"""

from __future__ import annotations

import json
import resource
import socket
import threading
import time
from pathlib import Path

import pytest
import requests

from .helpers.configs import GITHUB_SECRET, SECRETS_ENV
from .helpers.service import Pushbuild
from .helpers.support import API_HEADERS, github_headers, github_push, wait_for

pytestmark = pytest.mark.e2e

REPO = "acme/slow"
#: Stalled clients of each kind: more than enough to take every thread of gunicorn's gthread worker.
STALLED = 300
#: How long a test waits for an answer it expects: well under the forges' 10 s.
ANSWER_WITHIN_S = 5


def serve(tmp_path, **server) -> Pushbuild:
    """gunicorn serving one GitHub repository, as deployed (webhook.gunicorn_conf); no build worker."""
    config = {"server": {"data_dir": str(tmp_path / "data"), "mirror_dir": str(tmp_path / "mirrors"), **server},
              "engine": {"base_url": f"unix://{tmp_path}/no-engine.sock"},
              "repos": [{"name": REPO, "forge": "github", "secret_env": "GITHUB_SECRET",
                         "clone_url": "https://git.example.com/acme/slow.git", "image": "127.0.0.1:5000/acme/slow"}]}
    service = Pushbuild(tmp_path, config, SECRETS_ENV)
    service.start_web()
    return service


@pytest.fixture
def web(tmp_path):
    """The defaults: a request has 10 s for its head and 10 s for its body."""
    service = serve(tmp_path)
    yield service
    service.stop()


@pytest.fixture
def strict(tmp_path):
    """A one-second ``request_timeout_s``, so deadlines pass within a test."""
    service = serve(tmp_path, request_timeout_s=1)
    yield service
    service.stop()


@pytest.fixture(autouse=True)
def open_files():
    """This process holds every stalled client: let it open as many files as it may."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


_commits = iter(range(1, 1_000_000))


def delivery() -> tuple[bytes, dict[str, str]]:
    """A signed GitHub push of a new commit."""
    body = json.dumps(github_push(repo=REPO, sha=f"{next(_commits):040x}")).encode()
    return body, github_headers(body, GITHUB_SECRET)


def deliver(service: Pushbuild) -> requests.Response:
    body, headers = delivery()
    return requests.post(f"{service.url}/hooks/github", data=body, headers=headers, timeout=ANSWER_WITHIN_S)


def request_head(headers: dict[str, str], *, length: int) -> bytes:
    lines = ["POST /hooks/github HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items()),
             f"Content-Length: {length}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


HALF_HEAD = b"POST /hooks/github HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nX-GitHub-Eve"


def half_body() -> bytes:
    body, headers = delivery()
    return request_head(headers, length=len(body)) + body[: len(body) // 2]


def connect(service: Pushbuild, data: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", service.port), timeout=ANSWER_WITHIN_S)
    sock.sendall(data)
    return sock


def answer_and_close(sock: socket.socket, *, within_s: float = ANSWER_WITHIN_S) -> tuple[bytes, bool]:
    """Read what the server answers until it closes the connection; return it and whether it closed."""
    sock.settimeout(within_s)
    answer = b""
    try:
        while chunk := sock.recv(65536):
            answer += chunk
    except TimeoutError:
        return answer, False
    except ConnectionResetError:  # closed with our unread bytes still arriving: a reset, after the answer
        pass
    return answer, True


def still_open(sock: socket.socket) -> bool:
    """Say whether the server still holds this connection (nothing to read, not closed)."""
    sock.setblocking(False)
    try:
        return sock.recv(1) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


def trickle(sock: socket.socket, data: bytes, every_s: float) -> threading.Thread:
    """Send ``data`` a byte at a time in the background, until it is sent or the server closes."""

    def send() -> None:
        for i in range(len(data)):
            try:
                sock.send(data[i:i + 1])
            except OSError:
                return
            time.sleep(every_s)

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread


def test_a_delivery_is_answered_while_hundreds_of_clients_hold_half_requests(web):
    """300 half-sent heads and 300 heads with half their body, held by the server: a real delivery still gets its 202."""
    stalled = [connect(web, HALF_HEAD) for _ in range(STALLED)] + [connect(web, half_body()) for _ in range(STALLED)]
    try:
        time.sleep(1)  # every stalled client is the server's now
        reply = deliver(web)
        assert reply.status_code == 202, reply.text
        assert requests.get(f"{web.url}/healthz", timeout=ANSWER_WITHIN_S).status_code == 200
        assert all(still_open(sock) for sock in stalled[::50]), "the stalled clients were dropped, not held"
    finally:
        for sock in stalled:
            sock.close()


@pytest.mark.parametrize("sending", ["nothing more", "a byte every 0.2 s"])
def test_a_body_not_complete_within_request_timeout_s_is_408_and_the_connection_closed(strict, sending):
    """A body that stalls, or trickles, is answered 408 {"error": …} with Connection: close once the deadline passes."""
    body, headers = delivery()
    sock = connect(strict, request_head(headers, length=len(body)) + body[:100])
    began = time.monotonic()
    if sending != "nothing more":
        trickle(sock, body[100:], every_s=0.2)
    try:
        answer, closed = answer_and_close(sock)
    finally:
        sock.close()
    head, _, text = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), answer[:300]
    assert b"connection: close" in head.lower()
    assert "error" in json.loads(text)
    assert closed, "the connection was left open after the 408"
    assert time.monotonic() - began >= 0.9  # not before the deadline
    assert requests.get(f"{strict.url}/api/builds", headers=API_HEADERS, timeout=ANSWER_WITHIN_S).json()["builds"] == []


@pytest.mark.parametrize("sending", ["nothing more", "a byte every 0.2 s"])
def test_a_head_not_complete_within_request_timeout_s_is_408_and_the_connection_closed(strict, sending):
    """A request head that stalls, or trickles, is answered 408 and closed once the deadline passes."""
    sock = connect(strict, HALF_HEAD)
    if sending != "nothing more":
        trickle(sock, b"nt: push\r\n" * 50, every_s=0.2)
    try:
        answer, closed = answer_and_close(sock)
    finally:
        sock.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer[:300]
    assert closed, "the connection was left open"


def test_a_body_sent_slowly_but_within_request_timeout_s_is_accepted(strict):
    """The deadline is for the whole body: one sent in pieces, complete in time, is delivered."""
    body, headers = delivery()
    sock = connect(strict, request_head(headers, length=len(body)))
    third = len(body) // 3
    for piece in (body[:third], body[third:2 * third], body[2 * third:]):
        time.sleep(0.2)
        sock.sendall(piece)
    try:
        answer, _ = answer_and_close(sock, within_s=2)
    finally:
        sock.close()
    assert answer.startswith(b"HTTP/1.1 202"), answer[:300]


def test_followers_past_the_cap_get_429_and_followers_never_keep_a_delivery_waiting(tmp_path):
    """More followers than gthread had threads: the cap answers 429 past it, and a delivery still gets its 202."""
    service = serve(tmp_path, max_log_followers=10)
    followers = []
    try:
        first = deliver(service)  # no worker runs: the build stays queued, so its followers never finish
        assert first.status_code == 202, first.text
        log_url = f"{service.url}/api/builds/{first.json()['build']}/log?follow=1"
        followers = [requests.get(log_url, headers=API_HEADERS, stream=True, timeout=ANSWER_WITHIN_S) for _ in range(12)]
        assert [f.status_code for f in followers] == [200] * 10 + [429] * 2
        assert "error" in followers[-1].json()
        second = deliver(service)
        assert second.status_code == 202, second.text
    finally:
        for follower in followers:
            follower.close()
        service.stop()


def server_side_state(sock: socket.socket, server_port: int) -> str | None:
    """The TCP state of the server's end of ``sock``'s connection (/proc/net/tcp), or ``None`` once it is gone.

    A server that closes a connection whose client reads nothing cannot deliver its FIN (the data
    before it waits on the full window), so the client's own end looks open; the server's end says
    what the server did: ESTABLISHED ("01") while it holds the connection, FIN_WAIT and so on after.
    """
    client_port = sock.getsockname()[1]
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, state = fields[1], fields[2], fields[3]
        if int(local.split(":")[1], 16) == server_port and int(remote.split(":")[1], 16) == client_port:
            return state
    return None


def test_a_client_that_sends_requests_but_never_reads_the_answers_is_dropped(strict):
    """Pipelined requests whose answers fill the client's window: after request_timeout_s without progress, closed."""
    readers = []
    for _ in range(4):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", strict.port))
        sock.setblocking(False)
        sent, request = 0, b"GET /nothing-here HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" * 500
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:  # send until the server stops reading: its answers back up
            try:
                sent += sock.send(request)
            except BlockingIOError:
                time.sleep(0.05)
        assert sent > 100_000
        readers.append(sock)
    established = "01"
    wait_for(lambda: all(server_side_state(sock, strict.port) != established for sock in readers), timeout_s=20,
             what="the server to drop every client that reads nothing")
    assert deliver(strict).status_code == 202


def test_a_connection_pipelining_thousands_of_requests_takes_turns_with_a_delivery(web):
    """3000 requests sent at once on one connection do not all go before a delivery sent on another just after.

    gunicorn reads a connection's next request from what it has buffered without yielding: until
    each answered request yielded, one client kept every other connection waiting for as long as
    it kept requests coming (the delivery was answered after all 3000). The access log says in
    which order the server answered.
    """
    count = 3000
    hog = socket.create_connection(("127.0.0.1", web.port), timeout=ANSWER_WITHIN_S * 4)
    hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)

    def drain() -> None:  # read every answer as it comes, so the server never waits to write one (which yields)
        marker, tail, seen = b"HTTP/1.1 404", b"", 0
        while seen < count and (chunk := hog.recv(1 << 20)):
            seen += (tail + chunk).count(marker)
            tail = chunk[-(len(marker) - 1):]

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        hog.sendall(b"GET /nothing-here HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" * count)
        reply = deliver(web)
        assert reply.status_code == 202, reply.text
        reader.join(timeout=60)
    finally:
        hog.close()
    wait_for(lambda: web.web.log.read_text().count('"GET /nothing-here') == count, what="every request's access log line")
    answered = [line for line in web.web.log.read_text().splitlines() if '"GET /nothing-here' in line or '"POST /hooks/github' in line]
    before_delivery = next(i for i, line in enumerate(answered) if '"POST /hooks/github' in line)
    assert before_delivery < count // 2, f"the delivery was answered after {before_delivery} of the pipelined requests"
