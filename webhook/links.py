"""Where a build is found: the links replies, statuses and hook messages carry. Performs no I/O.

Links start at ``server.public_url`` when it is set; otherwise at the address a request came to
(replies), or, for what a worker sends with no request at hand, at the default bind address.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from . import defaults


def base_url(public_url: str | None, request_base: str | None = None) -> str:
    """Return the base of links: the configured public URL, the request's own address, or the default bind."""
    return (public_url or request_base or f"http://{defaults.BIND}").rstrip("/")


def build_url(base: str, build_id: int) -> str:
    """The API address of one build."""
    return f"{base}/api/builds/{build_id}"


def build_links(base: str, build_id: int) -> dict[str, str]:
    """The links a build's API record carries: itself, its log, its statuses and hooks."""
    url = build_url(base, build_id)
    return {"url": url, "log_url": f"{url}/log", "deliveries_url": f"{url}/deliveries"}


def web_url(clone_url: str) -> str | None:
    """The repository's web address behind an HTTPS clone URL (no credentials, no ``.git``); ``None`` otherwise."""
    parts = urlsplit(clone_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    host = host if parts.port is None else f"{host}:{parts.port}"
    path = parts.path.rstrip("/").removesuffix(".git")
    return f"{parts.scheme}://{host}{path}"


def commit_url(clone_url: str, commit_path: str, sha: str) -> str | None:
    """A commit's page on its forge (``commit_path`` as :attr:`webhook.forges.Forge.commit_path`), if it has one."""
    base = web_url(clone_url)
    return None if base is None else base + commit_path.format(sha=sha)


def hook_url(base: str, forge: str) -> str:
    """The address a forge delivers a repository's pushes to."""
    return f"{base}/hooks/{forge}"
