"""The build pipeline on a real engine, registry and git server."""

import hashlib
import json
import re
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests

from webhook.build.pipeline import PLAN_LABEL, REVISION_LABEL, SOURCE_LABEL
from webhook.config import parse_config
from webhook.events import PushEvent
from webhook.services import Services
from webhook.store import BuildState

from .helpers.configs import SECRETS_ENV
from .helpers.engine_process import BASE_IMAGE as ENGINE_BASE_IMAGE
from .helpers.engine_process import EngineProcess
from .helpers.faulty_proxy import FaultyProxy
from .helpers.gitrepo import Repo
from .helpers.gitserver import GitHttpServer
from .helpers.service import free_port
from .helpers.support import MANIFEST_TYPES, registry_digest, wait_for
from .helpers.support import run_push as run

pytestmark = pytest.mark.e2e


def image_name(registry, repo):
    return f"{registry}/{repo.name}"


def test_a_push_ends_as_an_image_in_the_registry(pipeline, repo, registry, base_image, docker_client):
    """The commit is built, tagged with its SHA and branch, pushed, and runs with the committed file."""
    sha = repo.commit({"Dockerfile": f"FROM {base_image}\nCOPY hello.txt /hello.txt\nCMD cat /hello.txt\n",
                       "hello.txt": "hello from the commit\n"})
    build = run(pipeline(latest=True), repo, sha)
    assert build.state is BuildState.SUCCEEDED, build.error
    name = image_name(registry, repo)
    assert build.tags == (f"{name}:{sha}", f"{name}:main", f"{name}:latest")
    assert build.digest == registry_digest(registry, repo.name, sha) == registry_digest(registry, repo.name, "main")
    image = docker_client.images.get(f"{name}:{sha}")
    assert image.labels["org.opencontainers.image.revision"] == sha
    assert image.labels["org.opencontainers.image.source"].endswith(f"{repo.name}.git")
    assert docker_client.containers.run(f"{name}:{sha}", remove=True, network_mode="none") == b"hello from the commit\n"


def test_a_build_records_how_long_each_phase_took(pipeline, repo, base_image):
    """Queue wait, fetch, context, build and push, in that order, each positive; the log's last line and /metrics say so too."""
    sha = repo.commit({"Dockerfile": f"FROM {base_image}\nCOPY hello.txt /hello.txt\n", "hello.txt": "hi\n"})
    services = pipeline()
    build = run(services, repo, sha)
    assert build.state is BuildState.SUCCEEDED, build.error
    assert list(build.timings) == ["queue_wait", "fetch", "context", "build", "push"]
    assert all(build.timings[phase] > 0 for phase in ("fetch", "context", "build", "push")), build.timings
    assert build.context_bytes >= 2 * 512 + 1024  # two files' headers and data, and the end-of-archive blocks
    log, _ = services.store.log(build.id)
    assert re.search(r"--- took [\d.]+ s \(queued [\d.]+ s\): fetch [\d.]+ s, context [\d.]+ s, build [\d.]+ s, "
                     r"push [\d.]+ s ---\n$", log), log[-300:]
    counts = services.metrics.stored()
    assert counts[("pushbuild_builds_finished", '{"state":"succeeded"}')] == 1
    assert sum(v for (name, labels), v in counts.items()
               if name == "pushbuild_phase_duration_seconds_bucket" and '"phase":"build"' in labels) == 1


def test_dockerignore_context_and_dockerfile_path_are_honoured(pipeline, repo, registry, base_image, docker_client):
    """Only the context subdirectory is sent, minus what its .dockerignore excludes."""
    sha = repo.commit({
        "services/api/build/Containerfile": f"FROM {base_image}\nCOPY . /app\nCMD find /app\n",
        "services/api/build/notes.txt": "ignored by build/*.txt\n",
        "services/api/app.py": "print()\n",
        "services/api/secret.env": "TOKEN=x\n",
        "services/api/.dockerignore": "*.env\nbuild/*.txt\n",
        "outside.txt": "not in the context\n",
    })
    build = run(pipeline(context="services/api", dockerfile="build/Containerfile"), repo, sha)
    assert build.state is BuildState.SUCCEEDED, build.error
    listing = docker_client.containers.run(build.tags[0], remove=True, network_mode="none").decode().split()
    assert sorted(listing) == ["/app", "/app/.dockerignore", "/app/app.py", "/app/build", "/app/build/Containerfile"]


