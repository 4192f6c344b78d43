"""Outbound HTTP requests as values: what pushbuild will send, built without sending it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class OutboundRequest:
    """One HTTP request to send; headers may carry tokens, so they never show in ``repr``."""

    method: str
    url: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict, repr=False)


def json_request(url: str, payload: Any, headers: dict[str, str], *, method: str = "POST") -> OutboundRequest:
    """Return a JSON request with ``payload`` serialised compactly."""
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    return OutboundRequest(method, url, body, {"Content-Type": "application/json", **headers})
