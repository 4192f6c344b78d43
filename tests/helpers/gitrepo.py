"""Real git repositories made by the tests: a bare one the server serves, and commits pushed to it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test Author", "GIT_AUTHOR_EMAIL": "author@example.com",
    "GIT_COMMITTER_NAME": "Test Author", "GIT_COMMITTER_EMAIL": "author@example.com",
    "GIT_CONFIG_NOSYSTEM": "1", "HOME": "/nonexistent",
}


def git(cwd: Path, *args: str, input: bytes | None = None) -> str:
    """Run git in ``cwd`` and return its stripped output; fail loudly."""
    result = subprocess.run(["git", *args], cwd=cwd, input=input, capture_output=True,
                            env={**os.environ, **GIT_ENV}, check=False)
    if result.returncode:
        raise AssertionError(f"git {' '.join(args)} failed: {result.stderr.decode()}")
    return result.stdout.decode().strip()


class Repo:
    """A bare repository served over HTTP, and a work tree that commits and pushes to it."""

    def __init__(self, served_root: Path, work_root: Path, name: str) -> None:
        self.name = name
        self.bare = served_root / f"{name}.git"
        self.work = work_root / name
        self.bare.parent.mkdir(parents=True, exist_ok=True)
        git(self.bare.parent, "init", "-q", "--bare", "-b", "main", str(self.bare))
        git(self.bare, "config", "http.receivepack", "true")
        self.work.mkdir(parents=True)
        git(self.work, "init", "-q", "-b", "main")
        git(self.work, "remote", "add", "origin", str(self.bare))

    def commit(self, files: dict[str, str | bytes | None], message: str = "change", *,
               branch: str = "main", symlinks: dict[str, str] | None = None) -> str:
        """Write ``files`` (``None`` deletes), commit on ``branch``, push it, return the commit id."""
        existing = git(self.work, "branch", "--list", branch)
        current = git(self.work, "symbolic-ref", "--short", "HEAD")
        if current != branch:
            git(self.work, "checkout", "-q", *([] if existing else ["-b"]), branch)
        for path, content in files.items():
            target = self.work / path
            if content is None:
                target.unlink()
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content if isinstance(content, bytes) else content.encode())
        for path, points_to in (symlinks or {}).items():
            (self.work / path).parent.mkdir(parents=True, exist_ok=True)
            os.symlink(points_to, self.work / path)
        git(self.work, "add", "-A")
        git(self.work, "commit", "-q", "--allow-empty", "-m", message)
        git(self.work, "push", "-q", "origin", f"HEAD:refs/heads/{branch}")
        return git(self.work, "rev-parse", "HEAD")

    def tag(self, name: str, *, annotated: bool = False) -> str:
        """Tag HEAD, push the tag, and return the id the tag ref points to."""
        git(self.work, "tag", *(["-a", "-m", name] if annotated else []), name)
        git(self.work, "push", "-q", "origin", f"refs/tags/{name}")
        return git(self.work, "rev-parse", f"refs/tags/{name}")
