"""Commit status requests match each forge's documented API."""

import json

import pytest

from webhook.errors import UnknownForge
from webhook.notify.statuses import FAILURE, PENDING, SUCCESS, status_request

SHA = "6113728f27ae82c7b1a177c8d03f9e96e0adf246"
LINK = "https://pushbuild.example.com/api/builds/7"


@pytest.mark.parametrize("forge, api, repo, path, auth, body", [
    ("github", "https://api.github.com", "octo/app", f"/repos/octo/app/statuses/{SHA}",
     ("Authorization", "Bearer tok"),
     {"state": "success", "target_url": LINK, "description": "done", "context": "pushbuild"}),
    ("gitlab", "https://gitlab.com/api/v4", "group/sub/app", f"/projects/group%2Fsub%2Fapp/statuses/{SHA}",
     ("PRIVATE-TOKEN", "tok"),
     {"state": "success", "name": "pushbuild", "target_url": LINK, "description": "done"}),
    ("gitea", "https://gitea.example.com/api/v1", "org/app", f"/repos/org/app/statuses/{SHA}",
     ("Authorization", "token tok"),
     {"state": "success", "target_url": LINK, "description": "done", "context": "pushbuild"}),
    ("bitbucket", "https://api.bitbucket.org/2.0", "team/app", f"/repositories/team/app/commit/{SHA}/statuses/build",
     ("Authorization", "Bearer tok"),
     {"key": "pushbuild", "state": "SUCCESSFUL", "url": LINK, "name": "pushbuild", "description": "done"}),
    ("bitbucket-datacenter", "https://bitbucket.example.com", "PROJ/app", f"/rest/build-status/1.0/commits/{SHA}",
     ("Authorization", "Bearer tok"),
     {"state": "SUCCESSFUL", "key": "pushbuild", "name": "pushbuild", "url": LINK, "description": "done"}),
])
def test_status_request_shape(forge, api, repo, path, auth, body):
    """Method, path, auth header and JSON body follow the forge's documentation."""
    request = status_request(forge, api_url=api + "/", repo=repo, sha=SHA, state=SUCCESS, target_url=LINK,
                             description="done", context="pushbuild", token="tok")
    assert (request.method, request.url) == ("POST", api + path)
    assert request.headers[auth[0]] == auth[1]
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.body) == body
    assert "tok" not in repr(request)


@pytest.mark.parametrize("forge, states", [
    ("github", ["pending", "success", "failure"]),
    ("gitlab", ["running", "success", "failed"]),
    ("gitea", ["pending", "success", "failure"]),
    ("bitbucket", ["INPROGRESS", "SUCCESSFUL", "FAILED"]),
])
def test_states_map_to_each_forges_vocabulary(forge, states):
    """pending/success/failure become the words each API accepts."""
    sent = [json.loads(status_request(forge, api_url="https://x", repo="a/b", sha=SHA, state=s, target_url=LINK,
                                      description="", context="c", token="t").body)["state"]
            for s in (PENDING, SUCCESS, FAILURE)]
    assert sent == states


def test_a_status_api_no_forge_defines_is_a_clear_error():
    """An unknown API name is refused with the names there are, not a KeyError."""
    with pytest.raises(UnknownForge, match="no such status API: 'gogs'"):
        status_request("gogs", api_url="https://x", repo="a/b", sha=SHA, state=SUCCESS, target_url=LINK,
                       description="", context="c", token="t")
