"""Secrets, repository tables and a hand-moved clock, as the tests configure pushbuild."""

from __future__ import annotations

from typing import Any

from .support import AUTH_ENV

GITHUB_SECRET = "It's a Secret to Everybody"
GITLAB_TOKEN = "gitlab-token-0123456789"
GITEA_SECRET = "gitea-secret-abcdef"
BITBUCKET_SECRET = "bitbucket-secret-123456"
SECRETS_ENV = {"GITHUB_SECRET": GITHUB_SECRET, "GITLAB_TOKEN": GITLAB_TOKEN,
               "GITEA_SECRET": GITEA_SECRET, "BITBUCKET_SECRET": BITBUCKET_SECRET, **AUTH_ENV}
SECRET_ENV_OF = {"github": "GITHUB_SECRET", "gitlab": "GITLAB_TOKEN", "gitea": "GITEA_SECRET", "bitbucket": "BITBUCKET_SECRET"}


def repo_table(name: str, *, forge: str = "github", clone_url: str = "https://git.example.com/acme/app.git",
               image: str = "127.0.0.1:5000/acme/app", **extra: Any) -> dict[str, Any]:
    """One ``[[repos]]`` table as a test would write it."""
    return {"name": name, "forge": forge, "clone_url": clone_url, "image": image,
            "secret_env": SECRET_ENV_OF.get(forge, "GITHUB_SECRET"), **extra}


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now
