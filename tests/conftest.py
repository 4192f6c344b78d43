"""Fixtures: configurations, the app and its client, and the real services the e2e tests use."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from webhook import create_app
from webhook.config import Config, parse_config
from webhook.services import Services
from webhook.store import BuildStore, create_db_engine

from .helpers.configs import SECRETS_ENV, Clock, repo_table
from .helpers.gitrepo import Repo
from .helpers.gitserver import GitHttpServer
from .helpers.receivers import Receiver
from .helpers.support import AUTH_TABLE, finish, record, signed_in


def _service(name: str) -> str:
    """Return a service address the test command exported, or skip (fail under ./dev test)."""
    value = os.environ.get(name)
    if value:
        return value
    message = f"{name} is not set: run the suite with ./dev test, which starts the engine and registry"
    if os.environ.get("PUSHBUILD_TEST_REQUIRE_SERVICES"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def docker_host() -> str:
    return _service("PUSHBUILD_TEST_DOCKER_HOST")


@pytest.fixture(scope="session")
def registry() -> str:
    return _service("PUSHBUILD_TEST_REGISTRY")


@pytest.fixture(scope="session")
def base_image() -> str:
    return _service("PUSHBUILD_TEST_BASE_IMAGE")


@pytest.fixture(scope="session")
def redis_url() -> str:
    return _service("PUSHBUILD_TEST_REDIS_URL")


@pytest.fixture(scope="session")
def postgres_url() -> str:
    return _service("PUSHBUILD_TEST_POSTGRES_URL")


def _scratch_database(postgres_url: str, *, options: str = "") -> Iterator[str]:
    """Yield the URL of a database of its own on the test PostgreSQL (created with ``options``); drop it after."""
    import sqlalchemy as sa

    name = f"pushbuild_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}" {options}'))
    yield postgres_url.rsplit("/", 1)[0] + f"/{name}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def fresh_postgres_url(postgres_url: str) -> Iterator[str]:
    """A database of its own on the test PostgreSQL, dropped afterwards."""
    yield from _scratch_database(postgres_url)


@pytest.fixture
def sql_ascii_postgres_url(postgres_url: str) -> Iterator[str]:
    """A database created as SQL_ASCII on the test PostgreSQL, as a cluster initialised without LANG makes them."""
    yield from _scratch_database(postgres_url, options="ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0")


@pytest.fixture
def hook_receiver() -> Iterator[Receiver]:
    """A redeploy hook's receiving end on loopback that answers 200."""
    receiver = Receiver(answers=[200])
    yield receiver
    receiver.stop()


@pytest.fixture
def fresh_redis_url(redis_url: str) -> str:
    """The test Redis, emptied: no message of an earlier test is left in its queues."""
    import redis

    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    client.close()
    return redis_url


@pytest.fixture(scope="session")
def docker_cli() -> str:
    """A docker CLI that can run BuildKit builds (Debian's docker.io, under ./dev test)."""
    return os.environ.get("PUSHBUILD_TEST_DOCKER_CLI", "docker")


@pytest.fixture(scope="session")
def docker_client(docker_host: str) -> Iterator[docker.DockerClient]:
    client = docker.DockerClient(base_url=docker_host, version="auto")
    yield client
    client.close()


@pytest.fixture(scope="session")
def git_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitHttpServer]:
    server = GitHttpServer(tmp_path_factory.mktemp("served")).start()
    yield server
    server.stop()


@pytest.fixture
def repo_factory(git_server: GitHttpServer, tmp_path: Path):
    """Make repositories served over HTTP, each named uniquely."""

    def make(prefix: str = "acme/app") -> Repo:
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        return Repo(git_server.root, tmp_path / "work", name)

    return make


@pytest.fixture
def repo(repo_factory) -> Repo:
    """A fresh repository served over HTTP, with a name no other test uses."""
    return repo_factory()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.e2e)])
def db_url(request, tmp_path) -> str:
    """The same tests on SQLite (the default) and on PostgreSQL (when ./dev test runs one)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.sqlite'}"
    return request.getfixturevalue("fresh_postgres_url")


@pytest.fixture
def db(db_url):
    """A database with pushbuild's tables, on SQLite and (under ./dev test) PostgreSQL."""
    engine = create_db_engine(db_url)
    BuildStore(engine).create_schema()
    yield engine
    engine.dispose()


@pytest.fixture
def make_config(tmp_path: Path):
    """Build a validated :class:`Config` with state under ``tmp_path``."""

    def make(*repos: dict[str, Any], env: dict[str, str] | None = None, **sections: Any) -> Config:
        server = {"data_dir": str(tmp_path / "data"), "mirror_dir": str(tmp_path / "mirrors"),
                  **sections.pop("server", {})}
        sections.setdefault("auth", AUTH_TABLE)
        return parse_config({"server": server, "repos": list(repos), **sections}, {**SECRETS_ENV, **(env or {})})

    return make


@pytest.fixture
def config(make_config) -> Config:
    return make_config(repo_table("Codertocat/Hello-World"), repo_table("mike/diaspora", forge="gitlab"),
                       repo_table("example/example", forge="gitea"), repo_table("team_name/repo_name", forge="bitbucket"))


@pytest.fixture
def app(config: Config):
    return create_app(config)


@pytest.fixture
def client(app):
    """A client signed in with the read token."""
    return signed_in(app)


@pytest.fixture
def pipeline(tmp_path, repo, git_server, docker_host, docker_cli, registry, base_image):
    """Services for one repository served by the test git server, building on the real engine."""

    def make(env=None, server=None, **repo_settings):
        env = env or {}
        config = parse_config({
            "server": {"data_dir": str(tmp_path / "data"), "mirror_dir": str(tmp_path / "mirrors"),
                       "push_retry_s": 0.05, **(server or {})},
            "engine": {"base_url": docker_host, "docker_cli": docker_cli},
            "registry": repo_settings.pop("registry", {}),
            "repos": [{"name": repo.name, "forge": "github", "secret_env": "GITHUB_SECRET",
                       "clone_url": git_server.url(f"{repo.name}.git"), "image": f"{registry}/{repo.name}",
                       **repo_settings}],
        }, {**SECRETS_ENV, "REG_USER": "bot", "REG_PASS": "registry-pass-9876", **env})
        return Services(config)

    return make


@pytest.fixture
def built(app):
    """One finished build of the app's repository."""
    build = record(app)
    finish(app, build)
    return build
