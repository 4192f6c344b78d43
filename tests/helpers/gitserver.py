"""A git smart-HTTP server on loopback: ``git http-backend`` behind a tiny threaded WSGI server.

Tests push and fetch through it, so pushbuild exercises git's real HTTP transport and auth.
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import IO
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


class GitHttpServer:
    """Serves every bare repository under ``root``; with ``token``, requires HTTP basic auth.

    With ``protocol_v2=False`` the server speaks only protocol v0, where (like many hosted
    servers) it refuses to send a commit by id unless a ref points at it.
    """

    def __init__(self, root: Path, *, token: str | None = None, protocol_v2: bool = True) -> None:
        self.root = root
        self.token = token
        self.protocol_v2 = protocol_v2
        self.requests: list[tuple[str, str]] = []
        self._server = make_server("127.0.0.1", 0, self._app, server_class=_ThreadingServer,
                                   handler_class=_QuietHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def url(self, name: str) -> str:
        return f"{self.base_url}/{name}"

    def start(self) -> GitHttpServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _authorised(self, environ: dict) -> bool:
        if self.token is None:
            return True
        header = environ.get("HTTP_AUTHORIZATION", "")
        if not header.startswith("Basic "):
            return False
        _, _, password = base64.b64decode(header[6:]).decode().partition(":")
        return password == self.token

    def _app(self, environ: dict, start_response):  # noqa: ANN202 - WSGI signature
        self.requests.append((environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")))
        if not self._authorised(environ):
            start_response("401 Unauthorized", [("WWW-Authenticate", 'Basic realm="git"')])
            return [b"authentication required\n"]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        cgi_env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": str(self.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REQUEST_METHOD": environ["REQUEST_METHOD"],
            "PATH_INFO": environ.get("PATH_INFO", ""),
            "QUERY_STRING": environ.get("QUERY_STRING", ""),
            "CONTENT_TYPE": environ.get("CONTENT_TYPE", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_ADDR": "127.0.0.1",
            "REMOTE_USER": "tester",
            "GIT_PROTOCOL": environ.get("HTTP_GIT_PROTOCOL", "") if self.protocol_v2 else "",
            "HTTP_CONTENT_ENCODING": environ.get("HTTP_CONTENT_ENCODING", ""),
        }
        # Streamed both ways: a pack of hundreds of MiB neither waits whole in this process nor is
        # handed to wsgiref as one buffer (which it writes by slicing off what the socket took:
        # quadratic, 5 MiB/s for a large fetch).
        process = subprocess.Popen(["git", "http-backend"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=subprocess.DEVNULL, env=cgi_env)
        threading.Thread(target=_feed, args=(process.stdin, body), daemon=True).start()
        head = b""
        while not (ends := re.search(rb"\r?\n\r?\n", head)):
            chunk = process.stdout.read1(_CHUNK)
            if not chunk:
                break
            head += chunk
        head, first = (head[:ends.start()], head[ends.end():]) if ends else (head, b"")
        status = "200 OK"
        headers = []
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = value.strip()
            elif name:
                headers.append((name.strip(), value.strip()))
        start_response(status, headers)
        return _rest(process, first)


#: The most a response is read from, and written to the client, at a time.
_CHUNK = 1 << 20


def _feed(stdin: IO[bytes], body: bytes) -> None:
    """Give ``git http-backend`` the request body (in a thread: it may answer before it has read it all)."""
    try:
        stdin.write(body)
    except BrokenPipeError:
        pass
    finally:
        stdin.close()


def _rest(process: subprocess.Popen, first: bytes) -> Iterator[bytes]:
    """The rest of the response, as git writes it; the process is waited for whatever happens to the client."""
    try:
        if first:
            yield first
        while chunk := process.stdout.read1(_CHUNK):
            yield chunk
    finally:
        process.stdout.close()
        if process.poll() is None:
            process.kill()
        process.wait()
