"""How the console words and marks what it shows: durations, ages, states. Pure: no Flask, no I/O."""

from __future__ import annotations

from dataclasses import dataclass

from ..store import BuildState


@dataclass(frozen=True)
class StateMark:
    """How a build state looks: an icon (never the only cue), its word, and a CSS class for its colour."""

    icon: str
    word: str
    css: str


STATE_MARKS = {
    BuildState.QUEUED: StateMark("◷", "queued", "queued"),
    BuildState.RUNNING: StateMark("◐", "running", "running"),
    BuildState.SUCCEEDED: StateMark("✓", "succeeded", "succeeded"),
    BuildState.FAILED: StateMark("✗", "failed", "failed"),
    BuildState.CANCELLED: StateMark("⊘", "cancelled", "cancelled"),
    BuildState.SKIPPED: StateMark("↷", "skipped", "skipped"),
}
#: Phases in the order a build goes through them, with the words the console shows.
PHASES = (("queue_wait", "waiting in the queue"), ("fetch", "fetching the commit"), ("context", "making the context"),
          ("build", "building"), ("push", "pushing"), ("notify", "statuses and hooks"))


def duration(seconds: float | None) -> str:
    """Say how long something took: ``0.42 s``, ``12 s``, ``3 min 4 s``, ``2 h 5 min``; an empty string if unknown."""
    if seconds is None:
        return ""
    seconds = max(seconds, 0.0)
    if seconds < 10:
        return f"{seconds:.2g} s" if seconds < 1 else f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    return f"{whole // 3600} h {whole % 3600 // 60} min"


def age(then: float | None, now: float) -> str:
    """Say how long ago ``then`` was: ``just now``, ``42 s ago``, ``5 min ago``, ``3 h ago``, ``2 d ago``."""
    if then is None:
        return ""
    ago = max(now - then, 0.0)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
        if ago >= size and (unit != "s" or ago >= 5):
            return f"{int(ago // size)} {unit} ago"
    return "just now"


def ref_name(ref: str) -> str:
    """A ref as people say it: ``main`` for ``refs/heads/main``, ``v1.2`` for ``refs/tags/v1.2``."""
    return ref.removeprefix("refs/heads/").removeprefix("refs/tags/")


def ref_kind(ref: str) -> str:
    """``tag`` for a tag's ref, ``branch`` otherwise."""
    return "tag" if ref.startswith("refs/tags/") else "branch"


def phases(timings: dict[str, float]) -> list[tuple[str, float, float]]:
    """Return a build's phases as ``(words, seconds, share of the whole)``, in the order they ran."""
    known = [(words, timings[name]) for name, words in PHASES if name in timings]
    total = sum(seconds for _words, seconds in known) or 1.0
    return [(words, seconds, seconds / total) for words, seconds in known]