def test_the_same_commit_is_built_once_and_later_pushes_add_tags(pipeline, repo, registry, base_image, docker_client):
    """A second push of an already-built SHA only tags and pushes; the image is not rebuilt."""
    services = pipeline()
    sha = repo.commit({"Dockerfile": f"FROM {base_image}\nRUN date +%s%N > /built-at\n"})
    first = run(services, repo, sha)
    repo.commit({}, branch="release")  # not needed for the SHA, but a second branch exists upstream
    second = run(services, repo, sha, ref="refs/heads/release")
    assert (first.state, second.state) == (BuildState.SUCCEEDED, BuildState.SUCCEEDED)
    assert second.digest == first.digest == registry_digest(registry, repo.name, "release")
    log, _ = services.store.log(second.id)
    assert "adding tags only" in log


def test_an_image_carries_its_commit_repository_and_settings_and_nothing_that_changes_per_build(pipeline, repo, docker_client, base_image):
    """No build time among the labels: each classic-builder label is a step, and one differing every build costs a container."""
    sha = repo.commit({"Dockerfile": f"FROM {base_image}\nCMD true\n"})
    build = run(pipeline(), repo, sha)
    assert build.state is BuildState.SUCCEEDED, build.error
    labels = docker_client.images.get(build.tags[0]).labels
    assert set(labels) == {REVISION_LABEL, SOURCE_LABEL, PLAN_LABEL}
    assert labels[REVISION_LABEL] == sha


def test_a_failing_run_step_fails_with_the_engines_error_and_pushes_nothing(pipeline, repo, registry, base_image):
    """A RUN that exits non-zero ends the build failed, with the engine's message, and nothing in the registry."""
    sha = repo.commit({"Dockerfile": f"FROM {base_image}\nRUN echo about to fail && exit 3\n"})
    services = pipeline()
    build = run(services, repo, sha)
    assert build.state is BuildState.FAILED
    assert "returned a non-zero code: 3" in build.error
    assert registry_digest(registry, repo.name, sha) is None
    log, _ = services.store.log(build.id)
    assert "about to fail" in log


@pytest.mark.parametrize("files, symlinks, error", [
    ({"README": "no Dockerfile here\n"}, None, "no Dockerfile"),
    ({"README": "x"}, {"Dockerfile": "/etc/passwd"}, "symbolic link"),
])
def test_a_commit_that_cannot_be_a_context_fails_clearly(pipeline, repo, registry, files, symlinks, error):
    """No Dockerfile, or one that is a symlink, is a failed build with the reason."""
    sha = repo.commit(files, symlinks=symlinks)
    build = run(pipeline(), repo, sha)
    assert build.state is BuildState.FAILED and error in build.error


def test_registry_failures_fail_the_build_without_leaking_the_password(pipeline, repo, base_image):
    """An unreachable registry fails the push; the registry password appears nowhere."""
    sha = repo.commit({"Dockerfile": f"FROM {base_image}\n"})
    services = pipeline(image="127.0.0.1:9/nowhere/app", registry={"username_env": "REG_USER", "password_env": "REG_PASS"})
    build = run(services, repo, sha)
    assert build.state is BuildState.FAILED
    assert "pushing 127.0.0.1:9/nowhere/app:" in build.error and "(after 4 attempts)" in build.error
    log, _ = services.store.log(build.id)
    assert "registry-pass-9876" not in log + build.error
    assert log.count("retrying in") == 3


