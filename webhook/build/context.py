"""The build context: a commit's tree as a tar stream, with ``.dockerignore`` applied. Performs no I/O.

docker-py applies ``.dockerignore`` only when it builds the tar itself; pushbuild streams a
custom context, so it applies the file here, with docker-py's own pattern parsing and translation so the semantics
stay Docker's. The stream is rewritten entry by entry: nothing is held whole in memory.
"""

from __future__ import annotations

import posixpath
import tarfile
from collections.abc import Iterator, Mapping
from typing import IO

import re2
from docker.utils import fnmatch
from docker.utils.build import PatternMatcher, split_path

from .. import defaults
from ..errors import ContextError

DOCKERIGNORE = ".dockerignore"
_BLOCK = tarfile.BLOCKSIZE
#: The longest link target Linux can store (PATH_MAX less the terminating byte); the engine could not make a longer one.
_MAX_LINK_TARGET_BYTES = 4095


def dockerignore_patterns(text: str, *, max_patterns: int = defaults.MAX_DOCKERIGNORE_PATTERNS) -> list[str]:
    """Return the patterns of a ``.dockerignore`` file: one a line, skipping blanks and comments.

    More than ``max_patterns`` is refused: every path of the context is matched against each.
    """
    lines = (line.strip() for line in text.splitlines())
    patterns = [line for line in lines if line and not line.startswith("#")]
    if len(patterns) > max_patterns:
        raise ContextError(f"{DOCKERIGNORE} has {len(patterns)} patterns, over the limit of {max_patterns}")
    return patterns


class IgnoreRules:
    """Decides which paths of the context the engine receives."""

    def __init__(self, patterns: list[str], *, dockerfile: str) -> None:
        # Like the docker CLI: the Dockerfile and .dockerignore are always sent, even if ignored.
        matcher = PatternMatcher([*patterns, f"!{dockerfile}", f"!{DOCKERIGNORE}"])
        # docker-py's own parsed patterns and regular expressions, compiled once: its matcher keeps
        # 100 compiled patterns and, beyond that, compiles every pattern again for every path.
        self._patterns = [(p.exclusion, len(p.dirs), _compiled(p.cleaned_pattern)) for p in matcher.patterns]

    def keeps(self, path: str) -> bool:
        """Say whether ``path`` (relative to the context, ``/``-separated) is sent."""
        # docker-py's PatternMatcher.matches: the last pattern matching the path, or one of its
        # parent directories, decides; matching ignores case.
        name = path.lower()
        parents = split_path(posixpath.dirname(name))
        ignored = False
        for exclusion, depth, regex in self._patterns:
            if regex.match(name) or (depth <= len(parents) and regex.match("/".join(parents[:depth]))):
                ignored = not exclusion
        return not ignored


