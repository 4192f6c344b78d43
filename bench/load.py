"""Load test of the webhook receiver: N signed deliveries from C concurrent clients to gunicorn.

    ./dev bench --deliveries 5000 --concurrency 50     (or .venv/bin/python bench/load.py …)

Checks, on loopback only: no 5xx; every distinct delivery recorded exactly once (replays
answered as duplicates); as many builds as distinct commits; p99 latency under 1 s (the
forges give up after 10 s). Runs gunicorn on the embedded defaults (SQLite state and broker)
with no worker, so only the receiving side is measured, and reports the web worker's CPU time per
request. Stops what it starts.

The client is one thread with raw keep-alive connections (``--client requests`` is the former
one, a thread and a ``requests`` session per connection, which took a core of its own). By
default each connection sends its next request when its answer is whole (a closed loop);
``--rate R`` sends request *i* at *i*/R seconds and counts its latency from then.
``--compare-with REV --rounds N`` runs that revision's ``webhook`` package and the working
tree's in turn and prints medians and ratios (this machine's speed drifts within minutes).

    ./dev bench --stalled 1000 [--compare-gthread]

The slow-client scenario instead: N connections that send half a request head or a head and
half its body, then wait (each one the server closes is opened again, as an attacker would),
held past any first-byte wait; then real signed deliveries, one after another, and their latency
next to a baseline run without stalled clients, with the ratio. ``--compare-gthread`` runs the
same against gunicorn's gthread worker (the setup before webhook.web.serving), side by side.
Fails when a real delivery is not answered 202 within the forges' 10 s, or (unless
``--report-latency-only``) its p99 is over 1 s.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import json
import os
import resource
import selectors
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from webhook.signatures import sign_github  # noqa: E402

SECRET = "load-test-secret"
FIXTURE = ROOT / "tests" / "fixtures" / "github" / "push_branch.json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_gunicorn(workdir: Path, port: int, workers: int, *, gunicorn_args: tuple[str, ...] = (),
                   root: Path = ROOT) -> subprocess.Popen:
    config = workdir / "pushbuild.toml"
    config.write_text(
        f'[server]\ndata_dir = "{workdir / "data"}"\nmirror_dir = "{workdir / "mirrors"}"\n'
        f'[engine]\nbase_url = "unix://{workdir}/no-engine.sock"\n'
        '[[repos]]\nname = "load/test"\nforge = "github"\nsecret_env = "LOAD_SECRET"\n'
        'clone_url = "https://git.example.com/load/test.git"\nimage = "127.0.0.1:5000/load/test"\n'
    )
    env = {**os.environ, "PUSHBUILD_CONFIG": str(config), "LOAD_SECRET": SECRET, "WEB_CONCURRENCY": str(workers)}
    log = open(workdir / "gunicorn.log", "wb")
    process = subprocess.Popen([sys.executable, "-m", "gunicorn", "--config", "python:webhook.gunicorn_conf",
                                "--bind", f"127.0.0.1:{port}", "--access-logfile", "/dev/null", *gunicorn_args,
                                "webhook:create_app()"],
                               env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=root)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
            return process
        except (requests.ConnectionError, requests.Timeout):
            time.sleep(0.1)
    raise SystemExit(f"gunicorn did not start:\n{(workdir / 'gunicorn.log').read_text()}")


def queue_backlog(state_db: Path, count: int) -> None:
    """Record ``count`` queued builds of another repository, over 50 branches: a backlog no worker has taken yet."""
    with sqlite3.connect(state_db) as db:
        db.executemany("insert into builds (repo, forge, ref, sha, state, tags, attempts, created_at, queued_at) "
                       "values ('load/backlog', 'github', ?, ?, 'queued', '[]', 0, 0, 0)",
                       ((f"refs/heads/b{i % 50}", f"{i + 1:040x}") for i in range(count)))


def deliveries(count: int) -> list[tuple[bytes, dict[str, str]]]:
    """Distinct signed push deliveries, each of its own commit."""
    template = json.loads(FIXTURE.read_text())
    made = []
    for i in range(count):
        payload = json.loads(json.dumps(template))
        sha = f"{i + 1:040x}"  # never all zeros: that is a deletion
        payload.update(ref="refs/heads/main", after=sha)
        payload["repository"]["full_name"] = "load/test"
        payload["head_commit"]["id"] = sha
        body = json.dumps(payload).encode()
        made.append((body, {"Content-Type": "application/json", "X-GitHub-Event": "push",
                            "X-GitHub-Delivery": str(uuid.uuid4()), "X-GitHub-Hook-ID": "1",
                            "X-Hub-Signature-256": sign_github(body, SECRET)}))
    return made


def encode_request(port: int, body: bytes, headers: dict[str, str]) -> bytes:
    """One delivery as the bytes of an HTTP/1.1 request to ``/hooks/github``."""
    head = ["POST /hooks/github HTTP/1.1", f"Host: 127.0.0.1:{port}", f"Content-Length: {len(body)}",
            *(f"{name}: {value}" for name, value in headers.items())]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def send_lean(port: int, made: list[tuple[bytes, dict[str, str]]], concurrency: int,
              rate: float | None = None) -> list[tuple[int, float]]:
    """Send every delivery over ``concurrency`` keep-alive connections from one thread; (status, seconds) of each.

    One thread and a selector, about 0.1 ms of CPU a request: the client takes next to nothing
    from the server on this machine's two cores, and adds no queueing of its own to the latencies.
    Without ``rate``, each connection sends its next request as soon as its answer is whole (the
    server is kept saturated: latency is then ``concurrency`` over throughput, Little's law). With
    ``rate``, request *i* is due at *i* / ``rate`` seconds, sent then on a free connection, and its
    latency counts from when it was due: a request that waited for a free connection (a server
    that stalled) counts that wait, as a forge's delivery would.
    """
    payloads = [encode_request(port, body, headers) for body, headers in made]
    results: list[tuple[int, float]] = [(0, 0.0)] * len(payloads)
    selector = selectors.DefaultSelector()
    idle: collections.deque[dict] = collections.deque()  # used in turn, so none sits past the server's keep-alive
    sent = answered = 0
    began = time.perf_counter()

    def due(index: int) -> float:
        return began + index / rate if rate else began

    def connect() -> dict:
        sock = socket.create_connection(("127.0.0.1", port), timeout=FORGE_TIMEOUT_S)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = {"sock": sock, "index": None}
        selector.register(sock, selectors.EVENT_READ, conn)
        return conn

    def send_due() -> None:
        nonlocal sent
        now = time.perf_counter()
        while idle and sent < len(payloads) and due(sent) <= now:
            conn = idle.popleft()
            conn.update(index=sent, buffer=b"", started=due(sent) if rate else now)
            conn["sock"].sendall(payloads[sent])
            sent += 1

    idle.extend(connect() for _ in range(min(concurrency, len(payloads))))
    while answered < len(payloads):
        send_due()
        waiting_to_send = idle and sent < len(payloads)
        timeout = max(0.0, due(sent) - time.perf_counter()) if waiting_to_send else FORGE_TIMEOUT_S
        ready = selector.select(timeout=timeout)
        if not ready and not waiting_to_send:
            raise SystemExit(f"no answer within {FORGE_TIMEOUT_S} s")
        for key, _ in ready:
            conn = key.data
            data = conn["sock"].recv(65536)
            if not data and conn["index"] is None:  # an idle connection the server closed (keep-alive over)
                selector.unregister(conn["sock"])
                conn["sock"].close()
                idle.remove(conn)
                idle.append(connect())
                continue
            if not data:
                raise SystemExit("the server closed a connection in the middle of a request")
            conn["buffer"] += data
            head_end = conn["buffer"].find(b"\r\n\r\n")
            if head_end < 0:
                continue
            head = conn["buffer"][:head_end].decode("latin-1").split("\r\n")
            length = next((int(line.split(":", 1)[1]) for line in head if line.lower().startswith("content-length:")), 0)
            if len(conn["buffer"]) - head_end - 4 >= length:
                results[conn["index"]] = (int(head[0].split()[1]), time.perf_counter() - conn["started"])
                answered += 1
                conn["index"] = None
                idle.append(conn)
    for key in list(selector.get_map().values()):
        key.fileobj.close()
    selector.close()
    return results


def send_requests(port: int, made: list[tuple[bytes, dict[str, str]]], concurrency: int,
                  rate: float | None = None) -> list[tuple[int, float]]:
    """The same with ``requests``, one session per thread of ``concurrency``: 1.2–1.8 ms of client CPU a request."""
    if rate:
        raise SystemExit("--rate needs the lean client")
    local = threading.local()

    def send(delivery: tuple[bytes, dict[str, str]]) -> tuple[int, float]:
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        started = time.perf_counter()
        response = session.post(f"http://127.0.0.1:{port}/hooks/github", data=delivery[0],
                                headers=delivery[1], timeout=30)
        return response.status_code, time.perf_counter() - started

    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(send, made))


#: The bench's clients (--client): what the latencies are measured with.
SENDERS = {"lean": send_lean, "requests": send_requests}


def cpu_seconds(pids: list[int]) -> float:
    """CPU time (user and system) the processes used so far."""
    total = 0.0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def web_processes(master: int) -> list[int]:
    """gunicorn's worker processes under ``master`` (the ones that answer)."""
    children = Path(f"/proc/{master}/task/{master}/children")
    return [int(pid) for pid in children.read_text().split()]


#: The setup before webhook.web.serving, for --compare-gthread: gthread, 8 threads.
GTHREAD_ARGS = ("--worker-class", "gthread", "--threads", "8")
#: The forges give up on a delivery after this long (GitLab disables a hook after four in a row).
FORGE_TIMEOUT_S = 10.0
#: gunicorn's gthread worker waits this long for a connection's first byte; stalled clients are held past it.
FIRST_BYTE_WAIT_S = 5.0


def half_request(index: int) -> bytes:
    """Half a request head (odd ``index``), or a whole head declaring 10,000 bytes and 100 of them (even)."""
    if index % 2:
        return b"POST /hooks/github HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nX-GitHub-Ev"
    return (b"POST /hooks/github HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"X-GitHub-Event: push\r\nContent-Length: 10000\r\n\r\n" + b'{"ref": "' + b"x" * 91)


class Stall:
    """``count`` connections that each send half a request and wait; one the server closes is opened again."""

    def __init__(self, port: int, count: int) -> None:
        self.port = port
        self.selector = selectors.DefaultSelector()
        self.reopened = 0
        self.answers: dict[str, int] = {}
        self._stop = threading.Event()
        for index in range(count):
            self._open(index)
        self._thread = threading.Thread(target=self._watch, name="stall", daemon=True)
        self._thread.start()

    def _open(self, index: int) -> None:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=FORGE_TIMEOUT_S)
        sock.sendall(half_request(index))
        sock.setblocking(False)
        self.selector.register(sock, selectors.EVENT_READ, index)

    def _watch(self) -> None:
        while not self._stop.is_set():
            for key, _ in self.selector.select(timeout=0.2):
                sock, index = key.fileobj, key.data
                try:
                    data = sock.recv(4096)
                except OSError:
                    data = b""
                if data:  # an answer (408); the server closes the connection after it
                    status = data.split(b"\r\n", 1)[0][9:12].decode(errors="replace")
                    self.answers[status] = self.answers.get(status, 0) + 1
                    continue
                self.selector.unregister(sock)
                sock.close()
                if not self._stop.is_set():
                    self.reopened += 1
                    try:
                        self._open(index)
                    except OSError:
                        pass

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        for key in list(self.selector.get_map().values()):
            key.fileobj.close()
        self.selector.close()


def probe(port: int, made: list[tuple[bytes, dict[str, str]]], budget_s: float) -> dict:
    """Send real deliveries one after another (each its own connection, as forges do); report their latency.

    Stops early after ``budget_s``: a server silenced by slow clients answers none within 10 s.
    """
    latencies, codes, timeouts = [], {}, 0
    began = time.monotonic()
    for body, headers in made:
        if time.monotonic() - began > budget_s:
            break
        started = time.perf_counter()
        try:
            response = requests.post(f"http://127.0.0.1:{port}/hooks/github", data=body, headers=headers,
                                     timeout=FORGE_TIMEOUT_S)
        except requests.RequestException:
            timeouts += 1
            continue
        latencies.append(time.perf_counter() - started)
        codes[response.status_code] = codes.get(response.status_code, 0) + 1
    latencies.sort()
    def ms(q: float) -> float | None:
        return round(latencies[min(len(latencies) - 1, int(len(latencies) * q))] * 1000, 1) if latencies else None
    return {"sent": len(latencies) + timeouts, "answered_202": codes.get(202, 0), "timed_out_10s": timeouts,
            "status_codes": codes, "p50_ms": ms(0.5), "p99_ms": ms(0.99), "max_ms": ms(1.0)}


def slow_clients(workdir: Path, args: argparse.Namespace, flavour: str, gunicorn_args: tuple[str, ...]) -> dict:
    """One server: a baseline of real deliveries, then the same under ``args.stalled`` stalled clients."""
    port = free_port()
    server = start_gunicorn(workdir, port, args.workers, gunicorn_args=gunicorn_args)
    made = deliveries(2 * args.probes)
    try:
        baseline = probe(port, made[:args.probes], args.probe_budget_s)
        began = time.monotonic()
        stall = Stall(port, args.stalled)
        opened_s = time.monotonic() - began
        time.sleep(args.hold_s)
        try:
            stalled = probe(port, made[args.probes:], args.probe_budget_s)
        finally:
            stall.stop()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
    stalled.update(stalled_clients=args.stalled, opened_in_s=round(opened_s, 2), held_s_before_probing=args.hold_s,
                   closed_by_server_and_reopened=stall.reopened, answers_to_stalled=stall.answers)
    return {"worker": flavour, "baseline": baseline, "stalled": stalled}


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def run_slow_clients(args: argparse.Namespace) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # this process holds every stalled client
    flavours = [("gevent (webhook.web.serving.Worker)", ())]
    if args.compare_gthread:
        flavours.append(("gthread, 8 threads (before)", GTHREAD_ARGS))
    runs = []
    for flavour, gunicorn_args in flavours:
        with tempfile.TemporaryDirectory(prefix="pushbuild-slow-") as tmp:
            runs.append(slow_clients(Path(tmp), args, flavour, gunicorn_args))
    for run in runs:
        run["stalled_over_baseline"] = {q: _ratio(run["stalled"][q], run["baseline"][q]) for q in ("p50_ms", "p99_ms", "max_ms")}
    if len(runs) == 2:
        new, old = runs[0]["stalled"], runs[1]["stalled"]
        runs.append({"gthread_over_gevent_under_stall": {
            "p50_ms": _ratio(old["p50_ms"], new["p50_ms"]), "max_ms": _ratio(old["max_ms"], new["max_ms"]),
            "answered_202": f"{old['answered_202']}/{old['sent']} vs {new['answered_202']}/{new['sent']}"}})
    print(json.dumps(runs, indent=2))
    print(f"\nreal deliveries during {args.stalled} stalled clients (held {args.hold_s:g} s first), latency in ms:")
    print(f"{'worker':34} {'run':9} {'202/sent':>9} {'timeouts':>8} {'p50':>8} {'p99':>8} {'max':>8}")
    for run in runs[:len(flavours)]:
        for name in ("baseline", "stalled"):
            r = run[name]
            print(f"{run['worker']:34} {name:9} {str(r['answered_202']) + '/' + str(r['sent']):>9} {r['timed_out_10s']:>8} "
                  f"{r['p50_ms'] or '-':>8} {r['p99_ms'] or '-':>8} {r['max_ms'] or '-':>8}")
        ratios = run["stalled_over_baseline"]
        print(f"{run['worker']:34} {'ratio':9} {'':>9} {'':>8} {ratios['p50_ms'] or '-':>8} {ratios['p99_ms'] or '-':>8} "
              f"{ratios['max_ms'] or '-':>8}")
    ours = runs[0]
    failures = []
    for name in ("baseline", "stalled"):
        if ours[name]["answered_202"] != ours[name]["sent"] or ours[name]["sent"] != args.probes:
            failures.append(f"{name}: not every real delivery was answered 202 within {FORGE_TIMEOUT_S:g} s")
    p99 = ours["stalled"]["p99_ms"]
    if p99 is not None and p99 > args.p99_limit_s * 1000 and not args.report_latency_only:
        failures.append(f"p99 under stalled clients {p99} ms over {args.p99_limit_s} s")
    for failure in failures:
        print(f"FAIL: {failure}", file=sys.stderr)
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=2000, help="distinct deliveries (each a new commit)")
    parser.add_argument("--replays", type=int, default=1, help="extra copies of each delivery, sent too")
    parser.add_argument("--backlog", type=int, default=0, metavar="N",
                        help="N queued builds of another repository recorded before the run (no worker runs them)")
    parser.add_argument("--warmup", type=int, default=0, metavar="N",
                        help="first send N other deliveries (and their replays), not measured: a server that has run a while")
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--workers", type=int, default=1,
                        help="gunicorn worker processes (default 1: the embedded default's one web process, "
                             "which the intake target, 300 requests/s at concurrency 20 with p99 <= 50 ms, is for)")
    parser.add_argument("--client", choices=sorted(SENDERS), default="lean",
                        help="lean (default): one thread, raw keep-alive connections, so the client takes next to "
                             "no CPU from the server; requests: a thread and a requests session per connection")
    parser.add_argument("--rate", type=float, default=None,
                        help="requests a second, each due at its time and its latency counted from then (open loop); "
                             "default: as fast as the server answers, --concurrency always in flight")
    parser.add_argument("--compare-with", metavar="REVISION",
                        help="run this git revision's webhook package and the working tree's in turn, and print ratios")
    parser.add_argument("--rounds", type=int, default=3, help="--compare-with: runs of each")
    parser.add_argument("--p99-limit-s", type=float, default=1.0)
    parser.add_argument("--report-latency-only", action="store_true", help="report p99 without failing on it (CI)")
    parser.add_argument("--stalled", type=int, default=0,
                        help="the slow-client scenario: this many clients sending half a request and waiting")
    parser.add_argument("--probes", type=int, default=200, help="slow-client scenario: real deliveries per run")
    parser.add_argument("--hold-s", type=float, default=FIRST_BYTE_WAIT_S + 1,
                        help="slow-client scenario: how long the stalled clients wait before deliveries are sent")
    parser.add_argument("--probe-budget-s", type=float, default=40.0,
                        help="slow-client scenario: stop sending deliveries after this long (a silenced server)")
    parser.add_argument("--compare-gthread", action="store_true",
                        help="slow-client scenario: run it against gunicorn's gthread worker too, side by side")
    args = parser.parse_args(argv)
    if args.stalled:
        return run_slow_clients(args)

    if args.compare_with:
        return compare(args)
    report, failures = load_once(args)
    print(json.dumps(report, indent=2))
    if report["p99_ms"] > args.p99_limit_s * 1000 and not args.report_latency_only:
        failures.append(f"p99 {report['p99_ms']} ms over {args.p99_limit_s} s")
    for failure in failures:
        print(f"FAIL: {failure}", file=sys.stderr)
    return 1 if failures else 0