def test_a_registry_refusing_the_push_fails_at_once(pipeline, repo, tmp_path, base_image):
    """A permanent refusal (a read-only registry) is not retried."""
    registry = LocalRegistry(tmp_path / "readonly", readonly=True)
    try:
        sha = repo.commit({"Dockerfile": f"FROM {base_image}\nLABEL readonly=yes\n"})
        services = pipeline(image=f"{registry.address}/{repo.name}")
        build = run(services, repo, sha)
        assert build.state is BuildState.FAILED and "405" in build.error
        log, _ = services.store.log(build.id)
        assert "retrying in" not in log and "attempts" not in build.error
    finally:
        registry.stop()


def test_a_semver_tag_push_fans_out_to_version_tags(pipeline, repo, registry, base_image):
    """A v1.2.3 tag under a semver rule is pushed as 1.2.3, 1.2 and 1, all one digest."""
    repo.commit({"Dockerfile": f"FROM {base_image}\nLABEL release=yes\n"})
    tag_sha = repo.tag("v1.2.3", annotated=True)
    services = pipeline(rules=[{"tag_regex": r"^v\d+\.\d+\.\d+$", "tags": ["{tag}"], "semver": True}])
    build = run(services, repo, tag_sha, ref="refs/tags/v1.2.3")
    assert build.state is BuildState.SUCCEEDED, build.error
    digests = {registry_digest(registry, repo.name, t) for t in ("v1.2.3", "1.2.3", "1.2", "1")}
    assert digests == {build.digest}
    assert registry_digest(registry, repo.name, "latest") is None


def test_target_and_build_args_reach_the_engine_and_secret_values_stay_out_of_the_log(pipeline, repo, docker_client, base_image):
    """The rule's target stage is built with its arguments; an argument from the environment is masked in the log."""
    sha = repo.commit({"Dockerfile": (
        f"FROM {base_image} AS base\nLABEL test-run={repo.name}\nARG GREETING\nARG TOKEN\n"
        "RUN test \"$TOKEN\" = \"tok-5ecret-value\" && echo \"token is $TOKEN\"\n"
        "RUN echo \"$GREETING from base\" > /greeting\n"
        "FROM base AS final\nCMD cat /greeting\n"
        "FROM base AS other\nRUN exit 9\n"
    )})
    services = pipeline(env={"TOKEN_VAR": "tok-5ecret-value"}, build_args={"GREETING": "hello"},
                        build_args_env={"TOKEN": "TOKEN_VAR"}, target="final")
    build = run(services, repo, sha)
    assert build.state is BuildState.SUCCEEDED, build.error
    assert docker_client.containers.run(build.tags[0], remove=True, network_mode="none") == b"hello from base\n"
    log, _ = services.store.log(build.id)
    assert "token is ***" in log and "tok-5ecret-value" not in log


def test_a_commit_built_with_other_settings_is_rebuilt_not_reused(pipeline, repo, docker_client, base_image):
    """The same SHA under another target is built again, so the SHA tag never names the wrong stage."""
    sha = repo.commit({"Dockerfile": f"FROM {base_image} AS a\nCMD echo stage-a\nFROM {base_image} AS b\nCMD echo stage-b\n"})
    first = run(pipeline(target="a"), repo, sha)
    second = run(pipeline(target="b"), repo, sha)
    assert (first.state, second.state) == (BuildState.SUCCEEDED, BuildState.SUCCEEDED)
    assert first.digest != second.digest
    assert docker_client.containers.run(second.tags[0], remove=True, network_mode="none") == b"stage-b\n"


BUILDKIT_ONLY = (
    "FROM {base}\nLABEL test-run={run}\n"
    "RUN --mount=type=cache,target=/cache echo cached >> /cache/marker && wc -l < /cache/marker\n"
    # The secret is compared by its hash, so the Dockerfile itself does not hold it.
    "RUN --mount=type=secret,id=npm test \"$(sha256sum < /run/secrets/npm | cut -c1-64)\" = \"{secret_sha}\" && echo secret-ok\n"
    "COPY hello.txt /hello.txt\nCMD cat /hello.txt\n"
)


