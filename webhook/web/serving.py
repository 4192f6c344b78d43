"""Serving the internet: gunicorn's gevent worker with deadlines, so slow clients cannot silence deliveries.

pushbuild's port faces the internet (forges must reach ``/hooks/<forge>``), so clients that send
half a request and wait are to be expected, by accident or on purpose. Under gunicorn's gthread
worker each of them held one of eight threads, with no limit once its first byte had arrived:
200 such connections kept a real delivery waiting past the forges' 10 seconds. Here:

- every connection is a greenlet (a few KiB), not a thread: a waiting client takes nothing a
  delivery needs, and ``worker_connections`` bounds how many are held at once;
- a connection's first request head must arrive within ``request_timeout_s`` of its accept, or it
  is answered 408 and closed (:class:`Worker`); a keep-alive connection waits ``keepalive`` seconds
  for its next request, then is closed without a word, as gunicorn does;
- a request's body must arrive whole within ``request_timeout_s`` of its head, or it is answered
  408 and the connection is closed; the app only ever sees complete bodies (:class:`BufferedBodies`);
- connections take turns: after each request a connection answers, every other connection with a
  request ready goes first, so one client sending requests back to back cannot hold the process.

Everything the web process does cooperates with gevent once gunicorn's worker has monkey-patched
it (before the app is loaded): Redis and PostgreSQL sockets (psycopg picks a cooperative wait when
``select`` is patched, which is why the web process must not import psycopg before the patch),
locks, threads and ``time.sleep``. SQLite calls run to completion without yielding; they are short.
"""

from __future__ import annotations

import gc
import io
import json
import resource
import socket
import threading
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from typing import Any

import gevent
from gevent import monkey
from gevent.local import local
from gunicorn.workers.base_async import AsyncWorker
from gunicorn.workers.ggevent import GeventWorker

from .. import defaults

#: The connection the current greenlet serves: its socket, whether its first head was awaited yet,
#: and the request being answered (so the app can ask for the connection to be closed).
_connection = local()
#: File descriptors a web process needs beside its connections: the listener, databases, broker, logs.
SPARE_FILES = 256
#: Bytes read from the socket at a time while buffering a body.
READ_CHUNK_BYTES = 64 * 1024

Application = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class _Expired(Exception):
    """A request did not arrive within its deadline (raised into the greenlet reading it)."""