def load_once(args: argparse.Namespace, root: Path = ROOT) -> tuple[dict, list[str]]:
    """One run against a fresh gunicorn serving the ``webhook`` package under ``root``: its report, and what failed."""
    with tempfile.TemporaryDirectory(prefix="pushbuild-load-") as tmp:
        workdir = Path(tmp)
        port = free_port()
        server = start_gunicorn(workdir, port, args.workers, root=root)
        try:
            made = deliveries(args.warmup + args.deliveries)
            warm, unique = made[:args.warmup], made[args.warmup:]
            requests_to_send = [d for d in unique for _ in range(1 + args.replays)]
            workers = web_processes(server.pid)
            if args.backlog:
                queue_backlog(workdir / "data" / "state.sqlite", args.backlog)
            if warm:  # a server that has run a while: its files grown, its caches filled; not measured
                SENDERS[args.client](port, [d for d in warm for _ in range(1 + args.replays)], args.concurrency, None)
            cpu_before, began = cpu_seconds(workers), time.perf_counter()
            results = SENDERS[args.client](port, requests_to_send, args.concurrency, args.rate)
            elapsed, server_cpu_s = time.perf_counter() - began, cpu_seconds(workers) - cpu_before
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
        with sqlite3.connect(workdir / "data" / "state.sqlite") as db:
            recorded = db.execute("select count(*), count(distinct delivery_key), count(distinct sha) from builds "
                                  "where repo = 'load/test'").fetchone()
        with sqlite3.connect(workdir / "data" / "broker.sqlite") as db:
            queued = db.execute("select count(*) from kombu_message").fetchone()[0]

    latencies = sorted(latency for _, latency in results)
    codes: dict[int, int] = {}
    for code, _ in results:
        codes[code] = codes.get(code, 0) + 1
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    report = {
        "requests": len(results), "client": args.client, "rate": args.rate, "distinct_deliveries": args.deliveries,
        "warmup_deliveries": args.warmup, "backlog": args.backlog,
        "concurrency": args.concurrency, "gunicorn_workers": args.workers, "seconds": round(elapsed, 2),
        "requests_per_s": round(len(results) / elapsed, 1),
        "distinct_deliveries_per_s": round(args.deliveries / elapsed, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 1), "p99_ms": round(p99 * 1000, 1),
        "max_ms": round(latencies[-1] * 1000, 1), "status_codes": codes,
        "server_cpu_ms_per_request": round(server_cpu_s / len(results) * 1000, 2),
        "builds_recorded": recorded[0], "distinct_delivery_keys": recorded[1], "distinct_commits": recorded[2],
        "messages_queued": queued,
    }
    failures = []
    if any(code >= 500 for code in codes):
        failures.append("5xx answers")
    if codes.get(202, 0) != args.deliveries or codes.get(200, 0) != args.deliveries * args.replays:
        failures.append("not every distinct delivery was accepted once and every replay answered as a duplicate")
    if not (recorded[0] == recorded[1] == recorded[2] == args.warmup + args.deliveries == queued):
        failures.append("builds recorded, delivery keys, commits and queued messages differ")
    return report, failures


