"""Outbound requests as values (webhook/notify/outbound.py): what will be sent, built without sending it."""

import json

from webhook.notify.outbound import OutboundRequest, json_request


def test_a_json_request_is_compact_sorted_json_with_its_content_type():
    """The body is the exact bytes a signature is computed over: compact, keys sorted."""
    request = json_request("http://127.0.0.1:9/deploy", {"b": 1, "a": [1, 2]}, {"X-Key": "v"})
    assert request == OutboundRequest("POST", "http://127.0.0.1:9/deploy", b'{"a":[1,2],"b":1}',
                                      {"Content-Type": "application/json", "X-Key": "v"})
    assert json.loads(request.body) == {"a": [1, 2], "b": 1}


def test_the_method_and_content_type_can_be_given():
    """A status API may want PUT; a caller's Content-Type wins over the default."""
    request = json_request("http://127.0.0.1:9/s", {}, {"Content-Type": "application/vnd.api+json"}, method="PUT")
    assert (request.method, request.headers["Content-Type"], request.body) == ("PUT", "application/vnd.api+json", b"{}")


def test_headers_never_show_in_repr():
    """Headers carry tokens: a request logged or shown in a traceback does not reveal them."""
    request = json_request("http://127.0.0.1:9/s", {"state": "success"}, {"Authorization": "Bearer ghp_secret_123"})
    assert "ghp_secret_123" not in repr(request) and "http://127.0.0.1:9/s" in repr(request)
