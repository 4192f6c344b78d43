"""The build context: a commit's tree as a tar stream, with ``.dockerignore`` applied. Performs no I/O.

docker-py applies ``.dockerignore`` only when it builds the tar itself; pushbuild streams a
custom context, so it applies the file here, with docker-py's own matcher so the semantics
stay Docker's. The stream is rewritten entry by entry: nothing is held whole in memory.
"""

from __future__ import annotations

import posixpath
import tarfile
from collections.abc import Iterator
from typing import IO

from docker.utils.build import PatternMatcher

from . import defaults
from .errors import ContextError

DOCKERIGNORE = ".dockerignore"
_BLOCK = tarfile.BLOCKSIZE


def dockerignore_patterns(text: str) -> list[str]:
    """Return the patterns of a ``.dockerignore`` file: one a line, skipping blanks and comments."""
    lines = (line.strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


class IgnoreRules:
    """Decides which paths of the context the engine receives."""

    def __init__(self, patterns: list[str], *, dockerfile: str) -> None:
        # Like the docker CLI: the Dockerfile and .dockerignore are always sent, even if ignored.
        self._matcher = PatternMatcher([*patterns, f"!{dockerfile}", f"!{DOCKERIGNORE}"])

    def keeps(self, path: str) -> bool:
        """Say whether ``path`` (relative to the context, ``/``-separated) is sent."""
        return not self._matcher.matches(path)


def _safe_name(name: str) -> str:
    """Return a member name normalised, refusing absolute paths and ``..``."""
    normal = posixpath.normpath(name)
    if name.startswith("/") or normal == ".." or normal.startswith("../"):
        raise ContextError(f"the commit's tree holds an unsafe path: {name!r}")
    return normal


def _check_link(name: str, member: tarfile.TarInfo) -> None:
    """Refuse a symbolic or hard link whose target is absolute or leaves the context."""
    if member.issym():
        target = posixpath.normpath(posixpath.join(posixpath.dirname(name), member.linkname))
    elif member.islnk():
        target = posixpath.normpath(member.linkname)
    else:
        return
    if member.linkname.startswith("/") or target == ".." or target.startswith("../"):
        raise ContextError(f"{name} is a link to {member.linkname!r}, outside the build context")


def filtered_tar(
    source: IO[bytes], rules: IgnoreRules, *, chunk_bytes: int = defaults.CONTEXT_CHUNK_BYTES,
    max_file_bytes: int = defaults.MAX_CONTEXT_FILE_BYTES,
) -> Iterator[bytes]:
    """Read a tar stream from ``source`` and yield a tar stream of the entries ``rules`` keeps.

    Refuses entries outside the context: absolute or ``..`` paths, and links pointing out
    of it; and files over ``max_file_bytes``.
    """
    try:
        with tarfile.open(fileobj=source, mode="r|") as archive:
            for member in archive:
                name = _safe_name(member.name)
                if name == "." or not rules.keeps(name):
                    continue
                _check_link(name, member)
                if member.size > max_file_bytes:
                    raise ContextError(f"{name} is {member.size} bytes, over the {max_file_bytes}-byte limit "
                                       "for a file in the build context")
                member.name = name
                yield member.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
                if member.isreg():
                    yield from _data(archive.extractfile(member), member.size, chunk_bytes)
    except tarfile.TarError as exc:
        raise ContextError(f"the commit's tree could not be read as a tar stream: {exc}") from exc
    yield b"\0" * (2 * _BLOCK)


def _data(stream: IO[bytes] | None, size: int, chunk_bytes: int) -> Iterator[bytes]:
    """Yield one member's data in chunks, padded to the tar block size."""
    sent = 0
    while stream is not None and (chunk := stream.read(chunk_bytes)):
        sent += len(chunk)
        yield chunk
    if sent != size:
        raise ContextError("the commit's tree ended in the middle of a file")
    if remainder := size % _BLOCK:
        yield b"\0" * (_BLOCK - remainder)
