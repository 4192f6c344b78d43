"""Timestamps: RFC 3339 in UTC with a ``Z``, as the API, hook messages and logs write them."""

from webhook.timestamps import iso_time, rfc3339


def test_times_are_utc_with_a_fraction_only_when_they_have_one():
    """The API and hook messages keep sub-second precision; a whole second has no fraction."""
    assert rfc3339(1714564800.25) == "2024-05-01T12:00:00.250000Z"
    assert rfc3339(1714564800) == "2024-05-01T12:00:00Z"


def test_a_time_not_reached_yet_stays_none():
    """A build not started or finished shows null, not 1970."""
    assert iso_time(None) is None and iso_time(0) == "1970-01-01T00:00:00Z"
