"""The classic backend: the engine's build endpoint through docker-py; errors inside its stream become our errors."""

import socket
import time
import uuid

import docker
import pytest

from webhook.build.backends.base import BuildLimits
from webhook.build.backends.classic import ClassicBackend
from webhook.build.engine import Engine
from webhook.config import EngineConfig
from webhook.errors import Cancelled, ContextError, EngineError

from .helpers.build_contexts import plan_for, tar_context, tar_header

LIMITS = BuildLimits(timeout_s=300)


class FakeClient:
    """docker-py's low-level client as the classic backend uses it: a build stream, pulls, inspection."""

    def __init__(self, lines):
        self.lines = lines
        self.build_calls, self.pulled = [], []

    def build(self, **kwargs):
        self.build_calls.append(kwargs)
        return iter(self.lines)

    def pull(self, repository, **kwargs):
        self.pulled.append(f"{repository}:{kwargs['tag']}")
        return iter([{"status": "Pulled"}])

    def inspect_image(self, reference):
        raise docker.errors.ImageNotFound(reference)


def offline(lines, **config):
    client = FakeClient(lines)
    return client, ClassicBackend(Engine(client, config=EngineConfig(build_network="none", **config)), auth=None)


def test_limits_network_and_settings_reach_the_engines_build():
    """Memory (swap included) and CPU shares limit each step's container; the socket timeout is at most the build's."""
    client, backend = offline([{"stream": "Step 1/1\n"}, {"aux": {"ID": "sha256:abc"}}], timeout_s=600)
    lines = []
    image_id = backend.build(tar_context({"Dockerfile": "FROM scratch\n"}),
                             plan=plan_for("r/app:sha", target="prod", build_args=(("A", "1"),)), labels={"l": "v"},
                             limits=BuildLimits(timeout_s=60, memory_bytes=1 << 30, cpu_shares=512), log=lines.append)
    assert image_id == "sha256:abc" and lines == ["Step 1/1\n"]
    [call] = client.build_calls
    assert call["container_limits"] == {"memory": 1 << 30, "memswap": 1 << 30, "cpushares": 512}
    assert (call["tag"], call["target"], call["buildargs"], call["labels"]) == ("r/app:sha", "prod", {"A": "1"}, {"l": "v"})
    assert (call["network_mode"], call["timeout"], call["use_config_proxy"]) == ("none", 60, False)


def test_cache_images_are_pulled_before_the_build():
    """The classic builder uses only local cache images, so each cache_from image is pulled first."""
    client, backend = offline([{"aux": {"ID": "sha256:abc"}}])
    lines = []
    backend.build(tar_context({}), plan=plan_for("r/app:sha", cache_from=("r/app:main",)), labels={}, limits=LIMITS,
                  log=lines.append)
    assert client.pulled == ["r/app:main"] and lines == ["pulling cache image r/app:main\n"]
    assert client.build_calls[0]["cache_from"] == ["r/app:main"]


def test_a_log_that_refuses_a_line_stops_the_build():
    """Cancelling: the log raises on the next line of output, and nothing after it is read."""
    read = []

    def stream():
        for number in range(3):
            read.append(number)
            yield {"stream": f"line {number}\n"}

    _, backend = offline(stream())

    def log(text):
        raise Cancelled("the build was cancelled")

    with pytest.raises(Cancelled):
        backend.build(tar_context({}), plan=plan_for("r/app:sha"), labels={}, limits=LIMITS, log=log)
    assert read == [0]


@pytest.fixture
def backend(docker_host):
    return ClassicBackend(Engine.connect(EngineConfig(base_url=docker_host)), auth=None)


