"""A build's stored log: written in batches, bounded to its head and tail, read a page at a time."""

import re

import pytest

from webhook import create_app
from webhook.build.buildlog import BuildLog
from webhook.events import PushEvent
from webhook.store import BuildState, BuildStore, build_logs, create_db_engine

from .helpers.configs import repo_table
from .helpers.support import run_push, signed_in, wait_for


@pytest.fixture
def store(tmp_path):
    engine = create_db_engine(f"sqlite:///{tmp_path / 'state.sqlite'}")
    store = BuildStore(engine)
    store.create_schema()
    yield store
    engine.dispose()


def new_build(store):
    [build], _ = store.record([PushEvent(forge="github", repo="acme/app", ref="refs/heads/main", sha="a" * 40,
                                         before="0" * 40, pusher="p", delivery_id=None)])
    return build.id


def chunks(store, build_id):
    with store.db.connect() as conn:
        return conn.execute(build_logs.select().where(build_logs.c.build_id == build_id)).all()


def test_lines_are_stored_in_batches_not_a_transaction_each(store):
    """10,000 lines become a handful of chunks, and read back exactly."""
    build_id = new_build(store)
    log = BuildLog(store, build_id, flush_s=60, flush_bytes=16 * 1024)
    lines = [f"step output line {i}\n" for i in range(10_000)]
    for line in lines:
        log.write(line)
    log.close()
    assert len(chunks(store, build_id)) <= 20
    assert store.log(build_id, limit_chars=10**9)[0] == "".join(lines)


def test_waiting_text_is_stored_within_the_flush_interval(store):
    """A quiet build's last line does not wait for the next one: the background flush stores it."""
    build_id = new_build(store)
    log = BuildLog(store, build_id, flush_s=0.05)
    try:
        log.write("one line, then silence\n")
        wait_for(lambda: store.log(build_id)[0] == "one line, then silence\n", timeout_s=10, what="the flush")
    finally:
        log.close()


def test_a_log_over_its_limit_keeps_its_head_and_tail_and_says_how_much_was_cut(store):
    """Past max_bytes the middle goes; the first and the latest lines stay, with the count of bytes cut."""
    build_id = new_build(store)
    log = BuildLog(store, build_id, max_bytes=2000, flush_s=60, flush_bytes=100)
    lines = [f"line {i:05d}\n" for i in range(5000)]  # 11 bytes each, 55,000 in all
    for line in lines:
        log.write(line)
    log.close()
    text = store.log(build_id, limit_chars=10**9)[0]
    cut = int(re.search(r"\[\.\.\. (\d+) bytes of this log were cut here", text).group(1))
    head, _, tail = text.partition("[...")
    assert text.startswith("line 00000\n") and text.endswith("line 04999\n")
    kept = len(text) - len(text[text.index("\n[..."):text.index("...]\n\n") + 6])
    assert kept + cut == 55_000 and kept <= 2000
    assert len(chunks(store, build_id)) < 40


def test_a_build_run_again_adds_at_most_a_tail_to_its_log(store):
    """Text of an earlier attempt counts as the head: a further attempt stores only a tail's worth more."""
    build_id = new_build(store)
    for attempt in range(2):
        log = BuildLog(store, build_id, max_bytes=1000, flush_s=60, flush_bytes=100)
        for i in range(500):
            log.write(f"attempt {attempt} line {i:04d}\n")
        log.close()
    assert store.log_size(build_id) < 1000 + 500 + 300  # the bound, one more tail, two cut notes and a batch


def test_the_log_api_pages_and_the_pages_make_the_whole_log(make_config):
    """?limit= bounds a page; X-Log-Cursor continues it; X-Log-More says whether more is stored."""
    app = create_app(make_config(repo_table("acme/app")))
    store = app.extensions["pushbuild"].store
    build_id = new_build(store)
    for i in range(50):
        store.append_log(build_id, f"chunk {i:02d} " + "x" * 90 + "\n")
    client = signed_in(app)
    pages, after = [], 0
    while True:
        reply = client.get(f"/api/builds/{build_id}/log?after={after}&limit=1000")
        pages.append(reply.text)
        after = int(reply.headers["X-Log-Cursor"])
        if reply.headers["X-Log-More"] == "0":
            break
    assert all(len(page) <= 1000 for page in pages) and len(pages) == 5
    assert "".join(pages) == "".join(f"chunk {i:02d} " + "x" * 90 + "\n" for i in range(50))


@pytest.mark.e2e
def test_a_step_printing_200000_lines_builds_with_its_log_bounded(pipeline, repo, registry, base_image):
    """The build succeeds; its stored log is the head and tail of the output, a few hundred chunks at most."""
    services = pipeline(server={"max_log_bytes": 65536})
    sha = repo.commit({"Dockerfile": f"FROM {base_image}\nLABEL run={repo.name}\nRUN seq 1 200000 | sed 's/^/noisy /'\n"})
    finished = run_push(services, repo, sha)
    assert finished.state is BuildState.SUCCEEDED, finished.error
    text = services.store.log(finished.id, limit_chars=10**9)[0]
    assert "noisy 1\n" in text and "noisy 200000\n" in text and f"pushed {registry}/{repo.name}@" in text, text[-3000:]
    assert "bytes of this log were cut here" in text and len(text.encode()) < 65536 + 200
    assert len(text.encode()) > 65536 * 3 // 4  # the tail is not left nearly empty by dropping a big chunk
    assert len(chunks(services.store, finished.id)) < 500
