"""The build backends as a set: one registry by name, one way to make them, the same rules for RUN steps' network."""

import socket
import threading
import uuid

import docker
import pytest

from webhook.build.backends import BACKENDS, BuildKitBackend, ClassicBackend, open_backend
from webhook.build.backends.base import BuildLimits
from webhook.build.engine import Engine
from webhook.config import BUILDERS, EngineConfig

from .helpers.build_contexts import plan_for, tar_context


def offline_engine(**config) -> Engine:
    """An engine adapter that never connects (its network is configured, so nothing asks the engine)."""
    config = {"base_url": "unix:///nonexistent/docker.sock", "build_network": "none", **config}
    return Engine(docker.APIClient(base_url=config["base_url"], version="1.41"), config=EngineConfig(**config))


def test_the_configuration_allows_exactly_the_registered_backends():
    """``builder = "..."`` accepts the registry's names, in its order (the error message lists them)."""
    assert BUILDERS == tuple(BACKENDS) == ("classic", "buildkit")


def test_only_buildkit_takes_build_secrets():
    """The configuration refuses secrets_env on a backend that cannot pass them to RUN steps."""
    assert {name: backend.takes_secrets for name, backend in BACKENDS.items()} == {"classic": False, "buildkit": True}


def test_a_classic_backend_builds_on_the_engine_it_is_opened_on():
    """The classic builder is the engine's own endpoint: it keeps the engine, and the registry auth for cache pulls."""
    engine = offline_engine()
    backend = open_backend("classic", engine, auth={"username": "u", "password": "p"}, secrets={})
    assert isinstance(backend, ClassicBackend)
    assert backend.engine is engine and backend.auth == {"username": "u", "password": "p"}


def test_a_buildkit_backend_takes_the_cli_address_and_network_from_the_engine():
    """The docker CLI, the engine's address and the build network come from the engine's configuration."""
    engine = offline_engine(docker_cli="/opt/docker/bin/docker", build_network="pushbuild-builds")
    backend = open_backend("buildkit", engine, auth=None, secrets={"npm": "s3cret"})
    assert isinstance(backend, BuildKitBackend)
    assert (backend.cli, backend.host, backend.network) == ("/opt/docker/bin/docker", "unix:///nonexistent/docker.sock",
                                                            "pushbuild-builds")
    assert backend.secrets == {"npm": "s3cret"}


def _build_probing(engine, base_image, builder, port, log):
    """Build a Dockerfile whose RUN step tries to reach 127.0.0.1:``port``, with the named backend."""
    dockerfile = (f"FROM {base_image}\nLABEL test-run={uuid.uuid4()}\n"
                  f"RUN echo probe | timeout 10 nc 127.0.0.1 {port} ; echo probe-finished\n")
    backend = open_backend(builder, engine, auth=None, secrets={})
    return backend.build(tar_context({"Dockerfile": dockerfile}), plan=plan_for("pushbuild-test/engine:probe"),
                         labels={}, log=log, limits=BuildLimits(timeout_s=300))


@pytest.mark.e2e
@pytest.mark.parametrize("builder", list(BACKENDS))
@pytest.mark.parametrize("build_network, reached", [(None, False), ("host", True)])
def test_run_steps_reach_the_build_hosts_loopback_only_when_configured(docker_host, docker_cli, base_image, builder,
                                                                       build_network, reached):
    """On an engine without a bridge, RUN steps get no network by default; only build_network = "host" reaches 127.0.0.1."""
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
