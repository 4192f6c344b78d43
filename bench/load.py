"""Load test of the webhook receiver: N signed deliveries from C concurrent clients to gunicorn.

    ./dev bench --deliveries 5000 --concurrency 50     (or .venv/bin/python bench/load.py …)

Checks, on loopback only: no 5xx; every distinct delivery recorded exactly once (replays
answered as duplicates); as many builds as distinct commits; p99 latency under 1 s (the
forges give up after 10 s). Runs gunicorn on the embedded defaults (SQLite state and broker)
with no worker, so only the receiving side is measured. Stops what it starts.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
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


def start_gunicorn(workdir: Path, port: int, workers: int) -> subprocess.Popen:
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
                                "--bind", f"127.0.0.1:{port}", "--access-logfile", "/dev/null", "webhook:create_app()"],
                               env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return process
        except requests.ConnectionError:
            time.sleep(0.1)
    raise SystemExit(f"gunicorn did not start:\n{(workdir / 'gunicorn.log').read_text()}")


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=2000, help="distinct deliveries (each a new commit)")
    parser.add_argument("--replays", type=int, default=1, help="extra copies of each delivery, sent too")
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--workers", type=int, default=1, help="gunicorn workers")
    parser.add_argument("--p99-limit-s", type=float, default=1.0)
    parser.add_argument("--report-latency-only", action="store_true", help="report p99 without failing on it (CI)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="pushbuild-load-") as tmp:
        workdir = Path(tmp)
        port = free_port()
        server = start_gunicorn(workdir, port, args.workers)
        try:
            unique = deliveries(args.deliveries)
            requests_to_send = [d for d in unique for _ in range(1 + args.replays)]
            local = threading.local()

            def send(delivery: tuple[bytes, dict[str, str]]) -> tuple[int, float]:
                session = getattr(local, "session", None) or requests.Session()
                local.session = session
                started = time.perf_counter()
                response = session.post(f"http://127.0.0.1:{port}/hooks/github", data=delivery[0],
                                        headers=delivery[1], timeout=30)
                return response.status_code, time.perf_counter() - started

            began = time.perf_counter()
            with concurrent.futures.ThreadPoolExecutor(args.concurrency) as pool:
                results = list(pool.map(send, requests_to_send))
            elapsed = time.perf_counter() - began
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
        with sqlite3.connect(workdir / "data" / "state.sqlite") as db:
            recorded = db.execute("select count(*), count(distinct delivery_key), count(distinct sha) from builds").fetchone()
        with sqlite3.connect(workdir / "data" / "broker.sqlite") as db:
            queued = db.execute("select count(*) from kombu_message").fetchone()[0]

    latencies = sorted(latency for _, latency in results)
    codes: dict[int, int] = {}
    for code, _ in results:
        codes[code] = codes.get(code, 0) + 1
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    report = {
        "requests": len(results), "distinct_deliveries": args.deliveries, "concurrency": args.concurrency,
        "gunicorn_workers": args.workers, "seconds": round(elapsed, 2), "requests_per_s": round(len(results) / elapsed, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 1), "p99_ms": round(p99 * 1000, 1),
        "max_ms": round(latencies[-1] * 1000, 1), "status_codes": codes,
        "builds_recorded": recorded[0], "distinct_delivery_keys": recorded[1], "distinct_commits": recorded[2],
        "messages_queued": queued,
    }
    print(json.dumps(report, indent=2))
    failures = []
    if any(code >= 500 for code in codes):
        failures.append("5xx answers")
    if codes.get(202, 0) != args.deliveries or codes.get(200, 0) != args.deliveries * args.replays:
        failures.append("not every distinct delivery was accepted once and every replay answered as a duplicate")
    if not (recorded[0] == recorded[1] == recorded[2] == args.deliveries == queued):
        failures.append("builds recorded, delivery keys, commits and queued messages differ")
    if p99 > args.p99_limit_s and not args.report_latency_only:
        failures.append(f"p99 {p99:.3f}s over {args.p99_limit_s}s")
    for failure in failures:
        print(f"FAIL: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
