"""Build contexts for the backend tests: small tar streams made in memory."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator

from webhook.rules import BuildPlan


def tar_context(files: dict[str, str]) -> Iterator[bytes]:
    """A context holding ``files`` (name to text), as one chunk."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, text in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(text.encode())
            tar.addfile(info, io.BytesIO(text.encode()))
    return iter([out.getvalue()])


def tar_header(name: str, size: int) -> bytes:
    """The header of a file of ``size`` bytes, for contexts that stream its content slowly or never."""
    info = tarfile.TarInfo(name)
    info.size = size
    return info.tobuf(tarfile.PAX_FORMAT)


def plan_for(tag: str, **settings) -> BuildPlan:
    """A plan building ``./Dockerfile`` into ``tag``."""
    return BuildPlan(tags=(tag,), dockerfile="Dockerfile", context=".", **settings)
