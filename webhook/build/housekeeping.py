"""Engine housekeeping: pushbuild's own old images, dangling images and build cache beyond its size go.

Every image pushbuild built is in the registry already, so removing it from the engine loses
only cache. What is never removed (see docs/operations.md, "Retention and disk"):

- images pushbuild did not build, such as base images, unless they are dangling (no name at all:
  nothing can ask for them by name). pushbuild's labels alone do not make an image pushbuild's:
  labels are inherited through ``FROM``, and a Dockerfile may set any. An image is pushbuild's
  only when every name it has is in a configured repository's ``image``;
- the image of the newest succeeded build of each branch;
- every image a repository's ``cache_from`` names, rendered for each ref that has builds;
- images of commits queued or running now, and any image younger than ``build_timeout_s``
  (a build between its image and its push).

Of pushbuild's other images, each repository keeps its newest ``keep_images``; the rest, and
any older than ``retention_days``, are removed. :func:`images_to_remove` decides, with no I/O;
:class:`Housekeeper` gathers what it needs and acts.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ..config import Config
from ..refs import is_branch
from ..store import BuildState, BuildStore
from .engine import Engine, LocalImage
from .pipeline import PLAN_LABEL, REVISION_LABEL

log = logging.getLogger(__name__)
DAY_S = 86400.0


@dataclass(frozen=True)
class ImagePolicy:
    """Which of pushbuild's unprotected images stay; ``None`` means no limit of that kind."""

    keep_images: int | None
    retention_s: float | None
    #: Images younger than this are never removed: a build may be between building and pushing one.
    grace_s: float

    @classmethod
    def of(cls, config: Config) -> ImagePolicy:
        """The policy the configuration sets."""
        days = config.server.retention_days
        return cls(keep_images=config.engine.keep_images, retention_s=None if days is None else days * DAY_S,
                   grace_s=config.server.build_timeout_s)


def image_repository(reference: str) -> str:
    """Return the repository of an image name: ``registry:5000/acme/app:main`` → ``registry:5000/acme/app``."""
    name, colon, tag = reference.rpartition(":")
    return name if colon and "/" not in tag else reference


def images_to_remove(images: Iterable[LocalImage], *, own: set[str], keep_references: set[str],
                     keep_revisions: set[str], policy: ImagePolicy, now: float) -> list[LocalImage]:
    """Return which of pushbuild's images to remove, oldest first.

    An image is pushbuild's when it has names and all of them are in ``own`` (the configured
    repositories' ``image``); any other is left alone, whatever its labels say. It is protected by
    any name in ``keep_references``, by a revision in ``keep_revisions``, or by being younger than
    the grace period. Of the others, each repository keeps its newest ``keep_images`` that are not
    older than the retention.
    """
    unprotected: dict[str, list[LocalImage]] = defaultdict(list)
    for image in images:
        repositories = {image_repository(tag) for tag in image.tags}
        if not repositories or not repositories <= own:
            continue
        if (keep_references.intersection(image.tags) or image.labels.get(REVISION_LABEL) in keep_revisions
                or image.created > now - policy.grace_s):
            continue
        unprotected[min(repositories)].append(image)
    chosen = []
    for group in unprotected.values():
        group.sort(key=lambda image: (image.created, image.id), reverse=True)
        for rank, image in enumerate(group):
            beyond = policy.keep_images is not None and rank >= policy.keep_images
            expired = policy.retention_s is not None and image.created < now - policy.retention_s
            if beyond or expired:
                chosen.append(image)
    return sorted(chosen, key=lambda image: (image.created, image.id))


def dangling_to_remove(images: Iterable[LocalImage], *, grace_s: float, now: float) -> list[LocalImage]:
    """Return the dangling images to remove: those older than the grace period (a running build's steps are newer)."""
    return [image for image in images if not image.tags and image.created < now - grace_s]


@dataclass
class HousekeepingReport:
    """What one housekeeping run removed (or, dry, would remove)."""

    images: list[str] = field(default_factory=list)
    dangling: list[str] = field(default_factory=list)
    cache_bytes_freed: int = 0

    def __str__(self) -> str:
        return (f"{len(self.images)} of pushbuild's images, {len(self.dangling)} dangling images, "
                f"{self.cache_bytes_freed} bytes of build cache")


class Housekeeper:
    """Keeps one engine's disk bounded, as the configuration says."""

    def __init__(self, config: Config, store: BuildStore, engine: Callable[[], Engine], *,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.store = store
        self.engine = engine
        self.clock = clock

    def keep_references(self) -> set[str]:
        """The names whose images stay: each branch's newest succeeded image, and every cache_from image."""
        kept = {tag for build in self.store.newest_of_each_ref(state=BuildState.SUCCEEDED)
                if is_branch(build.ref) for tag in build.tags}
        for build in self.store.newest_of_each_ref():
            repo = self.config.repo(build.forge, build.repo)
            if repo is None or not repo.cache_from:
                continue
            plan = repo.plan(build.ref, build.sha, default_branch=build.default_branch)
            kept.update(plan.cache_from if plan else ())
        return kept

    def run(self, *, dry_run: bool = False) -> HousekeepingReport:
        """Remove what is not needed (or, with ``dry_run``, only say what that is)."""
        engine, now, report = self.engine(), self.clock(), HousekeepingReport()
        policy = ImagePolicy.of(self.config)
        doomed = images_to_remove(engine.images(label=PLAN_LABEL), own={repo.image for repo in self.config.repos},
                                  keep_references=self.keep_references(),
                                  keep_revisions=self.store.unfinished_shas(), policy=policy, now=now)
        for image in doomed:
            names = image.tags or (image.id,)
            removed = [True] if dry_run else [engine.remove_image(name) for name in names]
            if removed[-1]:  # the image goes with its last name
                report.images.append(", ".join(names))
        for image in dangling_to_remove(engine.images(dangling=True), grace_s=policy.grace_s, now=now):
            if dry_run or engine.remove_image(image.id):
                report.dangling.append(image.id)
        if self.config.engine.max_build_cache_bytes is not None and not dry_run:
            report.cache_bytes_freed = engine.prune_build_cache(self.config.engine.max_build_cache_bytes)
        if report.images or report.dangling or report.cache_bytes_freed:
            log.info("housekeeping removed %s", report)
        return report
