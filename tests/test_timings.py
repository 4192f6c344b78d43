"""Phase timings: how long each phase of a build took, kept on the record and said at the end of its log."""

import pytest

from webhook.build.timings import BUILD, CONTEXT, FETCH, PUSH, QUEUE_WAIT, PhaseTimer, queue_wait_s, summary


@pytest.fixture
def timer(clock):
    return PhaseTimer(clock=clock)


def test_phases_are_kept_in_the_order_they_first_ran_and_a_repeated_phase_adds_up(timer, clock):
    """A phase that runs twice (the engine restarted) counts both runs; the order is the order they began."""
    for phase, seconds in [(FETCH, 0.5), (BUILD, 2.0), (PUSH, 1.0), (BUILD, 3.0)]:
        with timer.phase(phase):
            clock.now += seconds
    assert timer.seconds == {FETCH: 0.5, BUILD: 5.0, PUSH: 1.0}


def test_a_phase_that_fails_still_counts_until_it_failed(timer, clock):
    """A fetch that raises after 2 s is a 2 s fetch."""
    with pytest.raises(RuntimeError), timer.phase(FETCH):
        clock.now += 2.0
        raise RuntimeError("git failed")
    assert timer.seconds == {FETCH: 2.0}


def test_the_context_streamed_during_the_build_counts_as_context_and_its_bytes_are_counted(timer, clock):
    """Streaming the tar takes 1.5 s of a 4 s engine build: 1.5 s context, 2.5 s build, and the stream's size."""

    def chunks():
        for chunk in (b"a" * 512, b"", b"b" * 1024):
            clock.now += 0.5
            yield chunk

    with timer.phase(BUILD, besides=CONTEXT):
        assert b"".join(timer.context(chunks())) == b"a" * 512 + b"b" * 1024
        clock.now += 2.5
    assert timer.seconds == {CONTEXT: 1.5, BUILD: 2.5}
    assert timer.context_bytes == 1536


def test_an_unknown_phase_is_a_defect(timer):
    """Only the documented phases exist: metrics declare exactly those."""
    with pytest.raises(ValueError):
        timer.add("coffee", 1.0)


@pytest.mark.parametrize(("queued_at", "started_at", "expected"), [
    (100.0, 102.5, 2.5), (100.0, 99.0, 0.0), (None, 102.0, None), (100.0, None, None),
])
def test_queue_wait_runs_from_queued_to_started(queued_at, started_at, expected):
    assert queue_wait_s(queued_at, started_at) == expected


@pytest.mark.parametrize(("seconds", "line"), [
    ({QUEUE_WAIT: 0.5, FETCH: 0.44, CONTEXT: 0.1, BUILD: 2.1, PUSH: 0.6},
     "--- took 3.2 s (queued 0.5 s): fetch 0.4 s, context 0.1 s, build 2.1 s, push 0.6 s ---\n"),
    ({FETCH: 1.0}, "--- took 1.0 s: fetch 1.0 s ---\n"),
    ({}, "--- took 0.0 s ---\n"),
])
def test_the_log_ends_with_one_line_of_phase_times(seconds, line):
    assert summary(seconds) == line