def test_the_buildkit_builder_builds_what_only_buildkit_can(pipeline, repo, registry, docker_client, base_image):
    """Cache mounts and build secrets work; the secret is in neither the log nor the image history."""
    dockerfile = BUILDKIT_ONLY.format(base=base_image, run=repo.name, secret_sha=hashlib.sha256(b"npm-s3cret-token").hexdigest())
    sha = repo.commit({"Dockerfile": dockerfile, "hello.txt": "from buildkit\n"})
    services = pipeline(builder="buildkit", secrets_env={"npm": "NPM_TOKEN"}, env={"NPM_TOKEN": "npm-s3cret-token"})
    build = run(services, repo, sha)
    assert build.state is BuildState.SUCCEEDED, build.error
    assert build.digest == registry_digest(registry, repo.name, sha)
    assert docker_client.containers.run(build.tags[0], remove=True, network_mode="none") == b"from buildkit\n"
    log, _ = services.store.log(build.id)
    assert "secret-ok" in log and "npm-s3cret-token" not in log
    history = json.dumps(docker_client.api.history(build.tags[0]))
    assert "npm-s3cret-token" not in history
    assert docker_client.images.get(build.tags[0]).labels["org.opencontainers.image.revision"] == sha


def test_the_classic_builder_cannot_and_says_so(pipeline, repo, base_image):
    """The same Dockerfile on the classic builder fails with the engine's reason."""
    sha = repo.commit({"Dockerfile": BUILDKIT_ONLY.format(base=base_image, run=repo.name, secret_sha="0"), "hello.txt": "x\n"})
    build = run(pipeline(), repo, sha)
    assert build.state is BuildState.FAILED and "BuildKit" in build.error


def test_a_failing_buildkit_step_fails_with_its_reason(pipeline, repo, registry, base_image):
    """BuildKit's own failure line becomes the build's error; nothing is pushed."""
    sha = repo.commit({"Dockerfile": f"FROM {base_image}\nLABEL test-run={repo.name}\nRUN exit 6\n"})
    build = run(pipeline(builder="buildkit"), repo, sha)
    assert build.state is BuildState.FAILED
    assert "exit code: 6" in build.error
    assert registry_digest(registry, repo.name, sha) is None


@pytest.mark.parametrize("token, state", [("tok-private-777", BuildState.SUCCEEDED), ("tok-wrong-000", BuildState.FAILED)])
def test_private_repositories_build_with_their_token(tmp_path, docker_host, registry, base_image, token, state):
    """The right token builds; a wrong one fails with git's reason and no token in the log or error."""
    server = GitHttpServer(tmp_path / "private", token="tok-private-777").start()
    try:
        repo = Repo(server.root, tmp_path / "work", f"acme/private-{uuid.uuid4().hex[:8]}")
        sha = repo.commit({"Dockerfile": f"FROM {base_image}\nLABEL private=yes\n"})
        services = Services(parse_config({
            "server": {"data_dir": str(tmp_path / "data"), "mirror_dir": str(tmp_path / "mirrors")},
            "engine": {"base_url": docker_host},
            "repos": [{"name": repo.name, "forge": "gitlab", "secret_env": "GITLAB_TOKEN", "git_token_env": "GIT_TOKEN",
                       "clone_url": server.url(f"{repo.name}.git"), "image": f"{registry}/{repo.name}"}],
        }, {**SECRETS_ENV, "GIT_TOKEN": token}))
        [build], _ = services.store.record([PushEvent(forge="gitlab", repo=repo.name, ref="refs/heads/main", sha=sha,
                                                      before="0" * 40, pusher="t", delivery_id=None)])
        services.pipeline().run(services.store.claim(build.id, owner="t", lease_s=60), owner="t")
        ended = services.store.get(build.id)
        assert ended.state is state, ended.error
        log, _ = services.store.log(build.id)
        assert token not in log + (ended.error or "")
        if state is BuildState.FAILED:
            assert "Authentication failed" in ended.error
    finally:
        server.stop()


