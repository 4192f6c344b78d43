"""How the console words durations, ages, refs and phases."""

import pytest

from webhook.store import BuildState
from webhook.web.present import STATE_MARKS, age, duration, phases, ref_kind, ref_name


@pytest.mark.parametrize(("seconds", "said"), [
    (None, ""), (0.4213, "0.42 s"), (3.21, "3.2 s"), (12.4, "12 s"), (184, "3 min 4 s"), (7500, "2 h 5 min"), (-1, "0 s"),
])
def test_durations(seconds, said):
    assert duration(seconds) == said


@pytest.mark.parametrize(("ago", "said"), [(0, "just now"), (4, "just now"), (42, "42 s ago"), (600, "10 min ago"),
                                           (7200, "2 h ago"), (3 * 86400, "3 d ago"), (-30, "just now")])
def test_ages(ago, said):
    assert age(1000.0 - ago, 1000.0) == said


def test_refs_as_people_say_them():
    assert (ref_name("refs/heads/main"), ref_kind("refs/heads/main")) == ("main", "branch")
    assert (ref_name("refs/tags/v1.2"), ref_kind("refs/tags/v1.2")) == ("v1.2", "tag")


def test_phases_in_the_order_builds_run_them_with_their_share():
    shown = phases({"push": 1.0, "fetch": 1.0, "build": 2.0})
    assert shown == [("fetching the commit", 1.0, 0.25), ("building", 2.0, 0.5), ("pushing", 1.0, 0.25)]
    assert phases({}) == []


def test_every_state_has_an_icon_and_a_word_not_only_a_colour():
    assert {mark.word for mark in STATE_MARKS.values()} == {state.value for state in BuildState}
    assert len({mark.icon for mark in STATE_MARKS.values()}) == len(BuildState)
