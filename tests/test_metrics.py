"""/metrics: counts every process adds to the database in batches, read back in the Prometheus text format."""

import json
import time

import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from webhook.events import PushEvent
from webhook.metrics import DELIVERIES, Metrics, Series, scrape
from webhook.store import BuildState, BuildStore, create_db_engine

from .helpers.configs import GITHUB_SECRET
from .helpers.support import (
    API_REPO,
    OPERATE_TOKEN,
    all_at_once,
    bearer,
    finish,
    github_headers,
    github_push,
    record,
    signed_in,
    writes,
)

METRICS_TOKEN = "test-metrics-token-4f1a9c7e2b8d5a3c6e0f"
SHA = "6113728f27ae82c7b1a177c8d03f9e96e0adf246"


def samples(text):
    """The exposition's samples as {(name, sorted label pairs): value}; it must parse."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def scraped(metrics, db):
    """What a scrape through ``metrics`` answers, as samples."""
    from prometheus_client import CollectorRegistry, generate_latest

    from webhook.web.metrics import _Scraped

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Scraped(scrape(metrics, BuildStore(db))))
    return samples(generate_latest(registry).decode())


def delivered(forge, outcome):
    return ("pushbuild_deliveries_total", (("forge", forge), ("outcome", outcome)))


def test_counts_made_in_two_processes_are_both_in_the_scrape(db):
    """Two processes (each its own Metrics, as each process makes) count; a scrape in either sees the sum."""
    web, worker = Metrics(db, flush_every_s=3600), Metrics(db, flush_every_s=3600)
    web.delivery("github", "accepted")
    worker.delivery("github", "accepted")
    worker.push_retried()
    worker.flush()  # the worker's periodic flush; the web process flushes its own before answering
    found = scraped(web, db)
    assert found[delivered("github", "accepted")] == 2
    assert found[("pushbuild_push_retries_total", ())] == 1


def test_processes_flushing_the_same_series_at_once_lose_no_count(db):
    """Eight processes adding to the same rows, none of which exists yet, at the same moment: every count lands."""
    processes = [Metrics(db, flush_every_s=3600) for _ in range(8)]
    for metrics in processes:
        for _ in range(5):
            metrics.delivery("gitlab", "refused_signature")
        metrics.notification("hook", "delivered")
    _, failures = all_at_once(lambda metrics: metrics.flush(), processes)
    assert failures == []
    found = scraped(Metrics(db), db)
    assert found[delivered("gitlab", "refused_signature")] == 40
    assert found[("pushbuild_notifications_total", (("kind", "hook"), ("outcome", "delivered")))] == 8


def test_every_declared_series_is_listed_at_zero_and_gauges_come_from_the_records(db):
    """A fresh install lists every forge and outcome at 0 (rate() works from the start) and an empty queue."""
    found = scraped(Metrics(db), db)
    assert found[delivered("bitbucket", "too_large")] == 0
    assert found[("pushbuild_queue_depth", ())] == 0
    assert found[("pushbuild_queue_oldest_age_seconds", ())] == 0
    assert found[("pushbuild_builds", (("state", "queued"),))] == 0


def test_phase_durations_are_a_histogram_of_finished_builds(db):
    """Two builds' phases land in their buckets; buckets are cumulative, with a count and a sum per phase."""
    metrics = Metrics(db, flush_every_s=3600)
    metrics.phases({"queue_wait": 0.05, "fetch": 0.3, "build": 40.0, "push": 2.0})
    metrics.phases({"queue_wait": 0.2, "fetch": 7.0})
    found = scraped(metrics, db)
    bucket = "pushbuild_phase_duration_seconds_bucket"
    assert found[(bucket, (("le", "0.1"), ("phase", "queue_wait")))] == 1
    assert found[(bucket, (("le", "0.25"), ("phase", "queue_wait")))] == 2
    assert found[(bucket, (("le", "30.0"), ("phase", "build")))] == 0
    assert found[(bucket, (("le", "60.0"), ("phase", "build")))] == 1
    assert found[(bucket, (("le", "+Inf"), ("phase", "fetch")))] == 2
    assert found[("pushbuild_phase_duration_seconds_count", (("phase", "fetch"),))] == 2
    assert found[("pushbuild_phase_duration_seconds_sum", (("phase", "fetch"),))] == pytest.approx(7.3)
    assert found[("pushbuild_phase_duration_seconds_count", (("phase", "context"),))] == 0


def test_every_way_a_build_ends_is_counted_once(db):
    """Finished by its worker, failed by the reconciler, cancelled queued or running: each counted once, by how."""
    metrics = Metrics(db, flush_every_s=3600)
    store = BuildStore(db, ended=metrics.build_ended)
    events = [PushEvent(forge="github", repo="acme/app", ref="refs/heads/main", sha=f"{n:040x}", before="0" * 40,
                        pusher="p", delivery_id=None) for n in range(4)]
    finished, gave_up, cancelled_queued, cancelled_running = store.record(events)[0]
    for build in (finished, cancelled_running):
        store.claim(build.id, owner="w", lease_s=60)
    assert store.finish(finished.id, BuildState.SUCCEEDED, owner="w")
    assert store.fail(gave_up.id, "gave up") and not store.fail(gave_up.id, "again")
    assert store.cancel(cancelled_queued.id, "superseded") and store.cancel(cancelled_running.id, "by x", running=True)
    assert not store.finish(cancelled_running.id, BuildState.FAILED, owner="w", timings={"fetch": 0.5})
    assert store.get(cancelled_running.id).timings == {"fetch": 0.5}  # what the run did before it stopped
    found = scraped(metrics, db)
    ended = {state: found[("pushbuild_builds_finished_total", (("state", state),))]
             for state in ("succeeded", "failed", "cancelled", "skipped")}
    assert ended == {"succeeded": 1, "failed": 1, "cancelled": 2, "skipped": 0}


