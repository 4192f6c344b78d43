"""Timestamps as pushbuild writes them everywhere (API, hook messages, logs): RFC 3339, UTC, ``Z``."""

from __future__ import annotations

from datetime import datetime, timezone


def rfc3339(ts: float) -> str:
    """Format a Unix time as RFC 3339 UTC: ``2024-05-01T12:00:00.250000Z``; the fraction appears only when the time has one."""
    return datetime.fromtimestamp(ts, timezone.utc).isoformat().replace("+00:00", "Z")


def iso_time(ts: float | None) -> str | None:
    """Format a Unix time as :func:`rfc3339` does, or pass ``None`` through (a time not reached yet)."""
    return None if ts is None else rfc3339(ts)
