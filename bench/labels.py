"""What each image label costs the classic builder: the same builds with none, one, two and all of pushbuild's labels.

    ./dev bench labels [--rounds 5] [--log-lines 200000]

The classic builder turns each label the build API is given into a ``LABEL`` step of its own,
and runs a container to commit it whenever an earlier step changed (every push of a new commit
that changes a file). This builds two contexts on the engine alone (docker-py, as pushbuild's
classic backend calls it), each round on a changed file, once with each number of labels, the
order turning from round to round: the tiny repository's (``COPY`` a file) and the log case's
(then a step printing ``--log-lines`` lines). The labels are pushbuild's own
(``webhook.build.pipeline.image_labels``), added in their sorted order. Reported: medians, and
each label's cost (the slope from none to all).

Every build must succeed and carry the labels it was given (beside the base image's); otherwise
the bench fails. CI runs it with ``--rounds 1 --log-lines 2000`` for that alone.

Services as ``bench/pipeline.py``'s: ``./dev bench labels`` starts a private engine and registry
unless ``./dev test``'s ``PUSHBUILD_TEST_*`` variables are set, and stops them after.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

import docker

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.helpers.build_contexts import tar_context  # noqa: E402
from webhook.build.pipeline import image_labels  # noqa: E402
from webhook.config import RepoConfig  # noqa: E402


def pushbuild_labels(sha: str) -> dict[str, str]:
    """The labels pushbuild puts on an image built from ``sha`` of a repository on its default rules."""
    repo = RepoConfig(name="bench/labels", forge="github", clone_url="https://git.example/bench/labels.git",
                      image="bench/labels")
    plan = repo.plan("refs/heads/main", sha, default_branch="main")
    assert plan is not None
    return image_labels(repo, sha, plan)


def context(base_image: str, *, lines: int, round_marker: str) -> bytes:
    """A tar of a Dockerfile copying a file that changes every round (and then printing ``lines`` lines, if any)."""
    dockerfile = f"FROM {base_image}\nCOPY round.txt /round.txt\n" + (f"RUN seq 1 {lines}\n" if lines else "")
    return b"".join(tar_context({"Dockerfile": dockerfile, "round.txt": round_marker + "\n"}))


def build_s(client: docker.APIClient, tar: bytes, *, labels: dict[str, str], base_labels: dict[str, str],
            network_mode: str | None) -> float:
    """Build ``tar`` with ``labels`` and check the image has them; return the seconds it took (the image is removed after)."""
    tag = f"pushbuild-bench-labels:{uuid.uuid4().hex[:12]}"
    started = time.perf_counter()
    for line in client.build(fileobj=io.BytesIO(tar), custom_context=True, tag=tag, labels=labels, rm=True,
                             forcerm=True, network_mode=network_mode, decode=True, use_config_proxy=False):
        if "error" in line or "errorDetail" in line:
            raise RuntimeError(f"building with {len(labels)} labels failed: {line}")
    took = time.perf_counter() - started
    carried = client.inspect_image(tag)["Config"].get("Labels") or {}
    client.remove_image(tag, force=True)
    if carried != {**base_labels, **labels}:
        raise RuntimeError(f"asked for the labels {labels}, the image carries {carried}")
    return took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--log-lines", type=int, default=200_000)
    args = parser.parse_args()
    missing = [name for name in ("PUSHBUILD_TEST_DOCKER_HOST", "PUSHBUILD_TEST_BASE_IMAGE") if not os.environ.get(name)]
    if missing:
        raise SystemExit(f"{', '.join(missing)} not set: run ./dev bench labels, which starts a private engine")
    client = docker.APIClient(base_url=os.environ["PUSHBUILD_TEST_DOCKER_HOST"], version="auto", timeout=600)
    base_image = os.environ["PUSHBUILD_TEST_BASE_IMAGE"]
    network_mode = None if client.networks(names=["bridge"]) else "none"
    base_labels = client.inspect_image(base_image)["Config"].get("Labels") or {}
    every = pushbuild_labels("0" * 40)
    keys = sorted(every)
    counts = list(range(len(keys) + 1))
    print(f"the engine alone, {args.rounds} rounds after a warm-up, with 0 to {len(keys)} of {', '.join(keys)}")
    for case, lines in (("tiny (COPY a file)", 0), (f"a step printing {args.log_lines:,} lines", args.log_lines)):
        seconds: dict[int, list[float]] = {count: [] for count in counts}
        for round_ in range(args.rounds + 1):
            turn = round_ % len(counts)
            for count in counts[turn:] + counts[:turn]:
                sha = uuid.uuid4().hex + uuid.uuid4().hex[:8]
                labelled = pushbuild_labels(sha)
                labels = {key: labelled[key] for key in keys[:count]}
                took = build_s(client, context(base_image, lines=lines, round_marker=sha), labels=labels,
                               base_labels=base_labels, network_mode=network_mode)
                if round_:  # the first round warms the engine's cache of the base image
                    seconds[count].append(took)
        medians = {count: statistics.median(values) for count, values in seconds.items()}
        per_label = (medians[counts[-1]] - medians[0]) / counts[-1]
        print(f"{case:32} " + "  ".join(f"{count} labels {medians[count]:.3f} s" for count in counts)
              + f"  each label +{per_label * 1000:.0f} ms ({medians[counts[-1]] / medians[0]:.2f}× with all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
