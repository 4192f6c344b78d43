"""Which tags a push produces."""

import pytest

from webhook.tags import image_tags

SHA = "6113728f27ae82c7b1a177c8d03f9e96e0adf246"
IMAGE = "registry.example.com/acme/app"


@pytest.mark.parametrize("ref, default_branch, latest, expected", [
    ("refs/heads/main", "main", False, [SHA, "main"]),
    ("refs/heads/main", "main", True, [SHA, "main", "latest"]),
    ("refs/heads/dev", "main", True, [SHA, "dev"]),
    ("refs/heads/feature/x", None, True, [SHA, "feature-x"]),
    ("refs/tags/v1.2.3", "main", True, [SHA, "v1.2.3"]),
    ("refs/heads/latest", "main", True, [SHA, "latest"]),
    ("", "main", True, [SHA]),
])
def test_image_tags(ref, default_branch, latest, expected):
    """The full-SHA tag comes first, then the ref's tag, then latest for the default branch."""
    assert image_tags(image=IMAGE, sha=SHA, ref=ref, default_branch=default_branch, latest=latest) == [
        f"{IMAGE}:{t}" for t in expected
    ]
