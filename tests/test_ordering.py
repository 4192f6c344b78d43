"""Telling the newer of two pushes to a branch, even when they arrive out of order."""

from dataclasses import dataclass

import pytest

from webhook.ordering import is_newer, superseded


@dataclass
class P:
    id: int
    sha: str
    before: str | None


A, B, C = "a" * 40, "b" * 40, "c" * 40


def test_linked_pushes_order_by_their_before_links_not_arrival():
    """B replaced A: B is newer even though it arrived first."""
    b, a = P(1, B, A), P(2, A, "0" * 40)
    assert is_newer(b, a, [a, b]) and not is_newer(a, b, [a, b])


def test_links_are_followed_through_intermediate_pushes():
    """C replaced B which replaced A: C is newer than A."""
    pushes = [P(3, C, B), P(1, A, None), P(2, B, A)]
    assert is_newer(pushes[0], pushes[1], pushes) and not is_newer(pushes[1], pushes[0], pushes)


def test_unlinked_pushes_fall_back_to_arrival_order():
    """A force-push breaks the chain: the later accepted push wins."""
    x, y = P(1, A, "f" * 40), P(2, B, "e" * 40)
    assert is_newer(y, x, [x, y]) and not is_newer(x, y, [x, y])


def test_the_same_commit_is_not_newer_than_itself():
    """Two pushes of one commit are the same state of the branch."""
    assert not is_newer(P(2, A, B), P(1, A, B), [])


def test_cycles_in_before_links_end():
    """Malformed links (a cycle) do not loop forever."""
    x, y = P(1, A, B), P(2, B, A)
    assert is_newer(x, y, [x, y]) is True  # and it returned: the walk stops at a commit seen before


def _unread():
    raise AssertionError("the branch's pushes were read")


def test_a_push_replaces_the_queued_build_of_the_commit_it_names_without_reading_more():
    """B names A as the commit it replaced: A's queued build is superseded, and no other push is looked at."""
    assert superseded(P(2, B, A), [P(1, A, "0" * 40)], _unread, followed=_unread) == [P(1, A, "0" * 40)]
    assert superseded(P(2, B, A), [P(2, B, A), P(3, B, C)], _unread, followed=_unread) == []  # itself, its own commit


def test_a_push_no_push_followed_replaces_the_queued_builds_accepted_before_it_without_reading_more():
    """A force-push (B from a commit never built): nothing names B as replaced, so nothing queued before it is newer."""
    waiting = [P(1, A, "0" * 40), P(2, C, "e" * 40)]
    assert superseded(P(3, B, "f" * 40), waiting, _unread, followed=lambda: False) == waiting


def test_a_queued_build_accepted_after_the_push_is_judged_by_the_branchs_pushes():
    """Even when nothing followed the push, a waiting build accepted after it is judged by reading the pushes."""
    pushes = [P(1, B, "f" * 40), P(2, A, "0" * 40)]
    assert superseded(P(1, B, "f" * 40), [P(2, A, "0" * 40)], lambda: pushes, followed=lambda: False) == []


@pytest.mark.parametrize("waiting, replaced", [
    ([P(1, A, None)], [P(1, A, None)]),  # C replaced B, which replaced A
    ([P(4, "d" * 40, C)], []),  # D was pushed after C: a later push, delivered first
])
def test_other_queued_builds_are_judged_by_the_branchs_pushes(waiting, replaced):
    """A queued build that is not the commit the new push names is judged by following the links."""
    pushes = [P(1, A, None), P(2, B, A), P(4, "d" * 40, C)]
    assert superseded(P(3, C, B), waiting, lambda: pushes, followed=lambda: True) == replaced


def test_a_push_that_a_later_push_followed_is_not_newer_than_it():
    """D followed C (named it as replaced) and was accepted first: C, delivered late, does not cancel D."""
    pushes = [P(1, "d" * 40, C), P(2, C, B)]
    assert superseded(P(2, C, B), [P(1, "d" * 40, C)], lambda: pushes, followed=lambda: True) == []