#: What --compare-with prints of each run, and which way is better.
COMPARED = (("requests_per_s", "requests/s"), ("p50_ms", "p50 ms"), ("p99_ms", "p99 ms"),
            ("server_cpu_ms_per_request", "server CPU ms/request"))


def compare(args: argparse.Namespace) -> int:
    """Run the working tree and another revision's ``webhook`` package in turn, ``--rounds`` times; print medians and ratios.

    This machine is shared and its speed drifts within minutes: only runs that alternate in
    one sitting compare. Each run must still record every delivery exactly once.
    """
    with tempfile.TemporaryDirectory(prefix="pushbuild-compare-") as tmp:
        other = Path(tmp)
        revision = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--verify", "--end-of-options",
                                   f"{args.compare_with}^{{commit}}"], check=True, capture_output=True, text=True)
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision.stdout.strip(), "webhook"],
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(other)], input=archive, check=True)
        runs: dict[str, list[dict]] = {args.compare_with: [], "this tree": []}
        failed = []
        for round_index in range(args.rounds):
            order = [(args.compare_with, other), ("this tree", ROOT)]
            for name, root in order if round_index % 2 == 0 else reversed(order):
                report, failures = load_once(args, root)
                runs[name].append(report)
                failed += [f"{name}, round {round_index + 1}: {failure}" for failure in failures]
                print(f"round {round_index + 1} {name:>12}: " + "  ".join(
                    f"{label} {report[key]}" for key, label in COMPARED), flush=True)
    print(f"\nmedians over {args.rounds} rounds, {args.deliveries} deliveries and {args.replays} replay(s) of each, "
          f"concurrency {args.concurrency}" + (f", {args.rate:g} requests/s" if args.rate else ", closed loop")
          + (f", after {args.warmup} deliveries unmeasured" if args.warmup else "")
          + (f", {args.backlog} builds of another repository queued" if args.backlog else ""))
    print(f"{'':24}{args.compare_with:>14}{'this tree':>14}{'ratio':>8}")
    for key, label in COMPARED:
        before, after = (statistics.median(r[key] for r in runs[name]) for name in runs)
        print(f"{label:24}{before:>14g}{after:>14g}{after / before:>7.2f}×")
    for failure in failed:
        print(f"FAIL: {failure}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
