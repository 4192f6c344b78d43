"""Commit statuses: the request each forge's API documents for "this commit's image is building/built".

Performs no I/O. Request shapes, per forge:

- GitHub: ``POST {api}/repos/{owner}/{repo}/statuses/{sha}``, ``Authorization: Bearer``,
  ``{"state", "target_url", "description", "context"}`` (docs.github.com, "Create a commit status").
- GitLab: ``POST {api}/projects/{url-encoded path}/statuses/{sha}``, ``PRIVATE-TOKEN``,
  ``{"state", "name", "target_url", "description"}`` (docs.gitlab.com, Commits API).
- Gitea/Forgejo: ``POST {api}/repos/{owner}/{repo}/statuses/{sha}``, ``Authorization: token``,
  ``{"state", "target_url", "description", "context"}`` (Gitea API, CreateStatusOption).
- Bitbucket Cloud: ``POST {api}/repositories/{workspace}/{slug}/commit/{sha}/statuses/build``,
  ``Authorization: Bearer``, ``{"key", "state", "url", "name", "description"}``.
- Bitbucket Data Center: ``POST {base}/rest/build-status/1.0/commits/{sha}``, ``Authorization:
  Bearer`` (an HTTP access token), ``{"state", "key", "name", "url", "description"}``.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote

from .outbound import OutboundRequest, json_request

PENDING, SUCCESS, FAILURE = "pending", "success", "failure"

DEFAULT_API_URLS = {
    "github": "https://api.github.com",
    "gitlab": "https://gitlab.com/api/v4",
    "bitbucket": "https://api.bitbucket.org/2.0",
}

_STATES = {
    "github": {PENDING: "pending", SUCCESS: "success", FAILURE: "failure"},
    "gitlab": {PENDING: "running", SUCCESS: "success", FAILURE: "failed"},
    "gitea": {PENDING: "pending", SUCCESS: "success", FAILURE: "failure"},
    "bitbucket": {PENDING: "INPROGRESS", SUCCESS: "SUCCESSFUL", FAILURE: "FAILED"},
    "bitbucket-datacenter": {PENDING: "INPROGRESS", SUCCESS: "SUCCESSFUL", FAILURE: "FAILED"},
}


def _github(api: str, repo: str, sha: str, state: str, url: str, description: str, context: str,
            token: str) -> OutboundRequest:
    return json_request(
        f"{api}/repos/{repo}/statuses/{sha}",
        {"state": state, "target_url": url, "description": description, "context": context},
        {"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json",
         "X-GitHub-Api-Version": "2022-11-28"},
    )


def _gitlab(api: str, repo: str, sha: str, state: str, url: str, description: str, context: str,
            token: str) -> OutboundRequest:
    return json_request(
        f"{api}/projects/{quote(repo, safe='')}/statuses/{sha}",
        {"state": state, "name": context, "target_url": url, "description": description},
        {"PRIVATE-TOKEN": token},
    )


def _gitea(api: str, repo: str, sha: str, state: str, url: str, description: str, context: str,
           token: str) -> OutboundRequest:
    return json_request(
        f"{api}/repos/{repo}/statuses/{sha}",
        {"state": state, "target_url": url, "description": description, "context": context},
        {"Authorization": f"token {token}"},
    )


def _bitbucket(api: str, repo: str, sha: str, state: str, url: str, description: str, context: str,
               token: str) -> OutboundRequest:
    return json_request(
        f"{api}/repositories/{repo}/commit/{sha}/statuses/build",
        {"key": context, "state": state, "url": url, "name": context, "description": description},
        {"Authorization": f"Bearer {token}"},
    )


def _bitbucket_datacenter(api: str, repo: str, sha: str, state: str, url: str, description: str, context: str,
                          token: str) -> OutboundRequest:
    return json_request(
        f"{api}/rest/build-status/1.0/commits/{sha}",
        {"state": state, "key": context, "name": context, "url": url, "description": description},
        {"Authorization": f"Bearer {token}"},
    )


_BUILDERS: dict[str, Callable[..., OutboundRequest]] = {
    "github": _github, "gitlab": _gitlab, "gitea": _gitea, "bitbucket": _bitbucket,
    "bitbucket-datacenter": _bitbucket_datacenter,
}
#: The status APIs there are, by the forge a repository is on; the first is the default.
STATUS_APIS = {"github": ("github",), "gitlab": ("gitlab",), "gitea": ("gitea",),
               "bitbucket": ("bitbucket", "bitbucket-datacenter")}


def status_request(api: str, *, api_url: str, repo: str, sha: str, state: str, target_url: str,
                   description: str, context: str, token: str) -> OutboundRequest:
    """Return the request that sets ``state`` (pending, success, failure) on ``sha`` through status API ``api``."""
    return _BUILDERS[api](api_url.rstrip("/"), repo, sha, _STATES[api][state], target_url,
                            description[:140], context, token)