def test_path_filters_skip_pushes_that_change_nothing_under_paths(pipeline, repo, registry, base_image):
    """With paths = ["app/**"], a docs-only push is skipped (by the git diff); an app change builds."""
    services = pipeline(paths=["app/**", "Dockerfile"])
    first = repo.commit({"Dockerfile": f"FROM {base_image}\nCOPY app /app\n", "app/main.py": "v1\n", "docs/a.md": "a\n"})
    docs_only = repo.commit({"docs/a.md": "b\n"})
    app_change = repo.commit({"app/main.py": "v2\n"})
    skipped = run(services, repo, docs_only, before=first, changed_paths=("docs/a.md",))
    assert skipped.state is BuildState.SKIPPED and "nothing under app/**, Dockerfile changed" in skipped.error
    assert registry_digest(registry, repo.name, docs_only) is None
    # a payload claiming nothing relevant changed is only a hint: the diff finds app/main.py
    built = run(services, repo, app_change, before=docs_only, changed_paths=("docs/a.md",))
    assert built.state is BuildState.SUCCEEDED, built.error
    assert built.digest == registry_digest(registry, repo.name, app_change)


@pytest.mark.parametrize("builder, hit", [("classic", "Using cache"), ("buildkit", "CACHED")])
def test_cache_from_pulls_the_cache_from_the_registry(pipeline, repo, registry, docker_client, base_image, builder, hit):
    """With the engine's images and build cache gone, cache_from brings the RUN step's layer back from the registry."""
    dockerfile = f"FROM {base_image}\nRUN echo expensive-{repo.name} > /layer\nCOPY app.txt /app.txt\n"
    first = repo.commit({"Dockerfile": dockerfile, "app.txt": "1\n"})
    second = repo.commit({"app.txt": "2\n"})
    built = run(pipeline(builder=builder), repo, first)
    assert built.state is BuildState.SUCCEEDED, built.error
    for tag in built.tags:
        docker_client.images.remove(tag, force=True)
    docker_client.api.prune_builds(all=True)
    services = pipeline(builder=builder, cache_from=[f"{registry}/{repo.name}:main"])
    cached = run(services, repo, second)
    assert cached.state is BuildState.SUCCEEDED, cached.error
    log, _ = services.store.log(cached.id)
    assert hit in log, log


class LocalRegistry:
    """Another CNCF registry on loopback: read-only (every push refused) or behind htpasswd basic auth."""

    def __init__(self, root, *, readonly=False, users=None):
        root.mkdir(parents=True)
        self.address = f"127.0.0.1:{free_port()}"
        config = ["version: 0.1", "storage:", "  filesystem:", f"    rootdirectory: {root / 'data'}"]
        if readonly:
            config += ["  maintenance:", "    readonly:", "      enabled: true"]
        if users:
            lines = [subprocess.run(["htpasswd", "-Bbn", user, password], capture_output=True, text=True,
                                    check=True).stdout.strip() for user, password in users.items()]
            (root / "htpasswd").write_text("\n".join(lines) + "\n")
            config += ["auth:", "  htpasswd:", "    realm: test", f"    path: {root / 'htpasswd'}"]
        config += ["http:", f"  addr: {self.address}", ""]
        (root / "config.yml").write_text("\n".join(config))
        self.log = open(root / "registry.log", "wb")
        self.process = subprocess.Popen(["docker-registry", "serve", str(root / "config.yml")],
                                        stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(lambda: _answers(f"http://{self.address}/v2/"), timeout_s=20, what="the registry")

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=10)
        self.log.close()


def _answers(url):
    try:
        return requests.get(url, timeout=1).status_code in (200, 401)
    except requests.ConnectionError:
        return False