def _compiled(pattern: str) -> re2._Regexp:
    """Compile one cleaned pattern as docker-py's fnmatch does; an invalid one (``[z-a]``) is refused.

    The expression runs on RE2, in time linear in the path, as Docker's own Go matcher does:
    Python's backtracking engine takes exponential time on a pattern such as ``*a*a*a*a*a*a*b``,
    which a pushed ``.dockerignore`` may hold, and no deadline can interrupt one match.
    """
    try:
        return re2.compile(fnmatch.translate(pattern.lower()), _RE2_OPTIONS)
    except re2.error as exc:
        reason = exc.args[0].decode("utf-8", "replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise ContextError(f"{DOCKERIGNORE} holds an invalid pattern {pattern!r}: {reason}") from exc


#: RE2 would log every pattern it refuses to the worker's stderr; the refusal is the build's error instead.
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False


def _safe_name(name: str) -> str:
    """Return a member name normalised, refusing absolute paths and ``..``."""
    normal = posixpath.normpath(name)
    if name.startswith("/") or normal == ".." or normal.startswith("../"):
        raise ContextError(f"the commit's tree holds an unsafe path: {name!r}")
    return normal


def _check_link(name: str, member: tarfile.TarInfo) -> None:
    """Refuse a symbolic or hard link whose target is absolute or, read lexically, leaves the context."""
    if member.issym():
        target = posixpath.normpath(posixpath.join(posixpath.dirname(name), member.linkname))
    elif member.islnk():
        target = posixpath.normpath(member.linkname)
    else:
        return
    if member.linkname.startswith("/") or target == ".." or target.startswith("../"):
        raise ContextError(f"{name} is a link to {member.linkname!r}, outside the build context")
    if len(member.linkname.encode("utf-8", "surrogateescape")) > _MAX_LINK_TARGET_BYTES:
        raise ContextError(f"{name} is a link to a target of over {_MAX_LINK_TARGET_BYTES} bytes")


class _LinkResolver:
    """Resolves paths of the context through its symbolic links, component by component, as the kernel does."""

    _OUTSIDE_LINKS = -1  # a node under which no link lies

    def __init__(self, symlinks: Mapping[str, str], *, max_follows: int, max_steps: int) -> None:
        # The links' paths as a tree of numbered nodes (the root is 0), so each step is one lookup.
        self._children: dict[tuple[int, str], int] = {}
        self._targets: dict[int, str] = {}
        for name, target in symlinks.items():
            node = 0
            for part in name.split("/"):
                node = self._children.setdefault((node, part), len(self._children) + 1)
            self._targets[node] = target
        self.max_follows = max_follows
        self.max_steps = max_steps
        self._steps_left = max_steps

    def leaves(self, name: str, path: str) -> bool:
        """Say whether ``path`` (from the context root) resolves outside it; ``name`` is the link being judged."""
        pending = path.split("/")[::-1]  # a stack: the next component last
        resolved = [0]  # the nodes walked so far, from the root; never a link
        follows = 0
        while pending:
            self._steps_left -= 1
            if self._steps_left < 0:
                raise ContextError(f"the build context's links take over {self.max_steps} steps to resolve "
                                   "through each other")
            part = pending.pop()
            if part in ("", "."):
                continue
            if part == "..":
                if len(resolved) == 1:
                    return True
                resolved.pop()
                continue
            node = self._children.get((resolved[-1], part), self._OUTSIDE_LINKS)
            target = self._targets.get(node)
            if target is None:
                resolved.append(node)
                continue
            follows += 1
            if follows > self.max_follows:
                raise ContextError(f"{name} resolves through over {self.max_follows} links (a loop?)")
            if target.startswith("/"):
                return True
            pending.extend(target.split("/")[::-1])  # read from the link's directory: still resolved[-1]
        return False


def _judge_links(links: list[tuple[str, str, bool]], *, max_follows: int, max_steps: int) -> None:
    """Refuse any link that resolves outside the context through the other links the engine receives.

    ``links`` holds (name, target, symbolic). A link's own target may look inside
    (``leak -> s/../etc/passwd``) yet leave through another (``s -> .``): the kernel follows
    ``s`` before applying ``..``, and so does this check.
    """
    resolver = _LinkResolver({name: target for name, target, symbolic in links if symbolic},
                             max_follows=max_follows, max_steps=max_steps)
    for name, target, symbolic in links:
        # A symbolic link's target is read from its directory; a hard link's from the context root.
        start = posixpath.dirname(name) if symbolic else ""
        if resolver.leaves(name, f"{start}/{target}" if start else target):
            raise ContextError(f"{name} is a link to {target!r}, which resolves outside the build context "
                               "through other links")


def filtered_tar(
    source: IO[bytes], rules: IgnoreRules, *, chunk_bytes: int = defaults.CONTEXT_CHUNK_BYTES,
    max_file_bytes: int = defaults.MAX_CONTEXT_FILE_BYTES, max_bytes: int = defaults.MAX_CONTEXT_BYTES,
    max_entries: int = defaults.MAX_CONTEXT_ENTRIES, max_link_follows: int = defaults.MAX_LINK_FOLLOWS,
    max_link_steps: int = defaults.MAX_LINK_RESOLUTION_STEPS,
) -> Iterator[bytes]:
    """Read a tar stream from ``source`` and yield a tar stream of the entries ``rules`` keeps.

    Refuses entries outside the context: absolute or ``..`` paths, and links pointing out of it,
    directly or through other links; files over ``max_file_bytes``; and, over the entries kept,
    more than ``max_bytes`` of file data or more than ``max_entries`` entries. Links are judged
    once all are known, before the end-of-archive blocks: a refused context never reaches the
    engine whole. An empty chunk stands for each entry left out, so the consumer keeps control
    (its deadline) through any run of them.
    """
    entries = total_bytes = 0
    links: list[tuple[str, str, bool]] = []
    try:
        with tarfile.open(fileobj=source, mode="r|") as archive:
            for member in archive:
                name = _safe_name(member.name)
                if name == "." or not rules.keeps(name):
                    yield b""
                    continue
                _check_link(name, member)
                if member.issym() or member.islnk():
                    links.append((name, member.linkname, member.issym()))
                entries += 1
                if entries > max_entries:
                    raise ContextError(f"the build context has over {max_entries} entries (files, directories, "
                                       "links): the limit is server.max_context_entries")
                if member.size > max_file_bytes:
                    raise ContextError(f"{name} is {member.size} bytes, over the {max_file_bytes}-byte limit "
                                       "for a file in the build context")
                if member.isreg():
                    total_bytes += member.size
                    if total_bytes > max_bytes:
                        raise ContextError(f"the build context holds over {max_bytes} bytes of file data (at {name}): "
                                           "the limit is server.max_context_bytes")
                member.name = name
                yield member.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
                if member.isreg():
                    yield from _data(archive.extractfile(member), member.size, chunk_bytes)
    except tarfile.TarError as exc:
        raise ContextError(f"the commit's tree could not be read as a tar stream: {exc}") from exc
    _judge_links(links, max_follows=max_link_follows, max_steps=max_link_steps)
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
