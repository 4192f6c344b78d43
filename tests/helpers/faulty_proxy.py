"""A reverse proxy in front of the real registry that injects faults: 5xx answers, or 401 mid-push."""

from __future__ import annotations

import http.client
import threading

from .loopback import LoopbackServer, QuietHandler


class FaultyProxy:
    """Forwards to ``upstream`` (host:port); answers ``fail_status`` instead while ``should_fail`` says so.

    ``should_fail(method, path, count)`` sees each request and how many came before it; with
    ``times``, only that many requests fail.
    """

    def __init__(self, upstream: str, should_fail, *, fail_status: int, times: int | None = None) -> None:
        self.upstream = upstream
        self.times = times
        self.should_fail = should_fail
        self.fail_status = fail_status
        self.count = 0
        self.failed = 0
        self._lock = threading.Lock()
        proxy = self

        class Handler(QuietHandler):
            protocol_version = "HTTP/1.1"

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    data = b""
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            self.rfile.readline()
                            return data
                        data += self.rfile.read(size)
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _handle(self) -> None:
                body = self._body()
                with proxy._lock:
                    count = proxy.count
                    proxy.count += 1
                    fail = proxy.should_fail(self.command, self.path, count) and (
                        proxy.times is None or proxy.failed < proxy.times)
                    proxy.failed += fail
                if fail:
                    self.send_response(proxy.fail_status)
                    payload = (b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}'
                               if proxy.fail_status == 401 else b"upstream unavailable")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                connection = http.client.HTTPConnection(proxy.upstream, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "transfer-encoding"}
                headers["Content-Length"] = str(len(body))
                connection.request(self.command, self.path, body=body, headers=headers)
                response = connection.getresponse()
                data = response.read()
                self.send_response(response.status)
                for name, value in response.getheaders():
                    if name.lower() not in ("transfer-encoding", "content-length", "connection"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                connection.close()

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _handle  # noqa: N815

        self._server = LoopbackServer(Handler)

    @property
    def address(self) -> str:
        return self._server.address

    def stop(self) -> None:
        self._server.stop()
