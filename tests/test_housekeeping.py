"""Engine housekeeping: pushbuild's old images, dangling images and unused build cache go; what is needed stays."""

import dataclasses
import io
import time

import pytest

from webhook.build.engine import LocalImage
from webhook.build.housekeeping import Housekeeper, ImagePolicy, dangling_to_remove, images_to_remove
from webhook.build.pipeline import PLAN_LABEL, REVISION_LABEL, SOURCE_LABEL
from webhook.retention import DAY_S
from webhook.store import BuildState

from .helpers.support import run_push

HOUR_S = 3600.0


# --- engine housekeeping: the selection ----------------------------------------------------------

NOW = 1_700_000_000.0
POLICY = ImagePolicy(keep_images=1, retention_s=90 * DAY_S, grace_s=HOUR_S)


def image(name, *, age_days, tags=None, repository="r/app", source="https://git/acme/app.git", revision=None):
    return LocalImage(id=f"sha256:{name}", tags=tuple(tags if tags is not None else [f"{repository}:{name}"]),
                      created=NOW - age_days * DAY_S,
                      labels={PLAN_LABEL: "p", SOURCE_LABEL: source, REVISION_LABEL: revision or name})


def chosen(images, **protected):
    found = images_to_remove(images, own={"r/app", "r/b", "127.0.0.1:5000/r/c"},
                             keep_references=protected.get("references", set()),
                             keep_revisions=protected.get("revisions", set()),
                             policy=protected.get("policy", POLICY), now=NOW)
    return [i.id.removeprefix("sha256:") for i in found]


def test_old_images_beyond_the_count_go_and_protected_ones_never():
    """Each repository keeps its newest keep_images unprotected images; names, revisions and youth protect."""
    images = [image("a1", age_days=9), image("a2", age_days=8), image("a3", age_days=7),
              image("branch-head", age_days=500), image("cache", age_days=400, tags=["r/app:cache", "r/app:old"]),
              image("building", age_days=30), image("fresh", age_days=0.01),
              image("b1", age_days=5, repository="r/b", source="https://git/acme/b.git")]
    assert chosen(images) == ["branch-head", "cache", "building", "a1", "a2"]
    assert chosen(images, references={"r/app:branch-head", "r/app:cache"}, revisions={"building"}) == ["a1", "a2"]
    assert chosen(images, references={"r/app:a3"}) == ["branch-head", "cache", "building", "a1"]


def test_only_names_under_a_configured_image_make_an_image_pushbuilds():
    """Labels are inherited through FROM and a Dockerfile may set any: an image named outside the configured
    repositories is never removed, whatever labels it carries, nor one with any such name among its others."""
    images = [image("tool", age_days=500, tags=["myteam/tool:prod"]),
              image("base", age_days=500, tags=["registry.example.com/acme/base:1.0"]),
              image("shared", age_days=500, tags=["r/app:old", "myteam/tool:latest"]),
              image("ported", age_days=500, tags=["127.0.0.1:5000/r/c:main"]),
              image("mine", age_days=500)]
    assert chosen(images) == ["mine", "ported"]


def test_images_older_than_retention_go_even_within_the_count():
    """An image past retention_days goes; with both limits off, pushbuild's images stay."""
    images = [image("ancient", age_days=100), image("newer", age_days=1)]
    assert chosen(images, policy=ImagePolicy(keep_images=5, retention_s=90 * DAY_S, grace_s=HOUR_S)) == ["ancient"]
    assert chosen(images, policy=ImagePolicy(keep_images=None, retention_s=None, grace_s=HOUR_S)) == []


def test_dangling_images_go_once_past_the_grace_period():
    """A dangling image a running build may still be using (younger than a build may take) stays."""
    old, young = image("old", age_days=1, tags=[]), image("young", age_days=0.01, tags=[])
    assert dangling_to_remove([old, young], grace_s=HOUR_S, now=NOW) == [old]


# --- engine housekeeping: a real engine --------------------------------------------------------------

@pytest.mark.e2e
def test_housekeeping_on_a_real_engine_keeps_what_is_needed_and_bounds_the_rest(
        pipeline, repo, registry, base_image, docker_client):
    """Three months on, dangling and old pushbuild images are gone; each branch's newest image, the cache_from
    image and the base image stay; the build cache no image uses is cut to max_build_cache_bytes."""
    name = f"{registry}/{repo.name}"
    limit = 6 * 1024 * 1024
    services = pipeline(cache_from=[f"{name}:cache"])
    config = dataclasses.replace(services.config, engine=dataclasses.replace(
        services.config.engine, max_build_cache_bytes=limit, keep_images=1))

    def commit(label, branch="main", megabytes=0):
        return repo.commit({"Dockerfile": f"FROM {base_image}\nRUN dd if=/dev/zero of=/blob bs=1M count={megabytes}\n"
                                          f"RUN echo {label} > /who\n"}, branch=branch)

    built = {}
    for label in ("cached", "old-1", "old-2", "old-3", "main"):
        build = run_push(services, repo, commit(label))
        assert build.state is BuildState.SUCCEEDED, build.error
        built[label] = build.tags[0]
    docker_client.images.get(built["cached"]).tag(name, "cache")  # the image cache_from names
    feature = run_push(services, repo, commit("feature", branch="feature"), ref="refs/heads/feature")
    assert feature.state is BuildState.SUCCEEDED, feature.error
    dangling = docker_client.images.build(fileobj=io.BytesIO(f"FROM {base_image}\nRUN echo dangling > /d\n".encode()),
                                          rm=True, network_mode="none")[0].id
    buildkit = pipeline(builder="buildkit")
    for megabytes in (4, 5, 3):  # build cache that no image uses once these images are gone
        build = run_push(buildkit, repo, commit(f"buildkit-{megabytes}", branch="bk", megabytes=megabytes),
                         ref="refs/heads/bk")
        assert build.state is BuildState.SUCCEEDED, build.error
        docker_client.images.remove(build.tags[0], force=True)

    report = Housekeeper(config, services.store, services.engine, clock=lambda: time.time() + 91 * DAY_S).run()

    present = {tag for image in docker_client.images.list() for tag in image.tags}
    kept = {built["main"], f"{name}:main", feature.tags[0], f"{name}:cache", built["cached"], base_image}
    assert kept <= present, kept - present
    old = {built["old-1"], built["old-2"], built["old-3"]}
    assert not old & present
    assert {n for n in report.images if n.startswith(f"{name}:")} == old
    assert dangling not in {image.id for image in docker_client.images.list(all=True)}
    assert dangling in report.dangling
    unused = [r for r in docker_client.api.df()["BuildCache"] or [] if not r["Shared"] and not r["InUse"]]
    assert 0 < sum(r["Size"] for r in unused) <= limit, unused
