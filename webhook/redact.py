"""Making text safe to log, store or show: secret values removed, control characters escaped. Performs no I/O."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable

MASK = "***"
_CONTROLS = "".join(map(chr, (*range(0x00, 0x20), *range(0x7F, 0xA0))))


@functools.lru_cache(maxsize=16)
def _controls_but(keep: str) -> re.Pattern[str]:
    """The control characters not in ``keep``, as one character class (so a kept newline costs no call)."""
    escaped = "".join(c for c in _CONTROLS if c not in keep)
    return re.compile(f"[{re.escape(escaped)}]" if escaped else "(?!)")


def printable(text: str, *, keep: str = "") -> str:
    """Return ``text`` with control characters (but those in ``keep``) written as ``\\xNN``.

    For a log file, whose lines a ``\n`` could forge, or a terminal, which an escape sequence
    in a pusher's build output could drive.
    """
    return _controls_but(keep).sub(lambda m: f"\\x{ord(m.group()):02x}", text)


class Redactor:
    """Replaces every known secret value in a text with ``***``."""

    def __init__(self, secrets: Iterable[str]) -> None:
        # Longest first, so a secret containing another is masked whole.
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        """Return ``text`` with every secret masked."""
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text