def raise_open_files_limit(wanted: int) -> int:
    """Raise this process's soft limit of open files to ``wanted`` (never above the hard limit); return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):  # above the kernel's nr_open: keep what we have
            pass
    return soft


def timeout_reply(seconds: float, what: str) -> bytes:
    """The JSON body of a 408 answer."""
    return json.dumps({"error": f"the request {what} did not arrive within {seconds:g} s"}).encode()


def _cooperative() -> bool:
    """Say whether sockets yield to other greenlets here (true in the gevent worker, after its patch)."""
    return monkey.is_module_patched("socket")


def close_after_response(environ: dict[str, Any]) -> None:
    """Have the server close this request's connection once its answer is sent.

    In :class:`Worker`, the request is marked to close (gunicorn then says ``Connection: close``);
    under another gunicorn worker, the socket's reading side is shut, so the connection ends
    instead of waiting for a next request on it.
    """
    request = getattr(_connection, "request", None)
    if request is not None:
        request.must_close = True
        return
    sock = environ.get("gunicorn.socket")
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RD)
        except OSError:
            pass


def _has_body(environ: dict[str, Any]) -> bool:
    return _declared_length(environ) > 0 or "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()


def _declared_length(environ: dict[str, Any]) -> int:
    raw = environ.get("CONTENT_LENGTH") or "0"
    return int(raw) if raw.isascii() and raw.isdigit() else 0  # gunicorn refuses any other value itself


def read_body(stream: Any, *, max_bytes: int) -> bytes:
    """Read ``stream`` to its end, or to one byte past ``max_bytes`` (enough to tell a body that is too large)."""
    chunks: list[bytes] = []
    size = 0
    while size <= max_bytes:
        chunk = stream.read(min(READ_CHUNK_BYTES, max_bytes + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


class BufferedBodies:
    """WSGI middleware: the app sees a request only once its whole body has arrived, within ``timeout_s``.

    The deadline counts from the moment the request's head was parsed (when the server calls the
    app) and covers the whole body, however it trickles in. A body not complete by then is
    answered ``408 {"error": …}`` with ``Connection: close``, and the connection is closed. Bodies
    are read to ``max_bytes`` and one byte more, so the app still refuses larger ones (413);
    a body declared larger than that is not read at all. Only the forges' deliveries
    (``/hooks/``) may be that large; any other path takes ``defaults.MAX_API_BODY_BYTES`` and is
    answered 413 here beyond it, so no stranger has megabytes buffered before the API's 401. The
    deadline needs cooperative sockets (:class:`Worker`); under other servers this only buffers.
    """

    def __init__(self, app: Application, *, timeout_s: float, max_bytes: int,
                 max_buffered_bytes: int = defaults.MAX_BUFFERED_BYTES) -> None:
        self.app = app
        self.timeout_s = timeout_s
        self.max_bytes = max_bytes
        #: Body bytes this process holds at once, whoever sends them: thousands of connections each
        #: sending 25 MB before any signature is checked must not exhaust memory. Past it, 503.
        self.max_buffered_bytes = max_buffered_bytes
        self.buffered = 0
        self._lock = threading.Lock()

    def _reserve(self, size: int) -> bool:
        with self._lock:
            if self.buffered + size > self.max_buffered_bytes:
                return False
            self.buffered += size
            return True

    def _release(self, size: int) -> None:
        with self._lock:
            self.buffered -= size

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        delivery = environ.get("PATH_INFO", "").startswith("/hooks/")
        limit = self.max_bytes if delivery else min(self.max_bytes, defaults.MAX_API_BODY_BYTES)
        if not delivery and _declared_length(environ) > limit:
            return _too_large(environ, start_response, limit)
        if not _has_body(environ) or _declared_length(environ) > limit:
            return self.app(environ, start_response)
        size = _declared_length(environ) or limit + 1  # a chunked body may be as large as the limit allows
        if not self._reserve(size):
            close_after_response(environ)
            return _reply(start_response, "503 Service Unavailable",
                          {"error": "too many request bodies are arriving at once; try again shortly"},
                          ("Retry-After", "5"))
        try:
            return self._buffered(environ, start_response, limit, delivery)
        finally:
            self._release(size)

    def _buffered(self, environ: dict[str, Any], start_response: Callable[..., Any], limit: int,
                  delivery: bool) -> Iterable[bytes]:
        deadline = gevent.Timeout(self.timeout_s, _Expired) if _cooperative() else nullcontext()
        try:
            with deadline:
                body = read_body(environ["wsgi.input"], max_bytes=limit)
        except _Expired:
            close_after_response(environ)
            reply = timeout_reply(self.timeout_s, "body")
            start_response("408 Request Timeout", [("Content-Type", "application/json"),
                                                   ("Content-Length", str(len(reply))), ("Connection", "close")])
            return [reply]
        if not delivery and len(body) > limit:
            return _too_large(environ, start_response, limit)
        environ["wsgi.input"] = io.BytesIO(body)
        return self.app(environ, start_response)


def _too_large(environ: dict[str, Any], start_response: Callable[..., Any], limit: int) -> list[bytes]:
    """Answer 413 and close: the rest of the body is not read."""
    close_after_response(environ)
    return _reply(start_response, "413 Request Entity Too Large", {"error": f"the body is larger than {limit} bytes"})


def _reply(start_response: Callable[..., Any], status: str, body: dict[str, str], *headers: tuple[str, str]) -> list[bytes]:
    """A JSON answer on a connection that then closes."""
    reply = json.dumps(body).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(reply))),
                            ("Connection", "close"), *headers])
    return [reply]


def warm_up(app: Any) -> None:
    """Open what the first delivery would open (the app's broker channel), so it waits no longer than later ones."""
    dispatcher = getattr(app, "extensions", {}).get("pushbuild.dispatcher")
    if dispatcher is not None:
        dispatcher.warm()


def keep_out_of_collections() -> None:
    """Leave what is alive now (the loaded app, its modules and libraries) out of every later garbage collection.

    A full collection visits every object the process holds: 65–80 ms on this project's 2-core
    machine for the web process's 130,000 or so, once every few thousand requests, while every
    connection waits (in the intake bench, the 20 answers in flight each came 77 ms late).
    Objects made by loading are kept for the process's life, so they are collected first, then
    frozen (:func:`gc.freeze`): later collections visit only what requests made (9–13 ms).
    """
    gc.collect()
    gc.freeze()


def request_timeout_of(app: Any) -> float:
    """The deadline the app was made with (``server.request_timeout_s``), or the default."""
    wrapped = getattr(app, "wsgi_app", app)
    return wrapped.timeout_s if isinstance(wrapped, BufferedBodies) else defaults.REQUEST_TIMEOUT_S


class _FirstHead:
    """The wait for a connection's first request head: at most ``seconds``, then 408 and the connection closes."""

    def __init__(self, seconds: float, client: socket.socket) -> None:
        self.client = client
        self.seconds = seconds
        self.timeout = gevent.Timeout(seconds)

    def __enter__(self) -> _FirstHead:
        self.timeout.start()
        return self

    def __exit__(self, kind: object, exc: BaseException | None, _tb: object) -> bool:
        self.timeout.close()
        if exc is not self.timeout:
            return False
        reply = timeout_reply(self.seconds, "head")
        try:
            self.client.settimeout(1.0)  # a client that reads nothing cannot hold the answer up either
            self.client.sendall(b"HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\n"
                                b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(reply), reply))
        except OSError:
            pass
        return True  # no request: gunicorn closes the connection


