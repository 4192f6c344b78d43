"""The docker-py adapter on a real engine: errors inside pull and push streams become our errors.

Building is the backends' (tests/test_backends*.py).
"""

import pytest

from webhook.build.backends import ClassicBackend
from webhook.build.backends.base import BuildLimits
from webhook.build.engine import Engine, is_temporary, stream_error
from webhook.config import EngineConfig
from webhook.errors import EngineError, RegistryError

from .helpers.build_contexts import plan_for, tar_context
from .helpers.support import registry_digest


@pytest.fixture
def engine(docker_host):
    return Engine.connect(EngineConfig(base_url=docker_host))


@pytest.mark.parametrize("line, error", [
    ({"status": "Pushing", "id": "abc"}, None),
    ({"stream": "Step 1/2 : FROM scratch\n"}, None),
    ({"errorDetail": {"message": "manifest unknown "}, "error": "manifest unknown"}, "manifest unknown"),
    ({"error": "denied: requested access to the resource is denied"}, "denied: requested access to the resource is denied"),
    ({"errorDetail": {}}, "unknown error"),
])
def test_errors_are_found_inside_the_engines_json_stream(line, error):
    """docker-py does not raise for an error the engine reports mid-stream: the line itself says so."""
    assert stream_error(line) == error


@pytest.mark.e2e
def test_push_returns_the_digest_the_registry_serves(engine, base_image, registry):
    """The digest reported in the push stream is the registry's manifest digest."""
    image_id = ClassicBackend(engine, auth=None).build(
        tar_context({"Dockerfile": f"FROM {base_image}\nLABEL pushed=yes\n"}), plan=plan_for(f"{registry}/engine/push:one"),
        limits=BuildLimits(timeout_s=300), labels={}, log=lambda _: None)
    engine.tag(image_id, f"{registry}/engine/push:two")
    digest = engine.push(f"{registry}/engine/push:two", auth=None, log=lambda _: None)
    assert digest == registry_digest(registry, "engine/push", "two")


@pytest.mark.e2e
def test_a_push_to_an_unreachable_registry_raises(engine, base_image):
    """A registry that cannot be reached is a RegistryError naming the reference."""
    image_id = engine.image_id(base_image)
    engine.tag(image_id, "127.0.0.1:9/engine/nowhere:x")
    with pytest.raises(RegistryError, match="pushing 127.0.0.1:9/engine/nowhere:x failed"):
        engine.push("127.0.0.1:9/engine/nowhere:x", auth={"username": "u", "password": "p"}, log=lambda _: None)


@pytest.mark.e2e
def test_an_unreachable_engine_is_an_engine_error(tmp_path):
    """Connecting to a socket nobody listens on is a clear EngineError."""
    with pytest.raises(EngineError, match="Docker engine"):
        Engine.connect(EngineConfig(base_url=f"unix://{tmp_path}/none.sock")).ping()


@pytest.mark.parametrize("message, temporary", [
    ('Get "http://127.0.0.1:9/v2/": dial tcp 127.0.0.1:9: connect: connection refused', True),
    ("received unexpected HTTP status: 503 Service Unavailable", True),
    ("error parsing HTTP 502 response body: invalid character '<' looking for beginning of value", True),
    ("net/http: TLS handshake timeout", True),
    ("toomanyrequests: HTTP 429", True),
    ("unauthorized: authentication required", False),
    ("denied: requested access to the resource is denied", False),
    ("error parsing HTTP 405 response body: Method not allowed", False),
    ("manifest invalid: manifest invalid", False),
])
def test_registry_failures_are_sorted_into_temporary_and_permanent(message, temporary):
    """5xx, 429, timeouts and unreachable registries are retried; refusals are not."""
    assert is_temporary(message) is temporary

