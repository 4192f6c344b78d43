"""Where a build is found: the links replies, statuses and hook messages carry. Performs no I/O.

Links start at ``server.public_url`` when it is set; otherwise at the address a request came to
(replies), or, for what a worker sends with no request at hand, at the default bind address.
"""

from __future__ import annotations

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
