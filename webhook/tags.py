"""Which image tags a pushed ref gets. Performs no I/O."""

from __future__ import annotations

from .refs import docker_tag, is_branch, short_name


def image_tags(*, image: str, sha: str, ref: str, default_branch: str | None, latest: bool) -> list[str]:
    """Return the references to push, the full-SHA tag first.

    ``<image>:<sha>`` always; ``<image>:<branch or tag>`` made a valid Docker tag (when
    ``ref`` is not empty); and
    ``<image>:latest`` for the default branch when ``latest`` is on.
    """
    tags = [f"{image}:{sha}"]
    name = short_name(ref)  # empty for a build of a bare commit id
    if name and (tag := docker_tag(name)) and tag != sha:
        tags.append(f"{image}:{tag}")
    if latest and is_branch(ref) and name == default_branch and f"{image}:latest" not in tags:
        tags.append(f"{image}:latest")
    return tags
