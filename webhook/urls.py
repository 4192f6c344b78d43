"""Which clone URLs pushbuild will fetch from. Performs no I/O.

Only configured URLs are ever fetched (a payload's URL is attacker-controlled). Even those
are checked: git's ``ext::`` transport runs commands, and a leading ``-`` reads as an option.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

#: Transports allowed without opting in; ``file`` needs ``allow_file_urls``.
NETWORK_SCHEMES = ("https", "http", "ssh")
_SCP_LIKE = re.compile(r"[A-Za-z0-9_.-]+@[A-Za-z0-9_.-]+:[^:]")


def clone_url_problem(url: object, *, allow_file: bool = False) -> str | None:
    """Return why ``url`` may not be cloned from, or ``None`` if it is acceptable."""
    if not isinstance(url, str) or not url:
        return "must be a non-empty string"
    if url.startswith("-"):
        return "must not start with '-'"
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        return "must not contain spaces or control characters"
    if "::" in url.split("/", 1)[0]:
        return "must not use a git remote helper (such as ext::)"
    if _SCP_LIKE.match(url):
        return None  # git@host:owner/repo.git is ssh
    parts = urlsplit(url)
    allowed = NETWORK_SCHEMES + (("file",) if allow_file else ())
    if parts.scheme not in allowed:
        hint = " (file:// needs allow_file_urls = true)" if parts.scheme == "file" else ""
        return f"scheme must be one of {', '.join(allowed)}{hint}"
    if parts.scheme != "file" and not parts.hostname:
        return "must name a host"
    if parts.scheme in ("https", "http") and "@" in parts.netloc:
        # A user part is where tokens go (https://ghp_xxx@github.com/...), and git's argv shows it
        # in the process list; ssh's user part (git@) is no secret and stays allowed.
        return ("must not contain a user name, password or token; give the token through git_token_env "
                "(and the user name through git_username)")
    if parts.password is not None:
        return "must not contain a password or token; give it through the environment"
    return None


def redacted_url(url: str) -> str:
    """Return ``url`` without any user information, for logs and labels."""
    parts = urlsplit(url)
    if parts.scheme and "@" in parts.netloc:
        return parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]).geturl()
    return url
