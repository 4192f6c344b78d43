"""HTTP peers on loopback that record what pushbuild sends them: stand-ins for forge APIs and deploy hooks."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from .loopback import LoopbackServer, QuietHandler


@dataclass
class Received:
    """One request as it arrived."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """Answers each request with the next status in ``answers`` (the last one repeats)."""

    answers: list[int] = field(default_factory=lambda: [201])
    delay_s: float = 0.0
    received: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        receiver = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.received.append(Received("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                time.sleep(receiver.delay_s)
                index = min(len(receiver.received), len(receiver.answers)) - 1
                try:
                    self.send_response(receiver.answers[index])
                    self.send_header("Content-Type", "application/json")
                    self.end_headers()
                    self.wfile.write(b"{}")
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the sender gave up waiting: that is what the test is about

        self._server = LoopbackServer(Handler)

    @property
    def url(self) -> str:
        return f"http://{self._server.address}"

    def stop(self) -> None:
        self._server.stop()
