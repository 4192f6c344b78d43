"""The links to a build that replies, statuses and hook messages carry."""

import pytest

from webhook.links import base_url, build_links, build_url


@pytest.mark.parametrize(("public", "request_base", "expected"), [
    ("https://pb.example.com", "http://10.0.0.1:8080/", "https://pb.example.com"),
    (None, "http://10.0.0.1:8080/", "http://10.0.0.1:8080"),
    (None, None, "http://127.0.0.1:8080"),  # a worker, with no request: the default bind
])
def test_links_start_at_the_public_url_else_where_the_request_came_else_the_bind(public, request_base, expected):
    assert base_url(public, request_base) == expected


def test_a_builds_links():
    assert build_url("https://pb", 7) == "https://pb/api/builds/7"
    assert build_links("https://pb", 7) == {"url": "https://pb/api/builds/7", "log_url": "https://pb/api/builds/7/log",
                                            "deliveries_url": "https://pb/api/builds/7/deliveries"}
