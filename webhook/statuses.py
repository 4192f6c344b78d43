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

from dataclasses import dataclass, field
from urllib.parse import quote

from .outbound import OutboundRequest, json_request

PENDING, SUCCESS, FAILURE = "pending", "success", "failure"


@dataclass(frozen=True)
class StatusApi:
    """One forge's commit status endpoint, as data."""

    path: str  # with {repo} and {sha}
    auth: tuple[str, str]  # header name, value with {token}
    fields: dict[str, str]  # the API's field → ours: state, url, description, context
    states: dict[str, str]  # ours → the API's
    default_url: str | None = None
    quote_repo: bool = False
    headers: dict[str, str] = field(default_factory=dict)


_COMMON = {"state": "state", "target_url": "url", "description": "description", "context": "context"}
_BITBUCKET = {"key": "context", "state": "state", "url": "url", "name": "context", "description": "description"}
_BITBUCKET_STATES = {PENDING: "INPROGRESS", SUCCESS: "SUCCESSFUL", FAILURE: "FAILED"}

STATUS_API = {
    "github": StatusApi("/repos/{repo}/statuses/{sha}", ("Authorization", "Bearer {token}"), _COMMON,
                        {PENDING: "pending", SUCCESS: "success", FAILURE: "failure"}, "https://api.github.com",
                        headers={"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}),
    "gitlab": StatusApi("/projects/{repo}/statuses/{sha}", ("PRIVATE-TOKEN", "{token}"),
                        {"state": "state", "name": "context", "target_url": "url", "description": "description"},
                        {PENDING: "running", SUCCESS: "success", FAILURE: "failed"}, "https://gitlab.com/api/v4",
                        quote_repo=True),
    "gitea": StatusApi("/repos/{repo}/statuses/{sha}", ("Authorization", "token {token}"), _COMMON,
                       {PENDING: "pending", SUCCESS: "success", FAILURE: "failure"}),
    "bitbucket": StatusApi("/repositories/{repo}/commit/{sha}/statuses/build", ("Authorization", "Bearer {token}"),
                           _BITBUCKET, _BITBUCKET_STATES, "https://api.bitbucket.org/2.0"),
    "bitbucket-datacenter": StatusApi("/rest/build-status/1.0/commits/{sha}", ("Authorization", "Bearer {token}"),
                                      _BITBUCKET, _BITBUCKET_STATES),
}
DEFAULT_API_URLS = {name: api.default_url for name, api in STATUS_API.items() if api.default_url}
#: The status APIs there are, by the forge a repository is on; the first is the default.
STATUS_APIS = {"github": ("github",), "gitlab": ("gitlab",), "gitea": ("gitea",),
               "bitbucket": ("bitbucket", "bitbucket-datacenter")}


def status_request(api: str, *, api_url: str, repo: str, sha: str, state: str, target_url: str,
                   description: str, context: str, token: str) -> OutboundRequest:
    """Return the request that sets ``state`` (pending, success, failure) on ``sha`` through status API ``api``."""
    spec = STATUS_API[api]
    ours = {"state": spec.states[state], "url": target_url, "description": description[:140], "context": context}
    path = spec.path.format(repo=quote(repo, safe="") if spec.quote_repo else repo, sha=sha)
    name, value = spec.auth
    return json_request(api_url.rstrip("/") + path, {key: ours[source] for key, source in spec.fields.items()},
                        {name: value.format(token=token), **spec.headers})