@pytest.mark.e2e
def test_build_streams_the_engines_output_and_returns_the_image(backend, base_image):
    """Each line the engine sends reaches the log; the new image's id is returned."""
    lines = []
    # A label unique to this run keeps the engine's layer cache from skipping the RUN step.
    dockerfile = f"FROM {base_image}\nLABEL test-run={uuid.uuid4()}\nRUN echo hello-engine\n"
    image_id = backend.build(tar_context({"Dockerfile": dockerfile}), plan=plan_for("pushbuild-test/engine:ok"),
                             limits=LIMITS, labels={"a": "b"}, log=lines.append)
    assert image_id.startswith("sha256:") and backend.engine.image_id("pushbuild-test/engine:ok") == image_id
    assert any("hello-engine" in line for line in lines)


@pytest.mark.e2e
def test_an_error_inside_the_build_stream_raises(backend, base_image):
    """docker-py does not raise for a failed step; the backend does, with the engine's message."""
    with pytest.raises(EngineError, match="returned a non-zero code: 2"):
        backend.build(tar_context({"Dockerfile": f"FROM {base_image}\nRUN exit 2\n"}),
                      plan=plan_for("pushbuild-test/engine:bad"), limits=LIMITS, labels={}, log=lambda _: None)


@pytest.mark.e2e
def test_a_missing_base_image_is_an_engine_error(backend):
    """A FROM that cannot be found (nothing can be pulled here) fails clearly."""
    with pytest.raises(EngineError):
        backend.build(tar_context({"Dockerfile": "FROM 127.0.0.1:9/no/such-image:1\n"}),
                      plan=plan_for("pushbuild-test/engine:nobase"), limits=LIMITS, labels={}, log=lambda _: None)


@pytest.mark.e2e
def test_an_error_in_the_context_stream_surfaces_as_itself(backend):
    """A context that turns out unsafe mid-stream stops the build with that reason."""

    def broken():
        yield b"\0" * 512
        raise ContextError("unsafe path")

    with pytest.raises(ContextError, match="unsafe path"):
        backend.build(broken(), plan=plan_for("pushbuild-test/engine:ctx"), limits=LIMITS, labels={}, log=lambda _: None)


@pytest.mark.e2e
def test_the_build_deadline_holds_while_the_context_is_still_streaming(backend):
    """build_timeout_s=5 and a context still arriving after it: the build stops within seconds, failing with the timeout."""
    pulled = []

    def slow(chunks=240):  # a minute of data at 4 chunks a second
        yield tar_header("slow.bin", chunks * 65536)
        for number in range(chunks):
            time.sleep(0.25)
            pulled.append(number)
            yield b"\0" * 65536
        yield b"\0" * 1024

    started = time.monotonic()
    with pytest.raises(EngineError, match="the build took longer than 5s and was stopped"):
        backend.build(slow(), plan=plan_for("pushbuild-test/deadline:slow"), labels={}, log=lambda _: None,
                      limits=BuildLimits(timeout_s=5))
    assert time.monotonic() - started < 20
    assert len(pulled) < 240, "the context was not sent to its end"


@pytest.mark.e2e
def test_an_engine_that_stops_taking_the_context_is_left_at_the_deadline(tmp_path):
    """A write the engine never takes is bounded: the build fails with the timeout, not as an engine gone away."""
    address = tmp_path / "deaf.sock"
    deaf = socket.socket(socket.AF_UNIX)  # listens, never accepts or reads: the kernel queues the connection
    deaf.bind(str(address))
    deaf.listen(1)

    def endless():
        yield tar_header("endless.bin", 1 << 40)
        while True:
            yield b"\0" * 65536

    try:
        client = docker.APIClient(base_url=f"unix://{address}", version="1.41", timeout=600)
        backend = ClassicBackend(Engine(client, config=EngineConfig(base_url=f"unix://{address}", build_network="none")),
                                 auth=None)
        started = time.monotonic()
        with pytest.raises(EngineError, match="the build took longer than 3s and was stopped") as raised:
            backend.build(endless(), plan=plan_for("pushbuild-test/deadline:deaf"), labels={}, log=lambda _: None,
                          limits=BuildLimits(timeout_s=3))
        assert not raised.value.unreachable
        assert time.monotonic() - started < 30
    finally:
        deaf.close()
