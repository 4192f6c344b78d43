"""The docker-py adapter on a real engine: errors inside streams become our errors."""

import io
import tarfile
import uuid

import pytest

from webhook.config import EngineConfig
from webhook.engine import BuildLimits, Engine, is_temporary
from webhook.errors import ContextError, EngineError, RegistryError
from webhook.rules import BuildPlan

from .support import registry_digest

PLAN = BuildPlan(tags=(), dockerfile="Dockerfile", context=".")
LIMITS = BuildLimits(timeout_s=300)


@pytest.fixture
def engine(docker_host):
    return Engine.connect(EngineConfig(base_url=docker_host))


def context(files):
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, text in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(text.encode())
            tar.addfile(info, io.BytesIO(text.encode()))
    return iter([out.getvalue()])


@pytest.mark.e2e
def test_build_streams_the_engines_output_and_returns_the_image(engine, base_image):
    """Each line the engine sends reaches the log; the new image's id is returned."""
    lines = []
    # A label unique to this run keeps the engine's layer cache from skipping the RUN step.
    dockerfile = f"FROM {base_image}\nLABEL test-run={uuid.uuid4()}\nRUN echo hello-engine\n"
    image_id = engine.build(context({"Dockerfile": dockerfile}),
                            tag="pushbuild-test/engine:ok", plan=PLAN, limits=LIMITS, labels={"a": "b"}, log=lines.append)
    assert image_id.startswith("sha256:") and engine.image_id("pushbuild-test/engine:ok") == image_id
    assert any("hello-engine" in line for line in lines)


@pytest.mark.e2e
def test_an_error_inside_the_build_stream_raises(engine, base_image):
    """docker-py does not raise for a failed step; the adapter does, with the engine's message."""
    with pytest.raises(EngineError, match="returned a non-zero code: 2"):
        engine.build(context({"Dockerfile": f"FROM {base_image}\nRUN exit 2\n"}), tag="pushbuild-test/engine:bad",
                     plan=PLAN, limits=LIMITS, labels={}, log=lambda _: None)


@pytest.mark.e2e
def test_a_missing_base_image_is_an_engine_error(engine):
    """A FROM that cannot be found (nothing can be pulled here) fails clearly."""
    with pytest.raises(EngineError):
        engine.build(context({"Dockerfile": "FROM 127.0.0.1:9/no/such-image:1\n"}), tag="pushbuild-test/engine:nobase",
                     plan=PLAN, limits=LIMITS, labels={}, log=lambda _: None)


@pytest.mark.e2e
def test_an_error_in_the_context_stream_surfaces_as_itself(engine):
    """A context that turns out unsafe mid-stream stops the build with that reason."""

    def broken():
        yield b"\0" * 512
        raise ContextError("unsafe path")

    with pytest.raises(ContextError, match="unsafe path"):
        engine.build(broken(), tag="pushbuild-test/engine:ctx", plan=PLAN, limits=LIMITS, labels={}, log=lambda _: None)


@pytest.mark.e2e
def test_push_returns_the_digest_the_registry_serves(engine, base_image, registry):
    """The digest reported in the push stream is the registry's manifest digest."""
    image_id = engine.build(context({"Dockerfile": f"FROM {base_image}\nLABEL pushed=yes\n"}),
                            tag=f"{registry}/engine/push:one", plan=PLAN, limits=LIMITS, labels={}, log=lambda _: None)
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


def _build_probing(engine, base_image, builder, port, log):
    """Build a Dockerfile whose RUN step tries to reach 127.0.0.1:``port``, with either builder."""
    from webhook.buildkit import build_with_buildkit

    dockerfile = (f"FROM {base_image}\nLABEL test-run={uuid.uuid4()}\n"
                  f"RUN echo probe | timeout 10 nc 127.0.0.1 {port} ; echo probe-finished\n")
    if builder == "buildkit":
        return build_with_buildkit(engine, context({"Dockerfile": dockerfile}), tag="pushbuild-test/engine:probe",
                                   plan=PLAN, labels={}, secrets={}, auth=None, log=log, timeout_s=120)
    return engine.build(context({"Dockerfile": dockerfile}), tag="pushbuild-test/engine:probe", plan=PLAN,
                        labels={}, log=log, limits=LIMITS)


@pytest.mark.e2e
@pytest.mark.parametrize("builder", ["classic", "buildkit"])
@pytest.mark.parametrize("build_network, reached", [(None, False), ("host", True)])
def test_run_steps_reach_the_build_hosts_loopback_only_when_configured(docker_host, docker_cli, base_image, builder,
                                                                       build_network, reached):
    """On an engine without a bridge, RUN steps get no network by default; only build_network = "host" reaches 127.0.0.1."""
    import socket
    import threading

    engine = Engine.connect(EngineConfig(base_url=docker_host, docker_cli=docker_cli, build_network=build_network))
    connections, stop = [], threading.Event()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        listener.settimeout(0.1)

        def serve() -> None:  # accept and hang up at once, so a probe that got through ends
            while not stop.is_set():
                try:
                    accepted, peer = listener.accept()
                except OSError:  # the accept timeout, or a probe that already hung up
                    continue
                connections.append(peer)
                accepted.close()

        server = threading.Thread(target=serve, daemon=True)
        server.start()
        lines = []
        try:
            _build_probing(engine, base_image, builder, listener.getsockname()[1], lines.append)
        finally:
            stop.set()
            server.join()
    assert any("probe-finished" in line for line in lines), "".join(lines)
    assert bool(connections) is reached, "".join(lines)
    assert engine.build_network == (build_network or "none")