@pytest.mark.parametrize("builder", ["classic", "buildkit"])
def test_a_build_over_its_time_limit_is_stopped(pipeline, repo, base_image, builder):
    """A step that runs past build_timeout_s fails the build, and the engine stops running it."""
    marker = f"sleep 3{uuid.uuid4().int % 1000:03d}"  # a command line unique to this run
    sha = repo.commit({"Dockerfile": f"FROM {base_image}\nRUN {marker}\n"})
    services = pipeline(builder=builder, server={"build_timeout_s": 3})
    started = time.monotonic()
    build = run(services, repo, sha)
    assert build.state is BuildState.FAILED and "took longer than 3s" in build.error
    assert time.monotonic() - started < 60
    wait_for(lambda: not running(marker), timeout_s=30, what="the step's process to be stopped")


def running(command_line: str) -> bool:
    """Say whether any process on this host (containers' included) runs ``command_line``."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if command_line in cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                return True
        except OSError:
            continue
    return False


def test_classic_steps_run_under_the_memory_limit(pipeline, repo, base_image):
    """A step needing more memory than build_memory_bytes is killed and the build fails."""
    sha = repo.commit({"Dockerfile": f"FROM {base_image}\nLABEL run={repo.name}\n"
                                     "RUN dd if=/dev/zero of=/dev/null bs=200M count=1\n"})
    build = run(pipeline(server={"build_memory_bytes": 64 * 1024 * 1024}), repo, sha)
    assert build.state is BuildState.FAILED and "non-zero code" in build.error, build.error


def test_out_of_order_pushes_leave_the_branch_tag_on_the_newer_commit(pipeline, repo, registry, base_image):
    """The newer push is built first; the older one, built after, pushes its SHA tag but leaves main alone."""
    services = pipeline()
    older = repo.commit({"Dockerfile": f"FROM {base_image}\nLABEL v=1\n"})
    newer = repo.commit({"Dockerfile": f"FROM {base_image}\nLABEL v=2\n"})
    built_newer = run(services, repo, newer, before=older)
    built_older = run(services, repo, older, before="0" * 40)
    assert (built_newer.state, built_older.state) == (BuildState.SUCCEEDED, BuildState.SUCCEEDED)
    assert registry_digest(registry, repo.name, "main") == built_newer.digest != built_older.digest
    assert registry_digest(registry, repo.name, older) == built_older.digest
    assert built_older.tags == (f"{registry}/{repo.name}:{older}",)


def test_a_build_survives_its_engine_restarting(repo, git_server, registry):
    """dockerd restarted mid-build: the build waits for it, builds again, and ends succeeded."""
    engine = EngineProcess(Path(tempfile.mkdtemp(prefix="pb-engine-", dir="/tmp")))
    try:
        services = Services(parse_config({
            "server": {"data_dir": str(engine.workdir / "state"), "mirror_dir": str(engine.workdir / "mirrors")},
            "engine": {"base_url": engine.socket},
            "repos": [{"name": repo.name, "forge": "github", "secret_env": "GITHUB_SECRET",
                       "clone_url": git_server.url(f"{repo.name}.git"), "image": f"{registry}/{repo.name}"}],
        }, SECRETS_ENV))
        # The step ends when dockerd, stopping, signals its container: the engine goes away with the
        # build under way, whatever else the engine finishes while it stops.
        sha = repo.commit({"Dockerfile": f"FROM {ENGINE_BASE_IMAGE}\nLABEL run={repo.name}\n"
                                         "RUN trap 'exit 143' TERM; sleep 5 & wait\n"})
        [build], _ = services.store.record([PushEvent(forge="github", repo=repo.name, ref="refs/heads/main", sha=sha,
                                                      before="0" * 40, pusher="t", delivery_id=None)])
        claimed = services.store.claim(build.id, owner="t", lease_s=600)
        worker = threading.Thread(target=services.pipeline().run, args=(claimed,), kwargs={"owner": "t"})
        worker.start()
        wait_for(lambda: "RUN trap" in services.store.log(build.id)[0], what="the RUN step to start")
        engine.restart()
        worker.join(timeout=300)
        ended = services.store.get(build.id)
        log, _ = services.store.log(build.id)
        assert ended.state is BuildState.SUCCEEDED, log
        assert "waiting for the engine to come back" in log, log
        assert ended.digest == registry_digest(registry, repo.name, sha)
    finally:
        engine.remove()


@pytest.mark.parametrize("files, symlinks, server, reason", [
    ({"Dockerfile": "FROM scratch\n"}, {"passwd": "/etc/passwd"}, {}, "passwd is a link to '/etc/passwd', outside the build context"),
    ({"Dockerfile": "FROM scratch\n"}, {"deep/up": "../../../outside"}, {}, "outside the build context"),
    ({"Dockerfile": "FROM scratch\n", "big.bin": "x" * 5000}, None, {"max_context_file_bytes": 4096},
     "big.bin is 5000 bytes, over the 4096-byte limit"),
])
def test_hostile_repository_contents_fail_the_build_with_the_reason(pipeline, repo, registry, files, symlinks, server, reason):
    """Links out of the context and oversized files end the build failed, saying which file, with nothing pushed."""
    sha = repo.commit(files, symlinks=symlinks)
    build = run(pipeline(server=server), repo, sha)
    assert build.state is BuildState.FAILED and reason in build.error, build.error
    assert registry_digest(registry, repo.name, sha) is None


@pytest.mark.parametrize("password, state", [("right-pass-5309", BuildState.SUCCEEDED), ("wrong-pass-0000", BuildState.FAILED)])
def test_pushes_use_the_configured_registry_credentials(pipeline, repo, tmp_path, base_image, password, state):
    """An htpasswd registry takes the push with the right password; a wrong one fails at once, unechoed."""
    registry = LocalRegistry(tmp_path / "private-registry", users={"bot": "right-pass-5309"})
    try:
        sha = repo.commit({"Dockerfile": f"FROM {base_image}\nLABEL auth=yes\n"})
        services = pipeline(image=f"{registry.address}/{repo.name}", env={"REG_PASS": password},
                            registry={"username_env": "REG_USER", "password_env": "REG_PASS"})
        build = run(services, repo, sha)
        assert build.state is state, build.error
        log, _ = services.store.log(build.id)
        assert password not in log + (build.error or "")
        if state is BuildState.SUCCEEDED:
            response = requests.head(f"http://{registry.address}/v2/{repo.name}/manifests/{sha}",
                                     auth=("bot", "right-pass-5309"), headers={"Accept": MANIFEST_TYPES}, timeout=10)
            assert response.headers["Docker-Content-Digest"] == build.digest
        else:
            assert "unauthorized" in build.error.lower() and "attempts" not in build.error
    finally:
        registry.stop()


def test_a_registry_answering_503_for_a_while_is_retried_until_the_push_lands(pipeline, repo, registry, base_image):
    """A blob upload meets a 503; it is retried (the engine retries these itself) and the image lands intact."""
    proxy = FaultyProxy(registry, lambda method, path, count: method == "POST" and "/blobs/uploads/" in path,
                        fail_status=503, times=1)
    try:
        sha = repo.commit({"Dockerfile": f"FROM {base_image}\nLABEL proxied={repo.name}\n"})
        services = pipeline(image=f"{proxy.address}/{repo.name}", server={"push_attempts": 8})
        build = run(services, repo, sha)
        assert build.state is BuildState.SUCCEEDED, build.error
        assert proxy.failed == 1
        assert build.digest == registry_digest(registry, repo.name, sha)
    finally:
        proxy.stop()


def test_a_registry_refusing_credentials_mid_push_fails_at_once(pipeline, repo, registry, base_image):
    """Blob uploads start, then the registry answers 401: a refusal, failed without retrying."""
    proxy = FaultyProxy(registry, lambda method, path, count: method in ("PATCH", "PUT") and "/blobs/uploads/" in path,
                        fail_status=401)
    try:
        sha = repo.commit({"Dockerfile": f"FROM {base_image}\nLABEL revoked={repo.name}\n"})
        services = pipeline(image=f"{proxy.address}/{repo.name}")
        build = run(services, repo, sha)
        assert build.state is BuildState.FAILED, build.error
        assert proxy.failed >= 1 and "retrying in" not in services.store.log(build.id)[0]
        assert registry_digest(registry, repo.name, sha) is None
    finally:
        proxy.stop()


# --- limits that cover the worker's own work ---------------------------------------------------

@pytest.mark.parametrize("files, server, reason", [
    ({"a.bin": "x" * 6000, "b.bin": "y" * 6000}, {"max_context_bytes": 10_000},
     "over 10000 bytes of file data (at b.bin): the limit is server.max_context_bytes"),
    ({f"f{i}": "" for i in range(5)}, {"max_context_entries": 4}, "over 4 entries"),
    ({".dockerignore": "# padding\n" * 190_000}, {}, ".dockerignore is 1900000 bytes, over the 1048576-byte limit"),
    ({"Dockerfile": "FROM scratch\nLABEL a=b\n" + "# padding\n" * 210_000}, {},
     "Dockerfile is 2100023 bytes, over the 1048576-byte limit"),
    ({".dockerignore": "\n".join(f"dir{i}/**" for i in range(2000))}, {}, ".dockerignore has 2000 patterns, over the limit"),
], ids=["bytes", "entries", "big-dockerignore", "big-dockerfile", "many-patterns"])
def test_contexts_beyond_the_workers_limits_fail_naming_the_limit(pipeline, repo, registry, base_image, files, server, reason):
    """Too much file data, too many entries, a 1.9 MB .dockerignore, a 2 MB Dockerfile, 2,000 patterns: failed, nothing pushed."""
    sha = repo.commit({"Dockerfile": f"FROM {base_image}\nCOPY . /ctx\n", **files})
    build = run(pipeline(server=server), repo, sha)
    assert build.state is BuildState.FAILED and reason in build.error, build.error
    assert registry_digest(registry, repo.name, sha) is None


@pytest.mark.parametrize("builder", ["classic", "buildkit"])
def test_a_link_leaving_the_context_through_another_link_fails_the_build(pipeline, repo, registry, base_image, builder):
    """leak -> s/../etc/passwd beside s -> . fails the build naming leak (the engine never gets the whole tar); nothing is pushed."""
    sha = repo.commit({"Dockerfile": f"FROM {base_image}\nLABEL run={repo.name}\nCOPY . /ctx\n"},
                      symlinks={"s": ".", "leak": "s/../etc/passwd"})
    build = run(pipeline(builder=builder), repo, sha)
    assert build.state is BuildState.FAILED, build.error
    assert "leak is a link to 's/../etc/passwd', which resolves outside the build context" in build.error
    assert registry_digest(registry, repo.name, sha) is None


def test_a_commit_cannot_run_a_filter_from_the_workers_git_config(pipeline, repo, base_image, docker_client, tmp_path,
                                                                   monkeypatch):
    """A .gitattributes naming a filter of the worker's ~/.gitconfig: the image holds the committed bytes, the filter never ran."""
    home = tmp_path / "worker-home"
    home.mkdir()
    marker = home / "filter-ran"
    (home / ".gitconfig").write_text(f'[filter "evil"]\n\tsmudge = "touch {marker}; tr a-z A-Z"\n')
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    sha = repo.commit({".gitattributes": "* filter=evil\n", "hello.txt": "hello from the commit\n",
                       "Dockerfile": f"FROM {base_image}\nLABEL run={repo.name}\nCOPY hello.txt /hello.txt\nCMD cat /hello.txt\n"})
    build = run(pipeline(), repo, sha)
    assert build.state is BuildState.SUCCEEDED, build.error
    assert docker_client.containers.run(build.tags[0], remove=True, network_mode="none") == b"hello from the commit\n"
    assert not marker.exists()

