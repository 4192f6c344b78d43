"""What a forge is (webhook/forges/base.py): a Forge and its StatusApi are checked whole when they are made.

A forge missing a part, or giving one of the wrong kind, fails when it is defined (not when a
delivery needs it); a registered forge is a frozen value.
"""

from dataclasses import replace

import pytest

from webhook.forges import github
from webhook.forges.base import REQUIRED_PARTS, Forge


def test_the_required_parts_are_the_ones_a_forge_module_must_give():
    """Optional are only aliases and the configuration features a forge may have (GitLab's signing token)."""
    assert REQUIRED_PARTS == ("name", "signature_headers", "signed_bytes", "check", "parse", "status_apis", "git_username")


@pytest.mark.parametrize("part", REQUIRED_PARTS)
def test_a_forge_missing_a_part_fails_when_it_is_defined(part):
    """Leaving a part out is a TypeError at import, not a KeyError at request time."""
    parts = {name: getattr(github.FORGE, name) for name in REQUIRED_PARTS}
    del parts[part]
    with pytest.raises(TypeError, match=part):
        Forge(**parts)


@pytest.mark.parametrize("change, message", [
    ({"signed_bytes": None}, "signed_bytes must be callable"),
    ({"check": "verify"}, "check must be callable"),
    ({"parse": None}, "parse must be callable"),
    ({"status_apis": ()}, "status_apis must be a non-empty tuple"),
    ({"signature_headers": frozenset()}, "signature_headers must be a non-empty frozenset"),
    ({"signature_headers": frozenset({"X-Hub-Signature-256"})}, "lowercased"),
    ({"git_username": ""}, "git_username must be a non-empty string"),
    ({"name": "Git Hub"}, "must be lowercase"),
    ({"aliases": ["ghes"]}, "aliases must be a tuple"),
    ({"unsigned_warning": "is unsigned"}, "unsigned_warning needs signing_token"),
])
def test_a_forge_with_a_malformed_part_fails_when_it_is_defined(change, message):
    """A part of the wrong kind is refused as soon as the forge is made."""
    with pytest.raises(TypeError, match=message):
        replace(github.FORGE, **change)


def test_a_status_api_missing_a_state_fails_when_it_is_defined():
    """A status API must say what each of pending, success and failure is called."""
    with pytest.raises(TypeError, match="states must map exactly"):
        replace(github.STATUS_API, states={"pending": "pending", "success": "success"})
    with pytest.raises(TypeError, match="fields may only be filled from"):
        replace(github.STATUS_API, fields={"state": "colour"})


def test_a_forge_is_data():
    """A forge is a frozen value: nothing can change a registered forge's rules at run time."""
    with pytest.raises(AttributeError):
        github.FORGE.git_username = "other"  # type: ignore[misc]
