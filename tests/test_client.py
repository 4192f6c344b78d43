"""The CLI's client of a running service (webhook/client.py), against a small HTTP server on loopback."""

import socket

import pytest

from webhook.client import TOKEN_ENV, ApiError, Client

from .helpers.loopback import LoopbackServer, QuietHandler

TOKEN = "client-test-token-7f3a9c2e"
#: What the server answers per path: status, headers, body.
ANSWERS = {
    "/api/builds/7": (200, {"Content-Type": "application/json"}, b'{"id": 7, "state": "queued"}'),
    "/api/builds/8/retry": (409, {"Content-Type": "application/json"}, b'{"error": "build 8 is running"}'),
    "/api/builds/9": (502, {"Content-Type": "text/html"}, b"<html>bad gateway</html>"),
    "/api/builds/7/log": (200, {"Content-Type": "text/plain; charset=utf-8", "X-Log-Cursor": "42", "X-Log-More": "1"},
                          "step 1 ✓\n".encode()),
}


@pytest.fixture
def service():
    """A stand-in for pushbuild's API; ``requests`` lists each request's method, path and Authorization header."""
    requests_seen: list[tuple[str, str, str | None]] = []

    class Handler(QuietHandler):
        def answer(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            requests_seen.append((self.command, self.path, self.headers.get("Authorization")))
            status, headers, body = ANSWERS.get(self.path.split("?")[0], (404, {}, b'{"error": "no such path"}'))
            self.send_response(status)
            for name, value in {**headers, "Content-Length": str(len(body))}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = answer  # noqa: N815 - http.server's naming

    server = LoopbackServer(Handler)
    server.requests = requests_seen
    yield server
    server.stop()


def test_the_token_is_sent_as_a_bearer_header_and_the_json_is_returned(service):
    client = Client(f"http://{service.address}/", TOKEN)
    assert client.call("GET", "/api/builds/7") == {"id": 7, "state": "queued"}
    assert service.requests == [("GET", "/api/builds/7", f"Bearer {TOKEN}")]


def test_a_refusal_is_an_api_error_with_the_services_message(service):
    """A 4xx says what the service said (its JSON error), and which service answered."""
    client = Client(f"http://{service.address}", TOKEN)
    with pytest.raises(ApiError) as refused:
        client.call("POST", "/api/builds/8/retry")
    assert refused.value.message == f"http://{service.address} answered 409: build 8 is running"
    assert TOKEN not in str(refused.value)


def test_an_answer_that_is_not_json_is_an_api_error_with_the_reason(service):
    with pytest.raises(ApiError, match="answered 502: Bad Gateway"):
        Client(f"http://{service.address}", TOKEN).call("GET", "/api/builds/9")


def test_an_unreachable_service_is_an_api_error_naming_no_token():
    """Nothing listens on the port: the error names the URL and the kind of failure, never the token."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ApiError) as unreachable:
        Client(f"http://127.0.0.1:{port}", TOKEN).call("GET", "/api/builds")
    assert unreachable.value.message == f"cannot reach http://127.0.0.1:{port}: ConnectionError"
    assert TOKEN not in str(unreachable.value) and TOKEN not in repr(unreachable.value.__cause__)


@pytest.mark.parametrize("token", [None, ""])
def test_without_a_token_the_client_says_which_variable_to_set(token):
    with pytest.raises(ApiError, match=f"set {TOKEN_ENV} to a token of http://127.0.0.1:1"):
        Client("http://127.0.0.1:1", token)


def test_a_log_page_is_text_with_its_cursor_and_whether_more_is_stored(service):
    client = Client(f"http://{service.address}", TOKEN)
    assert client.log_page(7, after=0) == ("step 1 ✓\n", 42, True)
    assert service.requests == [("GET", "/api/builds/7/log?after=0", f"Bearer {TOKEN}")]
    with pytest.raises(ApiError, match="answered 404 for the log of build 5"):
        client.log_page(5, after=0)
