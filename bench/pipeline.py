"""Push to pushed, side by side: the engine alone, the naive approach, and pushbuild, on real services.

    ./dev bench pipeline [--rounds 5] [--history-commits 2000] [--history-churn-kib 25]
                         [--log-lines 200000] [--large-mib 512]
    ./dev bench pipeline --short      (CI: 2 rounds, small cases; correctness only)

Four repositories, served over git's smart HTTP on loopback (``git http-backend``): a tiny one
(``FROM <base image>`` and ``RUN echo hi``, plus a few files), a long history (N commits,
each replacing one of a few binary files with random bytes, so the packs hold N times that
much), one whose build runs a step printing ``--log-lines`` lines (the log's path), and one
whose tree is ``--large-mib`` MiB of random bytes, built from a cold mirror every time. Each
round makes a new commit for each approach (a file changes), and times, from start to the digest
in the registry:

- engine alone: the commit's tree as ``git archive`` made it, held in memory, handed to the
  engine's build (docker-py, classic builder, as pushbuild's classic backend calls it, with
  pushbuild's own labels: the classic builder makes each a step), then the tag pushed. The
  lower bound: the time starts once the tar is in memory. On the cold case it starts with a
  cold ``git fetch --depth=1`` of the commit into tmpfs, as pushbuild's does.
- naive: a fresh full ``git clone`` into tmpfs, the tree tarred and gzipped in memory (Python's
  tarfile), then built and pushed the same way (not on the cold case).
- pushbuild: its web process (gunicorn) and one worker (``python -m webhook worker``), on the
  embedded defaults (SQLite state and broker, mirrors on tmpfs), from POSTing a signed GitHub
  push delivery to the SHA tag's digest in the registry; the build's ``timings`` come from
  ``GET /api/builds/<id>``. Its end is the engine's own ``push`` event for the SHA tag, which the
  engine sends once the registry took the manifest, read from the engine's event stream as it
  comes: asking the registry a hundred times a second instead took CPU from the engine on a
  2-core machine and made pushbuild's build look 100 ms slower than it is.

One warm-up round per case comes first (the engine's cache of the ``RUN`` step, pushbuild's
mirror, the worker's start): it is checked, not counted. The order of the approaches rotates
from round to round. Every build must succeed with the digest the registry serves, and
pushbuild's images must carry the labels the engine alone was given; otherwise the bench fails.
Reported: medians per case and approach, ratios to the engine alone, pushbuild's queue wait
p50/p99, and its time beyond the engine's, phase by phase. Unless ``--short`` (which
reports timings without judging them), it fails when issue 11's targets are not met: queue wait
p50 ≤ 50 ms and p99 ≤ 200 ms, pushbuild's time beyond the engine's ≤ 150 ms on the tiny
repository, pushbuild within 1.2× of the engine on the step printing many lines and within 1.25×
of the cold fetch plus the engine on the large context, and the worker's peak RSS ≤ 150 MiB.

Services: the Docker engine, registry and base image named by ``PUSHBUILD_TEST_DOCKER_HOST``,
``PUSHBUILD_TEST_REGISTRY`` and ``PUSHBUILD_TEST_BASE_IMAGE`` (as ``./dev test`` exports them);
``./dev bench pipeline`` starts a private engine and registry when they are not set, and stops
them after. The bench itself starts the git server, gunicorn and the worker on loopback, and
stops them by pid.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.helpers.gitrepo import GIT_ENV, Repo, git  # noqa: E402
from tests.helpers.gitserver import GitHttpServer  # noqa: E402
from tests.helpers.service import Pushbuild  # noqa: E402
from tests.helpers.support import github_headers, github_push, registry_digest  # noqa: E402
from webhook.build.mirror import Mirrors  # noqa: E402
from webhook.build.pipeline import image_labels  # noqa: E402
from webhook.config import RepoConfig  # noqa: E402

SECRET = "pipeline-bench-secret"
SECRET_ENV = "BENCH_GITHUB_SECRET"
ENGINE, NAIVE, PUSHBUILD = "engine alone", "naive", "pushbuild"
APPROACHES = (ENGINE, NAIVE, PUSHBUILD)
#: Binary files the long history's commits replace in turn (the tree holds this many at each commit).
HISTORY_FILES = 20
#: The large context is made of files this big.
LARGE_FILE_MIB = 8
#: How often pushbuild's API is asked whether a build failed, while the bench waits for its push.
POLL_S = 0.5
#: A build not done after this long fails the bench.
BUILD_TIMEOUT_S = 600.0
#: Issue 11's targets, judged unless --short.
QUEUE_WAIT_P50_TARGET_S = 0.050
QUEUE_WAIT_P99_TARGET_S = 0.200
BEYOND_ENGINE_TINY_TARGET_S = 0.150
#: A build step printing many lines: pushbuild within this factor of the engine alone.
LOG_RATIO_TARGET = 1.2
#: The large context from a cold mirror: pushbuild within this factor of a cold fetch plus the engine alone.
LARGE_RATIO_TARGET = 1.25
#: The worker's resident memory, at its peak over every build of the bench.
WORKER_RSS_TARGET_BYTES = 150 * 1024 * 1024
#: pushbuild's build phases (webhook/build/timings.py), in the order a build runs them.
PIPELINE_PHASES = ("queue_wait", "fetch", "context", "build", "push")
#: The branch every push of the bench moves (``github_push``'s default), the repository's default branch.
PUSHED_REF, DEFAULT_BRANCH = "refs/heads/main", "main"


@dataclass(frozen=True)
class Services:
    """The engine, registry and base image the bench builds with (none of them started here)."""

    docker_host: str
    registry: str
    base_image: str

    @classmethod
    def from_environment(cls) -> Services:
        """Read the addresses ./dev exports; stop with a clear message when one is missing."""
        names = ("PUSHBUILD_TEST_DOCKER_HOST", "PUSHBUILD_TEST_REGISTRY", "PUSHBUILD_TEST_BASE_IMAGE")
        missing = [name for name in names if not os.environ.get(name)]
        if missing:
            raise SystemExit(f"{', '.join(missing)} not set: run ./dev bench pipeline, which starts a private "
                             "engine and registry (or run it inside ./dev test's environment)")
        return cls(*(os.environ[name] for name in names))


@dataclass(frozen=True)
class Case:
    """One repository the bench pushes to: its name (also pushbuild's image name) and its served work tree.

    A ``cold`` case starts every build from nothing: pushbuild's mirror is removed first, and the
    engine alone's time includes a cold ``git fetch --depth=1`` of the commit (what pushbuild does).
    """

    name: str
    label: str
    repo: Repo
    clone_url: str
    object_bytes: int
    approaches: tuple[str, ...] = APPROACHES
    cold: bool = False
    #: Issue 11's target for pushbuild's time over the engine alone's on this case, if it has one.
    target_ratio: float | None = None


@dataclass
class Run:
    """One build of one approach: seconds from start to digest, its phases, and whether the registry agrees."""

    case: str
    approach: str
    round: int
    sha: str
    seconds: float | None  # None: it failed
    phases: dict[str, float]
    digest: str | None
    registry_digest: str | None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.digest is not None and self.digest == self.registry_digest


# --- repositories ------------------------------------------------------------------------------

def tiny_files(base_image: str) -> dict[str, str]:
    """The tiny repository's first commit."""
    return {"Dockerfile": f"FROM {base_image}\nRUN echo hi\n", "README.md": "# tiny\n",
            "app/main.py": "print('hello')\n", "app/config.json": '{"debug": false}\n'}


def make_tiny(server: GitHttpServer, work: Path, base_image: str) -> Case:
    """A repository of one small commit, served over HTTP."""
    name = f"bench/tiny-{uuid.uuid4().hex[:8]}"
    repo = Repo(server.root, work, name)
    repo.commit(tiny_files(base_image), "tiny")
    return Case(name, "tiny repository", repo, server.url(f"{name}.git"), _object_bytes(repo.bare))


def make_history(server: GitHttpServer, work: Path, base_image: str, *, commits: int, churn_kib: int) -> Case:
    """A repository of ``commits`` commits, each replacing one of a few binary files with ``churn_kib`` KiB of random bytes.

    Written with ``git fast-import`` (one commit a subprocess would take minutes), then pushed
    to the served repository.
    """
    name = f"bench/history-{uuid.uuid4().hex[:8]}"
    repo = Repo(server.root, work, name)
    stream = io.BytesIO()

    def data(content: bytes) -> None:
        stream.write(b"data %d\n" % len(content) + content + b"\n")

    started = 1_700_000_000
    for index in range(commits):
        stream.write(b"commit refs/heads/main\n")
        stream.write(b"committer Bench <bench@example.com> %d +0000\n" % (started + index))
        data(b"change %d" % index)
        if index == 0:
            for path, text in tiny_files(base_image).items():
                stream.write(f"M 100644 inline {path}\n".encode())
                data(text.encode())
        stream.write(f"M 100644 inline assets/blob-{index % HISTORY_FILES:02d}.bin\n".encode())
        data(os.urandom(churn_kib * 1024))
    git(repo.work, "fast-import", "--quiet", input=stream.getvalue())
    git(repo.work, "reset", "-q", "--hard", "main")
    git(repo.work, "push", "-q", "origin", "main")
    return Case(name, f"{commits:,}-commit history", repo, server.url(f"{name}.git"), _object_bytes(repo.bare))


def make_log(server: GitHttpServer, work: Path, base_image: str, *, lines: int) -> Case:
    """A repository whose build runs one step printing ``lines`` lines (after a ``COPY`` each round changes)."""
    name = f"bench/log-{uuid.uuid4().hex[:8]}"
    repo = Repo(server.root, work, name)
    repo.commit({"Dockerfile": f"FROM {base_image}\nCOPY round.txt /round.txt\nRUN seq 1 {lines}\n",
                 "round.txt": "first\n"}, "log")
    return Case(name, f"a step printing {lines:,} lines", repo, server.url(f"{name}.git"), _object_bytes(repo.bare),
                target_ratio=LOG_RATIO_TARGET)


def make_large(server: GitHttpServer, work: Path, base_image: str, *, mib: int) -> Case:
    """A repository whose tree holds ``mib`` MiB of random bytes (so the whole context is that big), built from a cold mirror.

    Its Dockerfile copies one small file: the engine still takes the whole context. The naive
    approach is left out (a full clone and checkout of it in tmpfs says nothing new).
    """
    name = f"bench/large-{uuid.uuid4().hex[:8]}"
    repo = Repo(server.root, work, name)
    stream = io.BytesIO()
    stream.write(b"commit refs/heads/main\ncommitter Bench <bench@example.com> 1700000000 +0000\ndata 5\nlarge\n")
    files = {"Dockerfile": f"FROM {base_image}\nCOPY round.txt /round.txt\n".encode(), "round.txt": b"first\n"}
    for index in range(max(1, mib // LARGE_FILE_MIB)):
        files[f"data/blob-{index:03d}.bin"] = os.urandom(min(mib, LARGE_FILE_MIB) * 1024 * 1024)
    for path, content in files.items():
        stream.write(f"M 100644 inline {path}\n".encode() + b"data %d\n" % len(content) + content + b"\n")
    # Imported as packs into both (the same commit: the stream is the same), as a forge keeps its
    # repositories packed: served from loose objects, git's own fetch spends minutes looking for deltas.
    for where in (repo.work, repo.bare):
        git(where, "-c", "fastimport.unpackLimit=0", "fast-import", "--quiet", input=stream.getvalue())
    git(repo.work, "reset", "-q", "--hard", "main")
    return Case(name, f"{mib} MiB context, cold mirror", repo, server.url(f"{name}.git"), _object_bytes(repo.bare),
                approaches=(ENGINE, PUSHBUILD), cold=True, target_ratio=LARGE_RATIO_TARGET)


def _object_bytes(bare: Path) -> int:
    """Bytes of the served repository's objects (packs and loose ones)."""
    return sum(p.stat().st_size for p in (bare / "objects").rglob("*") if p.is_file())


def new_commit(case: Case, approach: str, round_: int) -> str:
    """Commit a changed file for one approach's round, so nothing built before is that image; return its id."""
    return case.repo.commit({"round.txt": f"{approach} round {round_} {uuid.uuid4()}\n"}, f"{approach} {round_}")


# --- the approaches ----------------------------------------------------------------------------

class PushEvents:
    """When the engine finished pushing each image, from its event stream, read as events come (nothing polled)."""

    def __init__(self, docker_host: str) -> None:
        self._client = docker.APIClient(base_url=docker_host, version="auto")
        self._stream = self._client.events(filters={"type": "image", "event": "push"}, decode=True)
        self._pushed: dict[str, float] = {}
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, name="push-events", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        try:
            for event in self._stream:
                with self._changed:
                    self._pushed[event.get("id") or event["Actor"]["ID"]] = event["timeNano"] / 1e9
                    self._changed.notify_all()
        except (docker.errors.DockerException, requests.RequestException, OSError, ValueError):
            pass  # closed
        finally:
            with self._changed:
                self._changed.notify_all()

    def wait(self, reference: str, *, unless: Callable[[], str | None]) -> float:
        """Return when (Unix time) the engine finished pushing ``reference``; stop on ``unless``'s reason, or after BUILD_TIMEOUT_S."""
        deadline = time.monotonic() + BUILD_TIMEOUT_S
        with self._changed:
            while reference not in self._pushed:
                if time.monotonic() > deadline or not self._reader.is_alive():
                    raise RuntimeError(f"no push event for {reference} within {BUILD_TIMEOUT_S:g}s")
                if not self._changed.wait(POLL_S) and (reason := unless()):
                    raise RuntimeError(f"gave up waiting for {reference} to be pushed: {reason}")
            return self._pushed[reference]

    def close(self) -> None:
        self._stream.close()
        self._client.close()


class Bench:
    """The services and the running pushbuild every approach's build uses."""

    def __init__(self, services: Services, pushbuild: Pushbuild, pushes: PushEvents, mirrors: Path, scratch: Path) -> None:
        self.services = services
        self.pushbuild = pushbuild
        self.pushes = pushes
        self.mirrors = Mirrors(mirrors)
        self.scratch = scratch  # on tmpfs: the engine alone's fetches
        self.client = docker.APIClient(base_url=services.docker_host, version="auto", timeout=BUILD_TIMEOUT_S)
        # As pushbuild chooses (webhook/build/engine.py): the engine's bridge, or no network when it has none.
        self.network_mode = None if self.client.networks(names=["bridge"]) else "none"
        #: What every image built ``FROM`` the base image inherits, beside the labels a build adds.
        self.base_labels = self.client.inspect_image(services.base_image)["Config"].get("Labels") or {}

    def engine_build_and_push(self, context: bytes, *, tag: str, labels: dict[str, str]) -> tuple[float, float, str]:
        """Build ``context`` (a tar, maybe gzipped) as pushbuild's classic backend calls the engine, push ``tag``.

        Return the seconds the build and the push took, and the digest the push reported.
        """
        started = time.perf_counter()
        for line in self.client.build(fileobj=io.BytesIO(context), custom_context=True, tag=tag, labels=labels,
                                      rm=True, forcerm=True, network_mode=self.network_mode, decode=True,
                                      use_config_proxy=False):
            if "error" in line or "errorDetail" in line:
                raise RuntimeError(f"building {tag} failed: {line}")
        built = time.perf_counter()
        repository, _, name = tag.rpartition(":")
        digest = None
        for line in self.client.push(repository, tag=name, stream=True, decode=True):
            if "error" in line or "errorDetail" in line:
                raise RuntimeError(f"pushing {tag} failed: {line}")
            if isinstance(line.get("aux"), dict) and line["aux"].get("Digest"):
                digest = line["aux"]["Digest"]
        if digest is None:
            raise RuntimeError(f"the registry reported no digest for {tag}")
        return built - started, time.perf_counter() - built, digest

    def labels(self, case: Case, sha: str) -> dict[str, str]:
        """The labels pushbuild puts on its images, so each approach builds the same image.

        Not fewer: each label is a step of the classic builder's that commits a container (about
        0.1 s here, ``bench/labels.py``); an engine given fewer would do less than pushbuild asks of it.
        """
        repo = repo_config(case)
        plan = repo.plan(PUSHED_REF, sha, default_branch=DEFAULT_BRANCH)
        assert plan is not None, f"pushbuild's default rules build {PUSHED_REF}"
        return image_labels(repo, sha, plan)

    def run_engine_alone(self, case: Case, sha: str, round_: int) -> Run:
        """The engine's own build and push of the commit's tree, handed to it from memory (after a cold fetch of it, if ``cold``).

        Not cold, git's own fetch of the commit into a warm repository is timed too, not counted:
        what pushbuild's fetch costs at the least.
        """
        with tempfile.TemporaryDirectory(prefix="pushbuild-bench-fetch-", dir=self.scratch) as tmp:
            phases, extra = {}, {}
            source = Path(tmp) / "cold.git" if case.cold else self.scratch / f"warm-{case.name.replace('/', '_')}.git"
            if not source.exists():
                git(self.scratch, "init", "-q", "--bare", str(source))
            started = time.perf_counter()
            git(source, "fetch", "-q", "--no-tags", "--no-write-fetch-head", "--depth=1", case.clone_url,
                f"+{sha}:refs/bench/{sha}")
            if case.cold:
                phases["fetch"] = time.perf_counter() - started
            else:
                extra["git_fetch_s_not_counted"] = time.perf_counter() - started
            started = time.perf_counter()
            tree = subprocess.run(["git", "archive", "--format=tar", f"{sha}^{{tree}}"], cwd=source,
                                  capture_output=True, check=True, env={**os.environ, **GIT_ENV}).stdout
            archived_s = time.perf_counter() - started
        image = f"{self.services.registry}/{case.name}-engine"
        phases["build"], phases["push"], digest = self.engine_build_and_push(tree, tag=f"{image}:{sha}",
                                                                             labels=self.labels(case, sha))
        return Run(case.name, ENGINE, round_, sha, sum(phases.values()), phases, digest,
                   self.registry_digest(image, sha), {**extra, "git_archive_s_not_counted": round(archived_s, 3),
                                                      "context_bytes": len(tree)})

    def run_naive(self, case: Case, sha: str, round_: int) -> Run:
        """A fresh full clone into tmpfs, the tree tarred and gzipped in memory, then built and pushed."""
        with tempfile.TemporaryDirectory(prefix="pushbuild-bench-clone-", dir="/dev/shm") as tmp:
            started = time.perf_counter()
            git(Path(tmp), "clone", "-q", case.clone_url, "tree")
            git(Path(tmp) / "tree", "checkout", "-q", sha)
            cloned = time.perf_counter()
            buffer = io.BytesIO()
            with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
                tar.add(Path(tmp) / "tree", arcname=".", filter=lambda info: None if info.name == "./.git" else info)
            context = buffer.getvalue()
            tarred = time.perf_counter()
        image = f"{self.services.registry}/{case.name}-naive"
        build_s, push_s, digest = self.engine_build_and_push(context, tag=f"{image}:{sha}", labels=self.labels(case, sha))
        phases = {"clone": cloned - started, "tar_gzip": tarred - cloned, "build": build_s, "push": push_s}
        return Run(case.name, NAIVE, round_, sha, sum(phases.values()), phases, digest, self.registry_digest(image, sha),
                   {"context_bytes": len(context)})

    def run_pushbuild(self, case: Case, sha: str, round_: int) -> Run:
        """A signed GitHub push delivery to pushbuild, until the SHA tag's digest is in the registry and the build is recorded."""
        body = json.dumps(github_push(repo=case.name, sha=sha, ref=PUSHED_REF)).encode()
        headers = github_headers(body, SECRET)
        image = f"{self.services.registry}/{case.name}"
        if case.cold:
            shutil.rmtree(self.mirrors.path(repo_config(case)), ignore_errors=True)
        started = time.time()  # the engine's events carry Unix times
        response = self.pushbuild.post("/hooks/github", body, headers)
        answered = time.time()
        if response.status_code != 202:
            raise RuntimeError(f"pushbuild answered {response.status_code}: {response.text[:500]}")
        build_id = response.json()["build"]
        pushed = self.pushes.wait(f"{image}:{sha}", unless=lambda: self._failed(build_id))
        in_registry = self.registry_digest(image, sha)
        build = _poll(lambda: (b := self.pushbuild.build(build_id))["state"] not in ("queued", "running") and b,
                      what=f"build {build_id} to be recorded")
        recorded = time.time()
        built_with = self.client.inspect_image(f"{image}:{sha}")["Config"].get("Labels") or {}
        if built_with != {**self.base_labels, **self.labels(case, sha)}:  # the engine alone must do the same steps
            raise RuntimeError(f"pushbuild labelled {image}:{sha} {built_with}, the bench gives the engine alone "
                               f"{self.labels(case, sha)} (beside the base image's {self.base_labels})")
        phases = {phase: float(seconds) for phase, seconds in (build.get("timings") or {}).items()}
        return Run(case.name, PUSHBUILD, round_, sha, pushed - started, phases, build.get("digest"), in_registry,
                   {"build": build_id, "state": build["state"], "error": build.get("error"),
                    "answered_s": round(answered - started, 3), "recorded_s": round(recorded - started, 3),
                    "context_bytes": build.get("context_bytes")})

    def _failed(self, build_id: int) -> str | None:
        """The error of a build pushbuild gave up on, so the bench stops waiting for its digest."""
        build = self.pushbuild.build(build_id)
        return None if build["state"] in ("queued", "running", "succeeded") else f"{build['state']}: {build.get('error')}"

    def registry_digest(self, image: str, tag: str) -> str | None:
        """The digest the registry serves for ``image:tag`` (its own API), or ``None``."""
        registry, _, name = image.partition("/")
        return registry_digest(registry, name, tag)

    def round(self, case: Case, round_: int) -> list[Run]:
        """Each approach once, each on a new commit; the order rotates with the round."""
        runners: dict[str, Callable[[Case, str, int], Run]] = {
            ENGINE: self.run_engine_alone, NAIVE: self.run_naive, PUSHBUILD: self.run_pushbuild}
        turn = round_ % len(case.approaches)
        order = case.approaches[turn:] + case.approaches[:turn]
        runs = []
        for approach in order:
            sha = new_commit(case, approach, round_)
            try:
                runs.append(runners[approach](case, sha, round_))
            except (RuntimeError, AssertionError, docker.errors.DockerException, requests.RequestException) as exc:
                runs.append(Run(case.name, approach, round_, sha, None, {}, None, None, {"error": str(exc)}))
        return runs

    def remove_images(self, runs: list[Run]) -> None:
        """Untag what the engine-alone and naive runs made (pushbuild's own housekeeping cleans its images)."""
        for run in runs:
            suffix = {ENGINE: "-engine", NAIVE: "-naive"}.get(run.approach)
            if suffix:
                try:
                    self.client.remove_image(f"{self.services.registry}/{run.case}{suffix}:{run.sha}")
                except docker.errors.DockerException:
                    pass


def _poll(probe: Callable[[], Any], *, what: str) -> Any:
    """Call ``probe`` every 10 ms until it returns something truthy; fail after BUILD_TIMEOUT_S."""
    deadline = time.monotonic() + BUILD_TIMEOUT_S
    while time.monotonic() < deadline:
        if value := probe():
            return value
        time.sleep(0.01)
    raise RuntimeError(f"timed out after {BUILD_TIMEOUT_S:g}s waiting for {what}")


def _failure(extra: dict[str, Any]) -> str:
    """A failed run's error, after the state pushbuild recorded for it, if it got that far."""
    return f"{extra['state']}: {extra['error']}" if extra.get("state") else str(extra["error"])


def repo_config(case: Case) -> RepoConfig:
    """``case``'s repository as pushbuild's configuration names it: enough to find its mirror and make its labels."""
    return RepoConfig(name=case.name, forge="github", clone_url=case.clone_url, image=case.name)


def start_pushbuild(workdir: Path, services: Services, cases: list[Case], mirrors: Path) -> Pushbuild:
    """pushbuild's web process and one worker on the embedded defaults, serving ``cases``."""
    config = {
        "server": {"data_dir": str(workdir / "data"), "mirror_dir": str(mirrors)},
        "engine": {"base_url": services.docker_host},
        "repos": [{"name": case.name, "forge": "github", "secret_env": SECRET_ENV, "clone_url": case.clone_url,
                   "image": f"{services.registry}/{case.name}"} for case in cases],
    }
    service = Pushbuild(workdir, config, {SECRET_ENV: SECRET})
    service.start_web()
    service.start_worker()
    return service


# --- figures -----------------------------------------------------------------------------------

def peak_rss_bytes(pid: int) -> int:
    """The most memory the process ever had resident (``VmHWM``): the worker's, over every build of the bench."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmHWM for process {pid}")


def _in_order(phases: dict[str, float]) -> list[str]:
    """Phase names, pushbuild's in the order its builds run them (its API lists them alphabetically)."""
    return sorted(phases, key=lambda p: PIPELINE_PHASES.index(p) if p in PIPELINE_PHASES else -1)


def _size(size: int) -> str:
    return f"{size / 1e6:.1f} MB" if size >= 1e6 else f"{size / 1e3:.0f} kB" if size >= 1e3 else f"{size} bytes"


def _mib(size: int) -> str:
    return f"{size / 2**20:.0f} MiB"


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


def _quantile(values: list[float], q: float) -> float | None:
    values = sorted(values)
    return round(values[min(len(values) - 1, int(len(values) * q))], 3) if values else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def _fmt(value: float | None, spec: str, unit: str = "") -> str:
    """``value`` formatted, or a dash when there is none (every run of it failed)."""
    return "-" if value is None else f"{value:{spec}}{unit}"


def summarise(cases: list[Case], runs: list[Run]) -> dict[str, Any]:
    """Medians per case and approach, ratios to the engine alone, and where pushbuild's extra time goes."""
    figures: dict[str, Any] = {}
    for case in cases:
        of = {a: [r for r in runs if r.case == case.name and r.approach == a and r.ok] for a in APPROACHES}
        medians = {a: _median([r.seconds for r in of[a]]) for a in APPROACHES}
        phases = {a: {p: _median([r.phases.get(p, 0.0) for r in of[a]]) for p in _in_order(of[a][0].phases)} if of[a] else {}
                  for a in APPROACHES}
        engine = phases[ENGINE]
        ours = phases[PUSHBUILD]
        # pushbuild's time beyond the engine's, phase by phase: what the engine alone does not do at
        # all (queue wait, fetch, intake and recording), then context + build and push against its own.
        other = _median([r.seconds - sum(r.phases.get(p, 0.0) for p in PIPELINE_PHASES) for r in of[PUSHBUILD]])
        beyond = {
            "queue_wait": ours.get("queue_wait", 0.0),
            "fetch": round(ours.get("fetch", 0.0) - engine.get("fetch", 0.0), 3),  # the engine's: a cold case's own fetch
            "context+build": round(ours.get("context", 0.0) + ours.get("build", 0.0) - engine.get("build", 0.0), 3),
            "push": round(ours.get("push", 0.0) - engine.get("push", 0.0), 3),
            "intake, dispatch and the rest": other,
        }
        figures[case.name] = {
            "case": case.label, "object_bytes": case.object_bytes, "rounds": len(of[ENGINE]),
            "median_s": medians, "phase_medians_s": phases,
            "pushbuild_recorded_median_s": _median([r.extra["recorded_s"] for r in of[PUSHBUILD]]),
            "ratio_to_engine_alone": {PUSHBUILD: _ratio(medians[PUSHBUILD], medians[ENGINE]),
                                      NAIVE: _ratio(medians[NAIVE], medians[ENGINE])},
            "pushbuild_beyond_engine_s": round(medians[PUSHBUILD] - medians[ENGINE], 3)
            if medians[PUSHBUILD] is not None and medians[ENGINE] is not None else None,
            # git's own fetch of the commit into a warm repository (none on a cold case: the engine alone's includes it)
            "git_fetch_median_s": _median([r.extra["git_fetch_s_not_counted"] for r in of[ENGINE]
                                           if "git_fetch_s_not_counted" in r.extra]),
            "pushbuild_beyond_engine_by_phase_s": beyond,
            "largest_difference_in": max(beyond, key=lambda phase: beyond[phase] or 0.0),
        }
    waits = [r.phases["queue_wait"] for r in runs if r.approach == PUSHBUILD and r.ok and "queue_wait" in r.phases]
    return {"cases": figures, "queue_wait_s": {"p50": _quantile(waits, 0.5), "p99": _quantile(waits, 0.99),
                                               "max": _quantile(waits, 1.0), "builds": len(waits)}}


def judge(figures: dict[str, Any], cases: list[Case]) -> list[str]:
    """Issue 11's targets this bench measures, each unmet one as a sentence."""
    unmet = []
    waits = figures["queue_wait_s"]
    if waits["p50"] is not None and waits["p50"] > QUEUE_WAIT_P50_TARGET_S:
        unmet.append(f"queue wait p50 {waits['p50'] * 1000:.0f} ms over {QUEUE_WAIT_P50_TARGET_S * 1000:.0f} ms")
    if waits["p99"] is not None and waits["p99"] > QUEUE_WAIT_P99_TARGET_S:
        unmet.append(f"queue wait p99 {waits['p99'] * 1000:.0f} ms over {QUEUE_WAIT_P99_TARGET_S * 1000:.0f} ms")
    beyond = figures["cases"][cases[0].name]["pushbuild_beyond_engine_s"]
    if beyond is not None and beyond > BEYOND_ENGINE_TINY_TARGET_S:
        unmet.append(f"pushbuild's time beyond the engine's on the tiny repository {beyond * 1000:.0f} ms "
                     f"over {BEYOND_ENGINE_TINY_TARGET_S * 1000:.0f} ms")
    for case in cases:
        ratio = figures["cases"][case.name]["ratio_to_engine_alone"]["pushbuild"]
        if case.target_ratio is not None and ratio is not None and ratio > case.target_ratio:
            unmet.append(f"pushbuild at {ratio:.2f}× the engine alone on {case.label}, over {case.target_ratio}×")
    if figures["worker_peak_rss_bytes"] > WORKER_RSS_TARGET_BYTES:
        unmet.append(f"the worker's peak RSS {_mib(figures['worker_peak_rss_bytes'])} over {_mib(WORKER_RSS_TARGET_BYTES)}")
    return unmet


def _run_json(run: Run) -> dict[str, Any]:
    """One run as the JSON report lists it."""
    return {"case": run.case, "approach": run.approach, "round": run.round, "sha": run.sha,
            "seconds": None if run.seconds is None else round(run.seconds, 3),
            "phases_s": {phase: round(s, 3) for phase, s in run.phases.items()},
            "digest": run.digest, "registry_digest": run.registry_digest, "ok": run.ok, **run.extra}


def report(args: argparse.Namespace, cases: list[Case], warmup: list[Run], runs: list[Run],
           figures: dict[str, Any]) -> int:
    """Print the JSON report and the tables; say what failed. The one place that prints the results."""
    print(json.dumps({"rounds": args.rounds, "history_commits": args.history_commits,
                      "history_churn_kib": args.history_churn_kib, "short": args.short, **figures,
                      "warmup": [_run_json(r) for r in warmup], "runs": [_run_json(r) for r in runs]}, indent=2))

    print(f"\nfrom start to the digest in the registry, median of {args.rounds} rounds (after one warm-up round), "
          f"on {os.cpu_count()} cores:")
    labels = {case.name: f"{case.label} ({_size(case.object_bytes)} of objects)" for case in cases}
    width = max(len(label) for label in labels.values())
    print(f"{'case':{width}} {'engine alone':>12} {'naive':>9} {'pushbuild':>10} {'naive/engine':>13} {'pushbuild/engine':>17}")
    for case in cases:
        f = figures["cases"][case.name]
        m, r = f["median_s"], f["ratio_to_engine_alone"]
        print(f"{labels[case.name]:{width}} {_fmt(m[ENGINE], '.3f', ' s'):>12} {_fmt(m[NAIVE], '.3f', ' s'):>9} "
              f"{_fmt(m[PUSHBUILD], '.3f', ' s'):>10} {_fmt(r[NAIVE], '.2f', '×'):>13} {_fmt(r[PUSHBUILD], '.2f', '×'):>17}")

    print("\nphase medians in seconds (pushbuild's from its API's timings; 'beyond' is pushbuild's median less the engine "
          "alone's,\nphase by phase: context+build and push against the engine's own, the rest counted whole):")
    for case in cases:
        f = figures["cases"][case.name]
        for approach in APPROACHES:
            phases = "  ".join(f"{p} {_fmt(s, '.3f')}" for p, s in f["phase_medians_s"][approach].items())
            if approach == PUSHBUILD:
                phases += f"  (build recorded at {_fmt(f['pushbuild_recorded_median_s'], '.3f')})"
            print(f"  {case.label:24} {approach:13} {phases}")
        beyond = "  ".join(f"{p} {_fmt(s, '+.3f')}" for p, s in f["pushbuild_beyond_engine_by_phase_s"].items())
        print(f"  {case.label:24} {'beyond':13} {_fmt(f['pushbuild_beyond_engine_s'], '+.3f')} in all: {beyond}; "
              f"most in {f['largest_difference_in']}")
        if (fetch := f["git_fetch_median_s"]) is not None and f["pushbuild_beyond_engine_s"] is not None:
            print(f"  {case.label:24} {'':13} git's own fetch of the commit into a warm repository {fetch:.3f}; "
                  f"beyond the engine and git {f['pushbuild_beyond_engine_s'] - fetch:+.3f}")
    print(f"\nthe worker's peak RSS over every build: {_mib(figures['worker_peak_rss_bytes'])}"
          f" (a cold case's engine alone includes its cold git fetch)")
    waits = figures["queue_wait_s"]
    print(f"pushbuild queue wait over {waits['builds']} builds: p50 {_fmt(waits['p50'], '.3f', ' s')}, "
          f"p99 {_fmt(waits['p99'], '.3f', ' s')}, max {_fmt(waits['max'], '.3f', ' s')}")

    failures = [f"{r.approach} build of {r.case} round {r.round} ({r.sha[:12]}): "
                + (_failure(r.extra) if r.extra.get("error") else f"digest {r.digest}, registry serves {r.registry_digest}")
                for r in [*warmup, *runs] if not r.ok]
    if args.short:
        print("(--short: correctness only; the timings are reported, not judged)")
    else:
        failures += [f"target not met: {unmet}" for unmet in judge(figures, cases)]
    if not failures:
        print(f"all {len(warmup) + len(runs)} builds succeeded with the digest the registry serves")
    sys.stdout.flush()  # the report first, then what failed
    for failure in failures:
        print(f"FAIL: {failure}", file=sys.stderr)
    return 1 if failures else 0


# --- main --------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="measured rounds per case (after one warm-up round)")
    parser.add_argument("--history-commits", type=int, default=2000, help="commits of the long history")
    parser.add_argument("--history-churn-kib", type=int, default=25,
                        help="random bytes each commit of the long history writes (its packs hold commits × this)")
    parser.add_argument("--log-lines", type=int, default=200_000, help="lines the log case's build step prints")
    parser.add_argument("--large-mib", type=int, default=512, help="MiB of the large context (built from a cold mirror)")
    parser.add_argument("--short", action="store_true",
                        help="the CI form: 2 rounds, 200 commits of 4 KiB, 20,000 lines, a 16 MiB context; "
                             "correctness only, timings not judged")
    args = parser.parse_args(argv)
    if args.short:
        args.rounds, args.history_commits, args.history_churn_kib, args.log_lines, args.large_mib = 2, 200, 4, 20_000, 16
    if args.rounds < 1 or args.history_commits < 1 or args.history_churn_kib < 0 or args.large_mib < 1:
        parser.error("--rounds, --history-commits and --large-mib must be at least 1, --history-churn-kib at least 0")
    services = Services.from_environment()

    with tempfile.TemporaryDirectory(prefix="pushbuild-bench-pipeline-") as tmp, \
            tempfile.TemporaryDirectory(prefix="pushbuild-bench-mirrors-", dir="/dev/shm") as mirrors, \
            tempfile.TemporaryDirectory(prefix="pushbuild-bench-fetches-", dir="/dev/shm") as scratch:
        workdir = Path(tmp)
        (workdir / "served").mkdir()
        server = GitHttpServer(workdir / "served").start()
        pushbuild = None
        pushes = PushEvents(services.docker_host)
        try:
            print(f"making the repositories ({args.history_commits} commits of {args.history_churn_kib} KiB)",
                  file=sys.stderr)
            cases = [make_tiny(server, workdir / "work", services.base_image),
                     make_history(server, workdir / "work", services.base_image, commits=args.history_commits,
                                  churn_kib=args.history_churn_kib),
                     make_log(server, workdir / "work", services.base_image, lines=args.log_lines),
                     make_large(server, workdir / "work", services.base_image, mib=args.large_mib)]
            (workdir / "pushbuild").mkdir()
            pushbuild = start_pushbuild(workdir / "pushbuild", services, cases, Path(mirrors))
            bench = Bench(services, pushbuild, pushes, Path(mirrors), Path(scratch))
            warmup, runs = [], []
            for case in cases:
                print(f"{case.label}: warm-up round, then {args.rounds} rounds", file=sys.stderr)
                warmup += bench.round(case, 0)
                for round_ in range(1, args.rounds + 1):
                    runs += bench.round(case, round_)
            bench.remove_images([*warmup, *runs])
            worker_peak_rss = peak_rss_bytes(pushbuild.workers[0].popen.pid)
        except Exception:
            if pushbuild is not None:
                print(pushbuild.logs()[-5000:], file=sys.stderr)
            raise
        finally:
            pushes.close()
            if pushbuild is not None:
                pushbuild.stop()
            server.stop()
    return report(args, cases, warmup, runs, {**summarise(cases, runs), "worker_peak_rss_bytes": worker_peak_rss})


if __name__ == "__main__":
    sys.exit(main())
