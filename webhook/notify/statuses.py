"""Commit statuses: the request a forge's API documents for "this commit's image is building/built".

Performs no I/O. Each forge module (:mod:`webhook.forges`) describes its status API(s) as a
:class:`~webhook.forges.StatusApi` (path, auth header, body fields, state words); this builds
the request from one, found by the name ``[repos.status] api`` gives.
"""

from __future__ import annotations

from urllib.parse import quote

from ..forges import FAILURE, PENDING, SUCCESS, status_api
from .outbound import OutboundRequest, json_request

__all__ = ["FAILURE", "PENDING", "SUCCESS", "status_request"]


def status_request(api: str, *, api_url: str, repo: str, sha: str, state: str, target_url: str,
                   description: str, context: str, token: str) -> OutboundRequest:
    """Return the request that sets ``state`` (pending, success, failure) on ``sha`` through status API ``api``.

    An ``api`` no forge defines is :class:`~webhook.errors.UnknownForge`.
    """
    spec = status_api(api)
    ours = {"state": spec.states[state], "url": target_url, "description": description[:140], "context": context}
    path = spec.path.format(repo=quote(repo, safe="") if spec.quote_repo else repo, sha=sha)
    name, value = spec.auth
    return json_request(api_url.rstrip("/") + path, {key: ours[source] for key, source in spec.fields.items()},
                        {name: value.format(token=token), **spec.headers})