def test_a_label_value_not_declared_is_a_defect_and_an_unknown_forge_is_other(db):
    """Label values come from fixed sets: nothing a client sends makes a new series."""
    with pytest.raises(ValueError):
        DELIVERIES.key({"forge": "github", "outcome": "weird"})
    with pytest.raises(ValueError):
        Series("x", "x", {"a": ("b",)}).key({"a": "b", "extra": "c"})
    metrics = Metrics(db, flush_every_s=3600)
    metrics.delivery("../../etc", "unknown_forge")
    assert scraped(metrics, db)[delivered("other", "unknown_forge")] == 1


def test_counts_wait_in_memory_until_the_flush(db):
    """Counting writes nothing; the flush writes every pending count in one transaction, then nothing is pending."""
    metrics = Metrics(db, flush_every_s=3600)
    with writes(db) as statements:
        for _ in range(100):
            metrics.delivery("github", "refused_signature")
    assert statements == []
    with writes(db) as statements:
        metrics.flush()
        metrics.flush()
    assert len(statements) == 1


def test_a_failed_flush_keeps_its_counts_for_the_next(db, tmp_path):
    """A database that is unwell delays the counts; it does not lose them."""
    metrics = Metrics(db, flush_every_s=3600)
    metrics.delivery("gitea", "accepted")
    real, metrics.db = metrics.db, create_db_engine(f"sqlite:///{tmp_path / 'missing' / 'x.sqlite'}")
    with pytest.raises(sa.exc.OperationalError):
        metrics.flush()
    metrics.db = real
    assert scraped(metrics, db)[delivered("gitea", "accepted")] == 1


def test_the_flusher_thread_writes_counts_without_being_asked(db):
    """A worker never scraped still gets its counts stored, every flush_every_s."""
    metrics = Metrics(db, flush_every_s=0.05)
    metrics.push_retried()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not _stored_rows(db):
        time.sleep(0.05)
    assert _stored_rows(db) == [("pushbuild_push_retries", "{}", 1.0)]


def _stored_rows(db):
    with db.connect() as conn:
        return [tuple(row) for row in conn.execute(sa.text("SELECT name, labels, value FROM metric_counts"))]


# --- the endpoint ---------------------------------------------------------------


@pytest.fixture
def metrics_app(make_config):
    from webhook import create_app

    from .helpers.configs import repo_table
    from .helpers.support import AUTH_TABLE

    config = make_config(repo_table(API_REPO), env={"TEST_METRICS_TOKEN": METRICS_TOKEN}, auth={
        "tokens": [*AUTH_TABLE["tokens"], {"name": "prometheus", "token_env": "TEST_METRICS_TOKEN", "scope": "metrics"}]})
    return create_app(config)


def test_a_metrics_token_reads_metrics_and_nothing_else(metrics_app):
    """The metrics scope is below read: /metrics answers it, the API refuses it (403); no token is 401."""
    scraper = metrics_app.test_client()
    answer = scraper.get("/metrics", headers=bearer(METRICS_TOKEN))
    assert answer.status_code == 200
    assert answer.content_type.startswith("text/plain; version=0.0.4")
    assert scraper.get("/api/builds", headers=bearer(METRICS_TOKEN)).status_code == 403
    assert scraper.get("/metrics").status_code == 401
    assert scraper.get("/metrics", headers=bearer()).status_code == 200
    assert scraper.get("/metrics", headers=bearer(OPERATE_TOKEN)).status_code == 200


def test_a_flood_of_badly_signed_deliveries_is_counted_without_a_write_each(metrics_app):
    """Fifty refused deliveries: counted in memory, noted once as the repository's last delivery; the scrape has all fifty."""
    client = signed_in(metrics_app)
    db = metrics_app.extensions["pushbuild"].store.db
    body = json.dumps(github_push(repo=API_REPO, sha=SHA)).encode()
    started = time.monotonic()
    with writes(db) as statements:
        for _ in range(50):
            assert client.post("/hooks/github", data=body, headers=github_headers(body, "wrong secret")).status_code == 401
    elapsed = time.monotonic() - started
    # At most: a last-delivery note each second, and a metrics flush each 2 s, whatever the number of deliveries.
    assert len(statements) <= 2 * (elapsed + 1), statements
    found = samples(client.get("/metrics").data.decode())
    assert found[delivered("github", "refused_signature")] == 50


def test_deliveries_builds_and_the_queue_are_in_the_scrape(metrics_app):
    """An accepted delivery, a duplicate, an unknown forge; a finished build and a queued one."""
    client = signed_in(metrics_app)
    body = json.dumps(github_push(repo=API_REPO, sha=SHA)).encode()
    headers = github_headers(body, GITHUB_SECRET)
    assert client.post("/hooks/github", data=body, headers=headers).status_code == 202
    assert client.post("/hooks/github", data=body, headers=headers).status_code == 200
    assert client.post("/hooks/nonsense", data=b"{}", headers={"Content-Type": "application/json"}).status_code == 404
    finish(metrics_app, record(metrics_app, sha="c" * 40))
    found = samples(client.get("/metrics").data.decode())
    assert found[delivered("github", "accepted")] == found[delivered("github", "duplicate")] == 1
    assert found[delivered("other", "unknown_forge")] == 1
    assert found[("pushbuild_queue_depth", ())] == 1
    assert found[("pushbuild_builds", (("state", "succeeded"),))] == 1
    assert found[("pushbuild_queue_oldest_age_seconds", ())] >= 0
