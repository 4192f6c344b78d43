"""Bare mirrors of the configured repositories, kept on tmpfs, and reading commits from them.

Adapter over GitPython. Only configured clone URLs are fetched, never a payload's; only the
pushed commit is fetched (by id, falling back to the ref), and no working tree is ever made.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shlex
import shutil
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

import git
from git.exc import BadName, GitCommandError

from .. import defaults, forges
from ..config import RepoConfig
from ..errors import ContextError, GitError
from ..logs import Log
from ..refs import validate_ref, validate_sha
from ..urls import NETWORK_SCHEMES, clone_url_problem

#: How git reports a full disk.
NO_SPACE = "No space left on device"
#: Answers git's credential requests from git's own environment, for the clone URL's host only.
CREDENTIAL_HELPER = (
    '!f() { test "$1" = get || exit 0; host=; while IFS= read -r line && [ -n "$line" ]; do '
    'case "$line" in host=*) host="${line#host=}";; esac; done; '
    '[ "$host" = "$PUSHBUILD_GIT_HOST" ] || exit 0; '
    'printf "username=%s\\npassword=%s\\n" "$PUSHBUILD_GIT_USERNAME" "$PUSHBUILD_GIT_TOKEN"; }; f'
)
_SYMLINK_MODE = 0o120000
_locks: dict[Path, threading.Lock] = {}
_locks_guard = threading.Lock()


class Mirrors:
    """The bare mirrors under one directory."""

    def __init__(self, root: Path, *, allow_file_urls: bool = False, budget_bytes: int | None = None,
                 fetch_depth: int = defaults.FETCH_DEPTH, timeout_s: float = defaults.GIT_TIMEOUT_S) -> None:
        self.root = root
        self.budget_bytes = budget_bytes
        self.allow_file_urls = allow_file_urls
        self.fetch_depth = fetch_depth
        self.timeout_s = timeout_s

    def path(self, repo: RepoConfig) -> Path:
        """Return where the mirror of ``repo`` lives; the name is derived, never taken raw."""
        readable = re.sub(r"[^A-Za-z0-9_.-]+", "_", repo.name)[:64]
        digest = hashlib.sha256(f"{repo.forge}\0{repo.name}".encode()).hexdigest()[:12]
        return self.root / f"{readable}-{digest}.git"

    def _git_options(self) -> list[str]:
        """Return ``-c`` options allowing only the transports we accept."""
        schemes = NETWORK_SCHEMES + (("file",) if self.allow_file_urls else ())
        return ["protocol.allow=never", *(f"protocol.{s}.allow=always" for s in schemes)]

    @contextlib.contextmanager
    def _open(self, repo: RepoConfig) -> Iterator[git.Repo]:
        """Open (creating if needed) the mirror of ``repo`` while holding its lock."""
        path = self.path(repo)
        with _locks_guard:
            thread_lock = _locks.setdefault(path, threading.Lock())
        path.parent.mkdir(parents=True, exist_ok=True)
        with thread_lock, open(f"{path}.lock", "w") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)  # other processes share the mirror too
            try:
                # No template: a mirror needs no sample hooks, and tmpfs space is memory. (GitPython
                # guards --template because a template can install hooks; an empty one installs none.)
                mirror = git.Repo(path) if path.exists() else git.Repo.init(
                    path, bare=True, mkdir=True, template="", allow_unsafe_options=True, env=self._env())
            except (git.exc.GitError, OSError) as exc:
                raise GitError(f"cannot open the mirror of {repo.name}: {exc}") from exc
            mirror.git.update_environment(**self._env())  # every git this repository object runs
            with mirror:
                yield mirror

    def _env(self) -> dict[str, str]:
        """Return what git adds to its environment: never prompt for credentials, read no global or system config.

        The worker's own ``~/.gitconfig`` is no business of a pushed repository: through its
        ``.gitattributes`` a commit could select a filter defined there and have ``git archive`` run it.
        """
        return {"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "/bin/false", "SSH_ASKPASS": "/bin/false",
                "GIT_PROTOCOL_FROM_USER": "0", "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}

    def git_access(self, repo: RepoConfig) -> tuple[list[str], dict[str, str]]:
        """Return the ``-c`` options and environment that authenticate fetches of ``repo``.

        An HTTPS token reaches git through a credential helper reading it from git's own
        environment, and only for the clone URL's host: it is never in a URL, the mirror's
        config, the process list or a log. An SSH deploy key is used with the pinned host keys.
        """
        options, env = self._git_options(), self._env()
        if repo.git_token is not None:
            options += ["credential.helper=", f"credential.helper={CREDENTIAL_HELPER}"]
            env.update(PUSHBUILD_GIT_HOST=urlsplit(repo.clone_url).netloc.rsplit("@", 1)[-1],
                       PUSHBUILD_GIT_USERNAME=repo.git_username or forges.forge(repo.forge).git_username,
                       PUSHBUILD_GIT_TOKEN=repo.git_token.reveal())
        if repo.ssh_key_file is not None:
            known_hosts = Path(f"{self.path(repo)}.known_hosts")
            if repo.known_hosts:
                known_hosts.write_text("\n".join(repo.known_hosts) + "\n")
            known_hosts.touch()
            checking = "accept-new" if repo.accept_new_host_keys and not repo.known_hosts else "yes"
            env["GIT_SSH_COMMAND"] = shlex.join([
                "ssh", "-F", "/dev/null", "-i", repo.ssh_key_file, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
                "-o", f"UserKnownHostsFile={known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null",
                "-o", f"StrictHostKeyChecking={checking}",
            ])
        return options, env

    def _fetch(self, mirror: git.Repo, repo: RepoConfig, refspec: str, *, depth: int | None, log: Log) -> None:
        """Fetch ``refspec`` from the configured URL into the mirror."""
        if problem := clone_url_problem(repo.clone_url, allow_file=self.allow_file_urls):
            raise GitError(f"refusing to fetch from the configured clone_url: {problem}")
        args = ["--no-tags", "--no-write-fetch-head"]
        if depth:
            args.append(f"--depth={depth}")
        log(f"$ git fetch {' '.join(args)} <clone_url> {refspec}\n")
        options, env = self.git_access(repo)
        try:
            mirror.git(c=options).fetch(
                *args, "--end-of-options", repo.clone_url, refspec, env=env, kill_after_timeout=self.timeout_s,
            )
        except GitCommandError as exc:
            raise GitError(f"git fetch failed: {(exc.stderr or '').strip() or exc.status}") from exc

    def fetch_commit(self, repo: RepoConfig, *, sha: str, ref: str | None, log: Log) -> str:
        """Make ``sha`` (pushed on ``ref``) present in the mirror; return the commit it names.

        The id is fetched directly; servers that refuse fetching by id get the ref instead.
        An annotated tag's id resolves to the tagged commit.
        """
        validate_sha(sha)
        if ref:
            validate_ref(ref)
        keep = f"refs/pushbuild/commits/{sha}"
        with self._open(repo) as mirror:
            # A commit fetched before has its own ref, a file: seeing it costs no git. Without it
            # the commit is fetched (a commit here under no ref of its own is fetched again, quickly).
            if not (self.path(repo) / keep).is_file():
                try:
                    self._fetch_commit(mirror, repo, sha=sha, ref=ref, keep=keep, log=log)
                except GitError as exc:
                    if NO_SPACE not in exc.message:
                        raise
                    log("the mirror directory is full; evicting every other mirror and trying again\n")
                    self._evict(keep=self.path(repo), budget=0, log=log)
                    try:
                        self._fetch_commit(mirror, repo, sha=sha, ref=ref, keep=keep, log=log)
                    except GitError as again:
                        shutil.rmtree(self.path(repo), ignore_errors=True)  # a cache: free what it took
                        raise GitError(f"the mirror directory {self.root} is full, even with every other mirror "
                                       f"evicted: {again.message}") from again
                self._evict(keep=self.path(repo), budget=self.budget_bytes, log=log)
            commit = _commit_of(mirror, sha)
            if commit is None:
                raise GitError(f"commit {sha} is not on the remote (was {ref} force-pushed?)")
            return commit

    def _fetch_commit(self, mirror: git.Repo, repo: RepoConfig, *, sha: str, ref: str | None, keep: str,
                      log: Log) -> None:
        """Fetch ``sha`` by id, or ``ref`` where the server will not send an unadvertised commit."""
        try:
            self._fetch(mirror, repo, f"+{sha}:{keep}", depth=self.fetch_depth, log=log)
        except GitError as by_id:
            if not ref or NO_SPACE in by_id.message:
                raise
            log(f"fetching by id failed ({by_id.message}); fetching {ref} instead\n")
            self._fetch(mirror, repo, f"+{ref}:{keep}", depth=None, log=log)

    def _evict(self, *, keep: Path, budget: int | None, log: Log) -> None:
        """Delete least recently used mirrors (not ``keep``, not in use) until all fit in ``budget`` bytes."""
        if budget is None or not self.root.is_dir():
            return
        others = [p for p in self.root.glob("*.git") if p != keep and p.is_dir()]
        sizes = {p: _size(p) for p in [*others, keep] if p.exists()}
        total = sum(sizes.values())
        for path in sorted(others, key=_last_used):
            if total <= budget:
                return
            with open(f"{path}.lock", "a") as lock_file:
                try:
                    fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # in use by another build
                shutil.rmtree(path, ignore_errors=True)
            total -= sizes.get(path, 0)
            log(f"evicted the least recently used mirror {path.name} ({sizes.get(path, 0)} bytes)\n")

    def resolve(self, repo: RepoConfig, ref: str, *, log: Log) -> str:
        """Fetch ``ref`` (``main``, ``refs/tags/v1``) and return the commit it points to."""
        full = ref if ref.startswith("refs/") else f"refs/heads/{ref}"
        validate_ref(full)
        with self._open(repo) as mirror:
            self._fetch(mirror, repo, f"+{full}:refs/pushbuild/resolve", depth=self.fetch_depth, log=log)
            commit = _commit_of(mirror, "refs/pushbuild/resolve")
        if commit is None:
            raise GitError(f"{ref} does not name a commit")
        return commit

    def changed_paths(self, repo: RepoConfig, *, before: str, after: str, log: Log) -> tuple[str, ...] | None:
        """Return the files that differ between two commits, or ``None`` if ``before`` cannot be had."""
        validate_sha(before)
        validate_sha(after)
        try:
            self.fetch_commit(repo, sha=before, ref=None, log=log)
        except GitError as exc:
            log(f"cannot fetch {before} to compare with ({exc.message}); building anyway\n")
            return None
        with self._open(repo) as mirror:
            try:
                names = mirror.git.diff("--name-only", "--no-renames", "-z", before, after, "--")
            except GitCommandError as exc:
                raise GitError(f"git diff failed: {(exc.stderr or '').strip()}") from exc
        return tuple(name for name in names.split("\0") if name)

    def remote_heads(self, repo: RepoConfig, *, timeout_s: float | None = None) -> dict[str, str]:
        """Return every branch and tag of the remote with the commit it points to (tags peeled).

        ``timeout_s`` (default: the git timeout) bounds the call; a web request asks with a short one.
        """
        if problem := clone_url_problem(repo.clone_url, allow_file=self.allow_file_urls):
            raise GitError(f"refusing to contact the configured clone_url: {problem}")
        options, env = self.git_access(repo)
        try:
            listing = git.Git()(c=options).ls_remote("--heads", "--tags", "--end-of-options", repo.clone_url,
                                                     env=env, kill_after_timeout=timeout_s or self.timeout_s)
        except GitCommandError as exc:
            raise GitError(f"git ls-remote failed: {(exc.stderr or '').strip() or exc.status}") from exc
        heads: dict[str, str] = {}
        for line in listing.splitlines():
            sha, _, ref = line.partition("\t")
            if ref.endswith("^{}"):
                heads[ref[:-3]] = sha  # the commit an annotated tag points to wins over the tag object
            else:
                heads.setdefault(ref, sha)
        return heads

    def read_file(self, repo: RepoConfig, sha: str, path: str, *,
                  max_bytes: int = defaults.MAX_BUILD_FILE_BYTES) -> bytes | None:
        """Return the content of regular file ``path`` at ``sha``; ``None`` if absent (see :meth:`read_files`)."""
        return self.read_files(repo, sha, [path], max_bytes=max_bytes)[path]

    def read_files(self, repo: RepoConfig, sha: str, paths: Iterable[str], *,
                   max_bytes: int = defaults.MAX_BUILD_FILE_BYTES) -> dict[str, bytes | None]:
        """Return the content of each regular file of ``paths`` at ``sha`` (``None`` if absent), read with one git.

        A symlink is refused: it may point outside the repository. So is a file over
        ``max_bytes``, judged by its size before any of it is read.
        """
        found: dict[str, bytes | None] = {}
        with self._open(repo) as mirror:
            try:
                tree = mirror.commit(sha).tree
            except (ValueError, BadName, GitCommandError) as exc:
                raise GitError(f"cannot read {sha}: {exc}") from exc
            for path in paths:
                try:
                    blob = tree / path
                except KeyError:
                    found[path] = None
                    continue
                except (ValueError, GitCommandError) as exc:
                    raise GitError(f"cannot read {path} at {sha}: {exc}") from exc
                if blob.type != "blob":
                    raise ContextError(f"{path} is a {blob.type}, not a file")
                if blob.mode == _SYMLINK_MODE:
                    raise ContextError(f"{path} is a symbolic link; it must be a regular file")
                if blob.size > max_bytes:
                    raise ContextError(f"{path} is {blob.size} bytes, over the {max_bytes}-byte limit for a file "
                                       "pushbuild reads itself (the Dockerfile, .dockerignore)")
                found[path] = blob.data_stream.read()
        return found

    def has_tree(self, repo: RepoConfig, sha: str, path: str) -> bool:
        """Say whether ``path`` is a directory at ``sha`` (``.`` is the root)."""
        if path == ".":
            return True
        with self._open(repo) as mirror:
            try:
                return (mirror.commit(sha).tree / path).type == "tree"
            except KeyError:
                return False

    @contextlib.contextmanager
    def archive(self, repo: RepoConfig, sha: str, subdir: str) -> Iterator[IO[bytes]]:
        """Yield a stream of ``git archive``'s tar of ``subdir`` at ``sha``; raise if git failed."""
        treeish = f"{sha}^{{tree}}" if subdir == "." else f"{sha}:{subdir}"
        process = git.Git(str(self.path(repo))).archive(
            "--format=tar", "--end-of-options", treeish, as_process=True, env=self._env(),
        )
        try:
            yield process.proc.stdout
            process.proc.stdout.read()  # drain, so git can exit
            process.wait()
        except GitCommandError as exc:
            raise GitError(f"git archive failed: {(exc.stderr or '').strip()}") from exc
        finally:
            if process.proc.poll() is None:
                process.proc.kill()
                process.proc.wait()


def _size(path: Path) -> int:
    """Bytes a directory tree occupies (allocated blocks, as tmpfs counts them)."""
    total = 0
    for directory, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(directory, name)).st_blocks * 512
            except OSError:
                continue
    return total


def _last_used(path: Path) -> float:
    """When a mirror was last opened (its lock file is rewritten on every use)."""
    try:
        return os.stat(f"{path}.lock").st_mtime
    except OSError:
        return 0.0


def _commit_of(mirror: git.Repo, rev: str) -> str | None:
    """Return the commit ``rev`` peels to, or ``None`` if it is not present."""
    try:
        return mirror.git.rev_parse("--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}")
    except GitCommandError:
        return None


