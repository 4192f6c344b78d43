"""Each forge module's behaviour, tested beside it (with base.py and signing.py, what forges share); the registry in tests/test_forges.py."""

#: The headers of GitHub's example push delivery.
GH = {"x-github-event": "push", "x-github-delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
      "x-github-hook-id": "109948940"}