class Worker(GeventWorker):
    """gunicorn's gevent worker, with a deadline for each connection's first request head.

    ``gunicorn --worker-class webhook.web.serving.Worker``. gunicorn bounds every wait for a request
    head with ``keepalive`` seconds, silently; the first one is given ``request_timeout_s`` instead
    (a client gets that long to send its request, as the forges give us) and answered 408.
    """

    head_timeout_s: float = defaults.REQUEST_TIMEOUT_S

    def init_process(self) -> None:
        limit = raise_open_files_limit(self.cfg.worker_connections + SPARE_FILES)
        if limit < self.cfg.worker_connections + SPARE_FILES:
            self.log.warning("open files are limited to %s: fewer than worker_connections (%s) can be held",
                             limit, self.cfg.worker_connections)
        super().init_process()

    def load_wsgi(self) -> None:
        super().load_wsgi()
        self.head_timeout_s = request_timeout_of(self.wsgi)
        warm_up(self.wsgi)
        keep_out_of_collections()

    def handle(self, listener: Any, client: socket.socket, addr: Any) -> None:
        _connection.client = client
        _connection.awaited = False
        # Every read and write must make progress within the deadline: a client that sends requests
        # but never reads the answers (its window full) is dropped, instead of holding its slot.
        # (GeventWorker.handle would make the socket blocking without a timeout again.)
        client.setblocking(True)
        client.settimeout(self.head_timeout_s)
        AsyncWorker.handle(self, listener, client, addr)

    def timeout_ctx(self) -> Any:
        if _connection.awaited:
            return gevent.Timeout(self.cfg.keepalive, False)
        _connection.awaited = True
        return _FirstHead(self.head_timeout_s, _connection.client)

    def handle_request(self, listener_name: Any, req: Any, sock: Any, addr: Any) -> Any:
        _connection.request = req
        try:
            return super().handle_request(listener_name, req, sock, addr)
        except TimeoutError as exc:  # the client stopped reading: close quietly (gunicorn logs a traceback otherwise)
            raise StopIteration(f"no progress writing to the client for {self.head_timeout_s:g} s") from exc
        finally:
            _connection.request = None
            # Take turns: gunicorn reads a connection's next request from what it buffered without
            # yielding, so a client sending requests back to back (or pipelined) kept every other
            # connection waiting for as long as it kept sending. Each answered request lets the
            # others' ready requests go first.
            gevent.sleep(0)
