"""Retrying: exponential backoff with jitter, and the loop that waits between attempts."""

import random

import pytest

from webhook.errors import RegistryError
from webhook.retrying import backoff_s, retry


@pytest.mark.parametrize("attempt, low, high", [(1, 5, 10), (2, 10, 20), (3, 20, 40), (4, 30, 60), (9, 30, 60)])
def test_the_wait_doubles_each_attempt_up_to_the_cap_with_half_of_it_jitter(attempt, low, high):
    """Half to all of base × 2^(attempt-1), capped: base 10s, cap 60s."""
    waits = [backoff_s(attempt, base_s=10, max_s=60, rng=random.Random(seed)) for seed in range(50)]
    assert all(low <= wait <= high for wait in waits)
    assert len(set(waits)) > 1, "jittered"


def test_a_seeded_generator_repeats_its_waits():
    """Tests (and the notifier's) pass their own generator, so the waits are reproducible."""
    assert backoff_s(3, base_s=1, max_s=60, rng=random.Random(7)) == backoff_s(3, base_s=1, max_s=60, rng=random.Random(7))


def test_retryable_failures_are_retried_until_an_attempt_succeeds():
    """Each retry is preceded by before_retry with the failure and the number of the attempt that failed."""
    waited = []

    def attempt(number):
        if number < 3:
            raise RegistryError(f"503 on attempt {number}", temporary=True)
        return f"done on attempt {number}"

    assert retry(attempt, attempts=5, retry_on=RegistryError, retryable=lambda exc: exc.temporary,
                 before_retry=lambda exc, number: waited.append((exc.message, number))) == "done on attempt 3"
    assert waited == [("503 on attempt 1", 1), ("503 on attempt 2", 2)]


def test_a_failure_not_worth_retrying_ends_at_once():
    """A refusal propagates from its first attempt, without a wait."""
    waited = []

    def attempt(number):
        raise RegistryError("denied", temporary=False)

    with pytest.raises(RegistryError, match="^denied$"):
        retry(attempt, attempts=5, retry_on=RegistryError, retryable=lambda exc: exc.temporary,
              before_retry=lambda exc, number: waited.append(number))
    assert waited == []


def test_the_last_attempts_failure_is_what_give_up_makes_of_it():
    """Out of attempts: give_up sees the failure and how many attempts were made, and its error is raised."""
    calls = []

    def attempt(number):
        calls.append(number)
        raise RegistryError("503", temporary=True)

    with pytest.raises(RegistryError, match=r"^503 \(after 3 attempts\)$") as raised:
        retry(attempt, attempts=3, retry_on=RegistryError, retryable=lambda exc: exc.temporary,
              before_retry=lambda exc, number: None,
              give_up=lambda exc, number: RegistryError(f"{exc.message} (after {number} attempts)", temporary=True))
    assert calls == [1, 2, 3] and raised.value.temporary


def test_other_exceptions_are_not_retried():
    """Only ``retry_on`` failures are considered: anything else propagates from the attempt that raised it."""
    calls = []

    def attempt(number):
        calls.append(number)
        raise KeyError("defect")

    with pytest.raises(KeyError):
        retry(attempt, attempts=3, retry_on=RegistryError, retryable=lambda exc: True, before_retry=lambda exc, n: None)
    assert calls == [1]
