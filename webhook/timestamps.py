"""Timestamps as pushbuild writes them everywhere (API, hook messages, image labels): RFC 3339, UTC, ``Z``."""

from __future__ import annotations

from datetime import datetime, timezone


def rfc3339(ts: float, *, whole_seconds: bool = False) -> str:
    """Format a Unix time as RFC 3339 UTC: ``2024-05-01T12:00:00.250000Z``, or ``…T12:00:00Z`` with ``whole_seconds``.

    Without ``whole_seconds`` the fraction appears only when the time has one.
    """
    moment = datetime.fromtimestamp(ts, timezone.utc)
    return moment.isoformat(timespec="seconds" if whole_seconds else "auto").replace("+00:00", "Z")


def iso_time(ts: float | None) -> str | None:
    """Format a Unix time as :func:`rfc3339` does, or pass ``None`` through (a time not reached yet)."""
    return None if ts is None else rfc3339(ts)
