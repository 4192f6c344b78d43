"""Retrying what fails for a while: exponential backoff with jitter, and the loop that waits between attempts."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
E = TypeVar("E", bound=BaseException)


def backoff_s(attempt: int, *, base_s: float, max_s: float, rng: random.Random | None = None) -> float:
    """The wait after failed attempt number ``attempt`` (from 1): half to all of base × 2^(attempt-1), capped at ``max_s``.

    The jitter keeps workers that failed together from all trying again at the same moment.
    """
    return min(max_s, base_s * 2 ** (attempt - 1)) * (rng or random).uniform(0.5, 1.0)


def retry(attempt: Callable[[int], T], *, attempts: int, retry_on: type[E], retryable: Callable[[E], bool],
          before_retry: Callable[[E, int], None],
          give_up: Callable[[E, int], BaseException] | None = None) -> T:
    """Call ``attempt(number)`` for number 1, 2, … up to ``attempts`` until it returns, and return what it returned.

    A ``retry_on`` failure that ``retryable`` accepts is followed by ``before_retry(exc, number)``
    (say so, wait) and the next attempt. One it refuses, or the last attempt's, ends the retries:
    it propagates, or what ``give_up(exc, number)`` makes of it does. Any other exception
    propagates at once.
    """
    for number in range(1, attempts + 1):
        try:
            return attempt(number)
        except retry_on as exc:
            if not retryable(exc) or number == attempts:
                if give_up is None:
                    raise
                raise give_up(exc, number) from exc
            before_retry(exc, number)
    raise ValueError(f"attempts must be at least 1, not {attempts}")
