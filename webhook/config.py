"""The TOML configuration: parsed, validated and resolved against the environment.

DeliveryKeys are never written in the file: a key ending in ``_env`` names the environment
variable holding the value. :func:`parse_config` is pure; :func:`load_config` reads the file.
Every problem is reported with the key it concerns, all at once.
"""

from __future__ import annotations

import ipaddress
import os
import posixpath
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import defaults, forges
from .auth import MIN_TOKEN_CHARS, OPERATE, READ, SCOPES, Authenticator, Network
from .build.backends import BACKENDS
from .errors import ConfigError, UnknownForge
from .forges import DeliveryKeys, Forge
from .logs import FORMATS as LOG_FORMATS
from .notify.redeploy import HOOK_KINDS
from .refs import is_docker_tag
from .rules import BuildPlan, Rule, TemplateError, cache_image, default_rules, first_match, plan, render, template_values
from .urls import clone_url_problem

CONFIG_ENV = "PUSHBUILD_CONFIG"
#: The ``builder`` values a repository may name: the build backends' registry.
BUILDERS = tuple(BACKENDS)
DATABASE_URL_ENV = "PUSHBUILD_DATABASE_URL"
#: An operate token from the environment alone, named ``admin`` (``./dev serve`` makes one).
ADMIN_TOKEN_ENV = "PUSHBUILD_ADMIN_TOKEN"
BROKER_URL_ENV = "PUSHBUILD_BROKER_URL"

_IMAGE = re.compile(
    r"(?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
    r"(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
)


class Secret:
    """A value from the environment that never shows itself in ``repr``, ``str`` or logs."""

    __slots__ = ("env", "_value")

    def __init__(self, env: str, value: str) -> None:
        self.env = env
        self._value = value

    def reveal(self) -> str:
        """Return the secret value, for the one call that needs it."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret(env={self.env!r})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and (self.env, self._value) == (other.env, other._value)

    def __hash__(self) -> int:
        return hash(self.env)


@dataclass(frozen=True)
class ServerConfig:
    """Where state lives and how the service is reached and runs."""

    data_dir: Path = Path(defaults.DATA_DIR)
    mirror_dir: Path = Path(defaults.MIRROR_DIR)
    #: Base of links in replies and notifications; unset means the address a request came to.
    public_url: str | None = None
    database_url: str | None = None
    broker_url: str | None = None
    max_body_bytes: int = defaults.MAX_BODY_BYTES
    max_buffered_bytes: int = defaults.MAX_BUFFERED_BYTES
    max_context_file_bytes: int = defaults.MAX_CONTEXT_FILE_BYTES
    max_log_bytes: int = defaults.MAX_LOG_BYTES
    max_log_followers: int = defaults.MAX_LOG_FOLLOWERS
    #: A request's head must arrive within this long of its connection, its body within this long of its head (else 408).
    request_timeout_s: float = defaults.REQUEST_TIMEOUT_S
    #: ``text`` (readable) or ``json`` (one object a line, for a log collector).
    log_format: str = defaults.LOG_FORMAT
    max_context_bytes: int = defaults.MAX_CONTEXT_BYTES
    max_context_entries: int = defaults.MAX_CONTEXT_ENTRIES
    mirror_budget_bytes: int = defaults.MIRROR_BUDGET_BYTES
    allow_file_urls: bool = False
    worker_concurrency: int = defaults.WORKER_CONCURRENCY
    broker_poll_s: float = defaults.BROKER_POLL_S
    lease_s: float = defaults.LEASE_S
    heartbeat_s: float = defaults.HEARTBEAT_S
    reconcile_every_s: float = defaults.RECONCILE_EVERY_S
    redispatch_after_s: float = defaults.REDISPATCH_AFTER_S
    max_attempts: int = defaults.MAX_ATTEMPTS
    build_timeout_s: float = defaults.BUILD_TIMEOUT_S
    build_memory_bytes: int | None = defaults.BUILD_MEMORY_BYTES
    build_cpu_shares: int | None = None
    engine_attempts: int = defaults.ENGINE_ATTEMPTS
    engine_wait_s: float = defaults.ENGINE_WAIT_S
    push_attempts: int = defaults.PUSH_ATTEMPTS
    push_retry_s: float = defaults.PUSH_RETRY_S
    push_retry_max_s: float = defaults.PUSH_RETRY_MAX_S
    delivery_attempts: int = defaults.DELIVERY_ATTEMPTS
    delivery_retry_s: float = defaults.DELIVERY_RETRY_S
    delivery_retry_max_s: float = defaults.DELIVERY_RETRY_MAX_S
    #: Retention (docs/operations.md: Retention and disk); ``None`` (configured as 0 or "off") means no limit.
    retention_days: float | None = defaults.RETENTION_DAYS
    keep_builds: int | None = defaults.KEEP_BUILDS
    replay_memory_days: float | None = defaults.REPLAY_MEMORY_DAYS
    housekeeping_every_s: float | None = defaults.HOUSEKEEPING_EVERY_S

    @property
    def state_url(self) -> str:
        """The SQLAlchemy URL of the build records (SQLite in ``data_dir`` by default)."""
        return self.database_url or f"sqlite:///{self.data_dir.resolve() / defaults.STATE_DB_NAME}"

    @property
    def celery_broker_url(self) -> str:
        """The Celery broker (SQLite through SQLAlchemy in ``data_dir`` by default)."""
        return self.broker_url or f"sqla+sqlite:///{self.data_dir.resolve() / defaults.BROKER_DB_NAME}"


@dataclass(frozen=True)
class EngineConfig:
    """How to reach the Docker engine; ``base_url=None`` means the environment (DOCKER_HOST)."""

    base_url: str | None = None
    timeout_s: float = defaults.ENGINE_TIMEOUT_S
    #: Network for RUN steps; ``None`` means the engine's bridge, or no network when it has none.
    build_network: str | None = None
    #: The docker CLI the BuildKit builder drives (docker-py cannot drive BuildKit).
    docker_cli: str = defaults.DOCKER_CLI
    #: Housekeeping (docs/operations.md: Retention and disk); ``None`` (configured as 0 or "off") means no limit.
    max_build_cache_bytes: int | None = defaults.MAX_BUILD_CACHE_BYTES
    keep_images: int | None = defaults.KEEP_IMAGES


@dataclass(frozen=True)
class RegistryConfig:
    """Credentials for pushing images; both absent means anonymous pushes."""

    username: Secret | None = None
    password: Secret | None = None

    def auth(self) -> dict[str, str] | None:
        """Return docker-py's ``auth_config`` for a push, or ``None``."""
        if self.username is None or self.password is None:
            return None
        return {"username": self.username.reveal(), "password": self.password.reveal()}


@dataclass(frozen=True)
class StatusConfig:
    """Where and how to report commit statuses back to the forge."""

    token: Secret
    api_url: str
    context: str = defaults.STATUS_CONTEXT
    #: Which status API: the forge's own, or ``bitbucket-datacenter`` for a Bitbucket Data Center.
    api: str = ""


@dataclass(frozen=True)
class HookConfig:
    """One redeploy hook: who hears about a pushed image, and how."""

    name: str
    kind: str  # standard | keel | command
    url: str | None = None
    #: Set when the URL came from ``url_env``: it is then masked like any secret.
    url_secret: Secret | None = None
    argv: tuple[str, ...] = ()
    secret: Secret | None = None
    signing_key: Secret | None = None
    branches: tuple[str, ...] | None = None
    timeout_s: float = defaults.HOOK_TIMEOUT_S


@dataclass(frozen=True)
class RepoConfig:
    """One repository pushbuild builds, and how."""

    name: str
    forge: str
    clone_url: str
    image: str
    secret: Secret | None = None
    signing_token: Secret | None = None
    dockerfile: str = defaults.DOCKERFILE
    context: str = defaults.CONTEXT
    rules: tuple[Rule, ...] = default_rules(branches=None, tags=None, latest=False)
    default_branch: str | None = None
    target: str | None = None
    platform: str | None = None
    build_args: tuple[tuple[str, str], ...] = ()
    build_args_env: tuple[tuple[str, Secret], ...] = ()
    cache_from: tuple[str, ...] = ()
    builder: str = "classic"
    build_secrets: tuple[tuple[str, Secret], ...] = ()
    skip_markers: bool = True
    status: StatusConfig | None = None
    hooks: tuple[HookConfig, ...] = ()
    git_token: Secret | None = None
    git_username: str | None = None
    ssh_key_file: str | None = None
    known_hosts: tuple[str, ...] = ()
    accept_new_host_keys: bool = False
    paths: tuple[str, ...] | None = None
    cancel_superseded: bool = True
    max_concurrent_builds: int | None = None

    def builds(self, ref: str) -> bool:
        """Say whether a push of ``ref`` builds here: whether :meth:`plan` would give a plan, without making it."""
        return not ref or first_match(self.rules, ref) is not None

    def plan(self, ref: str, sha: str, *, default_branch: str | None = None) -> BuildPlan | None:
        """Return how ``ref`` at ``sha`` builds here, or ``None`` if no rule builds it."""
        args = dict(self.build_args) | {name: secret.reveal() for name, secret in self.build_args_env}
        return plan(self.rules, image=self.image, ref=ref, sha=sha,
                    default_branch=self.default_branch or default_branch, dockerfile=self.dockerfile,
                    context=self.context, build_args=tuple(args.items()), target=self.target,
                    platform=self.platform, cache_from=self.cache_from,
                    secret_args=frozenset(name for name, _ in self.build_args_env))

    def delivery_keys(self) -> DeliveryKeys:
        """Return the values this repository's deliveries are verified with."""
        return DeliveryKeys(
            name=self.name,
            secret=self.secret.reveal() if self.secret else None,
            signing_token=self.signing_token.reveal() if self.signing_token else None,
        )


@dataclass(frozen=True)
class TokenConfig:
    """One API token: its name (shown in logs and the API), its value, and what it may do."""

    name: str
    token: Secret
    scope: str


@dataclass(frozen=True)
class AuthConfig:
    """Who may use the API: tokens, and optionally the users an SSO proxy names."""

    tokens: tuple[TokenConfig, ...] = ()
    #: A header carrying a user name, believed only from ``trusted_proxies``.
    trusted_header: str | None = None
    trusted_proxies: tuple[Network, ...] = ()
    #: The scope of every user the proxy names; ``operators`` get ``operate``.
    trusted_scope: str = READ
    operators: tuple[str, ...] = ()

    def authenticator(self) -> Authenticator:
        """Return the request authenticator for these settings."""
        return Authenticator(((t.name, t.token.reveal(), t.scope) for t in self.tokens),
                             trusted_header=self.trusted_header, trusted_proxies=self.trusted_proxies,
                             trusted_scope=self.trusted_scope, operators=self.operators)


@dataclass(frozen=True)
class Config:
    """The whole validated configuration."""

    server: ServerConfig = field(default_factory=ServerConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    registry: RegistryConfig = field(default_factory=RegistryConfig)
    repos: tuple[RepoConfig, ...] = ()
    auth: AuthConfig = field(default_factory=AuthConfig)

    def repo(self, forge: str, name: str) -> RepoConfig | None:
        """Return the repository ``name`` configured for ``forge``, if any."""
        return next((r for r in self.repos if r.forge == forge and r.name == name), None)

    def repos_named(self, spec: str) -> list[RepoConfig]:
        """Return the repositories ``spec`` names: ``NAME`` on any forge, or ``FORGE:NAME`` on one."""
        forge, colon, name = spec.partition(":")
        if colon and forge in forges.NAMES:
            return [r for r in self.repos if (r.forge, r.name) == (forges.forge(forge).name, name)]
        return [r for r in self.repos if r.name == spec]

    def warnings(self) -> list[str]:
        """Return what is allowed but unsafe in this configuration, to say at start-up."""
        found = [f"repos: {repo.forge}:{repo.name} {warning}" for repo in self.repos
                 if repo.signing_token is None and (warning := forges.forge(repo.forge).unsigned_warning)]
        if self.engine.build_network == "host":
            found.append('engine.build_network = "host": RUN steps of every pushed branch reach every service on the '
                         "build host's loopback and network (pushbuild's API, the registry, databases, cloud metadata); "
                         "give builds the engine's bridge network, or a dedicated build host (docs/security.md)")
        return found

    def secrets(self) -> list[Secret]:
        """Return every secret in the configuration, for redacting text."""
        found = [self.registry.username, self.registry.password, *(t.token for t in self.auth.tokens)]
        for repo in self.repos:
            found += [repo.secret, repo.signing_token]
            found += [secret for _, secret in (*repo.build_args_env, *repo.build_secrets)]
            found += [repo.status.token] if repo.status else []
            found += [repo.git_token]
            found += [s for hook in repo.hooks for s in (hook.secret, hook.signing_key, hook.url_secret)]
        return [s for s in found if s is not None]


class _Reader:
    """Collects problems while reading one table, each tagged with its key path."""

    def __init__(self, table: object, where: str, problems: list[str], env: Mapping[str, str]) -> None:
        self.table = table if isinstance(table, Mapping) else {}
        self.where = where
        self.problems = problems
        self.env = env
        self.seen: set[str] = set()
        if not isinstance(table, Mapping):
            problems.append(f"{where}: must be a table")

    def key(self, name: str) -> str:
        """Return the dotted path of ``name`` within this table."""
        return f"{self.where}.{name}" if self.where else name

    def get(self, name: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
        """Return ``name`` if present and of type ``kind``, else record a problem."""
        self.seen.add(name)
        if name not in self.table:
            return default
        value = self.table[name]
        if not isinstance(value, kind) or (kind in (int, float, (int, float)) and isinstance(value, bool)):
            names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            self.problems.append(f"{self.key(name)}: must be of type {names}")
            return default
        return value

    def secret(self, name: str, *, required: bool = False) -> Secret | None:
        """Resolve ``<name>_env`` to a :class:`Secret`; an unset or empty variable is a problem."""
        env_name = self.get(f"{name}_env", str)
        if env_name is None:
            if required:
                self.problems.append(f"{self.key(name + '_env')}: is required")
            return None
        value = self.env.get(env_name, "")
        if not value.strip():
            self.problems.append(f"{self.key(name + '_env')}: environment variable {env_name} is unset or empty")
            return None
        return Secret(env_name, value)

    def globs(self, name: str) -> tuple[str, ...] | None:
        """Return a list of glob strings, or ``None`` when absent."""
        value = self.get(name, list)
        if value is None:
            return None
        if not all(isinstance(v, str) and v for v in value):
            self.problems.append(f"{self.key(name)}: must be a list of non-empty strings")
            return None
        return tuple(value)

    def strings(self, name: str, pattern: re.Pattern[str] | None = None, what: str = "") -> tuple[str, ...]:
        """Return a list of strings (each matching ``pattern`` if given); absent means empty."""
        value = self.get(name, list, [])
        if not all(isinstance(v, str) and v and (pattern is None or pattern.fullmatch(v)) for v in value):
            self.problems.append(f"{self.key(name)}: must be a list of {what or 'non-empty strings'}")
            return ()
        return tuple(value)

    def string_table(self, name: str, key_pattern: re.Pattern[str]) -> tuple[tuple[str, str], ...]:
        """Return a table of string values whose keys match ``key_pattern``; absent means empty."""
        value = self.get(name, dict, {})
        for key, item in value.items():
            if not key_pattern.fullmatch(key) or not isinstance(item, str):
                self.problems.append(f"{self.key(name)}.{key}: must be a string under a name like {key_pattern.pattern}")
                return ()
        return tuple(value.items())

    def secret_table(self, name: str, key_pattern: re.Pattern[str]) -> tuple[tuple[str, Secret], ...]:
        """Resolve a table of ``key = "ENV_VAR"`` into secrets; an unset variable is a problem."""
        found = []
        for key, env_name in self.string_table(name, key_pattern):
            if env_name not in self.env:
                self.problems.append(f"{self.key(name)}.{key}: environment variable {env_name} is unset")
            else:
                found.append((key, Secret(env_name, self.env[env_name])))
        return tuple(found)

    def choice(self, name: str, options: tuple[str, ...], default: str) -> str:
        """Return one of ``options``."""
        value = self.get(name, str, default)
        if value not in options:
            self.problems.append(f"{self.key(name)}: must be one of {', '.join(options)}")
            return default
        return value

    def relative_path(self, name: str, default: str) -> str:
        """Return a path inside the repository, refusing absolute paths and ``..``."""
        value = self.get(name, str, default)
        normal = posixpath.normpath(value)
        if value.startswith("/") or normal == ".." or normal.startswith("../") or "\x00" in value:
            self.problems.append(f"{self.key(name)}: must be a path inside the repository")
            return default
        return normal

    def finish(self) -> None:
        """Record every key that was present but never read: almost always a typo."""
        for name in sorted(set(self.table) - self.seen):
            self.problems.append(f"{self.key(name)}: unknown key")


def _positive(reader: _Reader, name: str, default: float, kind: type | tuple[type, ...] = (int, float)) -> Any:
    """Read a number that must be greater than zero."""
    value = reader.get(name, kind, default)
    if value is not None and value <= 0:
        reader.problems.append(f"{reader.key(name)}: must be greater than 0")
        return default
    return value


def _limit(reader: _Reader, name: str, default: float | None, kind: type | tuple[type, ...] = (int, float)) -> Any:
    """Read a limit: a number of at least 0, or "off"; 0 and "off" both mean no limit (``None``)."""
    value = reader.get(name, (kind if isinstance(kind, tuple) else (kind,)) + (str,), default)
    if isinstance(value, bool) or isinstance(value, str) and value != "off" or isinstance(value, (int, float)) and value < 0:
        reader.problems.append(f'{reader.key(name)}: must be a number of at least 0, or "off" (0 and "off" mean no limit)')
        return default
    return None if value in ("off", 0) else value


def _server(table: object, problems: list[str], env: Mapping[str, str]) -> ServerConfig:
    """Read ``[server]``."""
    r = _Reader(table, "server", problems, env)
    d = ServerConfig()
    server = ServerConfig(
        data_dir=Path(r.get("data_dir", str, str(d.data_dir))),
        mirror_dir=Path(r.get("mirror_dir", str, str(d.mirror_dir))),
        public_url=(r.get("public_url", str) or "").rstrip("/") or None,
        database_url=env.get(DATABASE_URL_ENV) or r.get("database_url", str),
        broker_url=env.get(BROKER_URL_ENV) or r.get("broker_url", str),
        max_body_bytes=_positive(r, "max_body_bytes", d.max_body_bytes, int),
        max_buffered_bytes=_positive(r, "max_buffered_bytes", d.max_buffered_bytes, int),
        max_context_file_bytes=_positive(r, "max_context_file_bytes", d.max_context_file_bytes, int),
        max_log_bytes=_positive(r, "max_log_bytes", d.max_log_bytes, int),
        max_log_followers=_positive(r, "max_log_followers", d.max_log_followers, int),
        request_timeout_s=_positive(r, "request_timeout_s", d.request_timeout_s),
        log_format=r.choice("log_format", LOG_FORMATS, d.log_format),
        max_context_bytes=_positive(r, "max_context_bytes", d.max_context_bytes, int),
        max_context_entries=_positive(r, "max_context_entries", d.max_context_entries, int),
        mirror_budget_bytes=_positive(r, "mirror_budget_bytes", d.mirror_budget_bytes, int),
        allow_file_urls=r.get("allow_file_urls", bool, False),
        worker_concurrency=_positive(r, "worker_concurrency", d.worker_concurrency, int),
        broker_poll_s=_positive(r, "broker_poll_s", d.broker_poll_s),
        lease_s=_positive(r, "lease_s", d.lease_s),
        heartbeat_s=_positive(r, "heartbeat_s", d.heartbeat_s),
        reconcile_every_s=_positive(r, "reconcile_every_s", d.reconcile_every_s),
        redispatch_after_s=_positive(r, "redispatch_after_s", d.redispatch_after_s),
        max_attempts=_positive(r, "max_attempts", d.max_attempts, int),
        build_timeout_s=_positive(r, "build_timeout_s", d.build_timeout_s),
        build_memory_bytes=_positive(r, "build_memory_bytes", d.build_memory_bytes, int),
        build_cpu_shares=_positive(r, "build_cpu_shares", None, int) if "build_cpu_shares" in r.table else None,
        engine_attempts=_positive(r, "engine_attempts", d.engine_attempts, int),
        engine_wait_s=_positive(r, "engine_wait_s", d.engine_wait_s),
        push_attempts=_positive(r, "push_attempts", d.push_attempts, int),
        push_retry_s=_positive(r, "push_retry_s", d.push_retry_s),
        push_retry_max_s=_positive(r, "push_retry_max_s", d.push_retry_max_s),
        delivery_attempts=_positive(r, "delivery_attempts", d.delivery_attempts, int),
        delivery_retry_s=_positive(r, "delivery_retry_s", d.delivery_retry_s),
        delivery_retry_max_s=_positive(r, "delivery_retry_max_s", d.delivery_retry_max_s),
        retention_days=_limit(r, "retention_days", d.retention_days),
        keep_builds=_limit(r, "keep_builds", d.keep_builds, int),
        replay_memory_days=_limit(r, "replay_memory_days", d.replay_memory_days),
        housekeeping_every_s=_limit(r, "housekeeping_every_s", d.housekeeping_every_s),
    )
    if server.heartbeat_s >= server.lease_s:
        problems.append("server.heartbeat_s: must be shorter than server.lease_s")
    r.finish()
    return server


def _engine(table: object, problems: list[str], env: Mapping[str, str]) -> EngineConfig:
    """Read ``[engine]``."""
    r = _Reader(table, "engine", problems, env)
    engine = EngineConfig(
        base_url=r.get("base_url", str),
        timeout_s=_positive(r, "timeout_s", defaults.ENGINE_TIMEOUT_S),
        build_network=r.get("build_network", str),
        docker_cli=r.get("docker_cli", str, defaults.DOCKER_CLI),
        max_build_cache_bytes=_limit(r, "max_build_cache_bytes", defaults.MAX_BUILD_CACHE_BYTES, int),
        keep_images=_limit(r, "keep_images", defaults.KEEP_IMAGES, int),
    )
    r.finish()
    return engine


def _registry(table: object, problems: list[str], env: Mapping[str, str]) -> RegistryConfig:
    """Read ``[registry]``."""
    r = _Reader(table, "registry", problems, env)
    registry = RegistryConfig(username=r.secret("username"), password=r.secret("password"))
    if (registry.username is None) != (registry.password is None) and not any("registry." in p for p in problems):
        problems.append("registry: username_env and password_env go together")
    r.finish()
    return registry


#: Build argument names; names the docker CLI itself reads from its environment are reserved.
_ARG_NAME = re.compile(r"(?!(?:PATH|HOME|LANG|TMPDIR|SSL_CERT_FILE|SSL_CERT_DIR|DOCKER_\w*|BUILDKIT_\w*|PUSHBUILD_\w*)$)"
                       r"[A-Za-z_][A-Za-z0-9_]*")
_SECRET_ID = re.compile(r"[A-Za-z0-9_.-]+")
_PLATFORM = re.compile(r"[a-z0-9]+/[a-z0-9_]+(?:/[a-z0-9]+)?")
#: An image with an optional tag, which may be a template (``{branch}``) for ``cache_from``.
_TAGGED_IMAGE = re.compile(_IMAGE.pattern + r"(?::[A-Za-z0-9_{][A-Za-z0-9_.{}-]{0,127})?")
_MATCHERS = ("branch", "tag", "branch_regex", "tag_regex")


def _rule(table: object, where: str, problems: list[str], env: Mapping[str, str]) -> Rule | None:
    """Read one ``[[repos.rules]]`` entry."""
    r = _Reader(table, where, problems, env)
    before = len(problems)
    given = [m for m in _MATCHERS if m in r.table]
    if len(given) != 1:
        problems.append(f"{where}: needs exactly one of {', '.join(_MATCHERS)}")
        r.seen.update(_MATCHERS)
        r.finish()
        return None
    matcher = given[0]
    kind = matcher.split("_")[0]
    globs, regex = None, None
    if matcher.endswith("_regex"):
        try:
            regex = re.compile(r.get(matcher, str, ""))
        except re.error as exc:
            problems.append(f"{r.key(matcher)}: is not a valid regular expression ({exc})")
    else:
        value = r.get(matcher, (str, list))
        globs = (value,) if isinstance(value, str) else r.globs(matcher)
    templates = r.strings("tags") or ("{sha}", "{ref}")
    semver = r.get("semver", bool, False)
    if semver and kind != "tag":
        problems.append(f"{r.key('semver')}: only applies to tag rules")
    if regex is not None:
        captured = {str(i): "x" for i in range(1, regex.groups + 1)} | dict.fromkeys(regex.groupindex, "x")
        sample = template_values("refs/heads/x" if kind == "branch" else "refs/tags/x", "0" * 40, captured)
    else:
        sample = template_values("refs/heads/x" if kind == "branch" else "refs/tags/x", "0" * 40, {})
    for template in templates:
        try:
            rendered = render(template, sample)
        except TemplateError as exc:
            problems.append(f"{r.key('tags')}: {exc}")
            continue
        if not is_docker_tag(rendered):
            problems.append(f"{r.key('tags')}: {template!r} must make a valid Docker tag: letters, digits, _ . -, "
                            "not starting with . or -, at most 128 characters")
    platform = r.get("platform", str)
    if platform is not None and not _PLATFORM.fullmatch(platform):
        problems.append(f"{r.key('platform')}: must look like linux/amd64 or linux/arm64/v8")
    rule = Rule(
        kind=kind, globs=globs, regex=regex, tags=templates,
        dockerfile=r.relative_path("dockerfile", "") or None if "dockerfile" in r.table else None,
        context=r.relative_path("context", "") or None if "context" in r.table else None,
        target=r.get("target", str), build_args=r.string_table("build_args", _ARG_NAME),
        platform=platform, latest=r.get("latest", bool, False), semver=semver,
    )
    r.finish()
    return rule if len(problems) == before else None


_HTTP_URL = re.compile(r"https?://[^\s/]+(/\S*)?")


def _status(table: object, where: str, forge: Forge | None, problems: list[str], env: Mapping[str, str]) -> StatusConfig | None:
    """Read ``[repos.status]``; with no known ``forge`` (a problem reported at its own key) it is read but not checked."""
    r = _Reader(table, where, problems, env)
    token = r.secret("token", required=True)
    if forge is None:
        for key in ("api", "api_url", "context"):
            r.get(key, str)
        r.finish()
        return None
    apis = forge.status_api_names
    api = r.choice("api", apis, apis[0])
    api_url = r.get("api_url", str, forges.status_api(api).default_url)
    if api_url is None:
        problems.append(f"{r.key('api_url')}: is required for {api} (such as https://gitea.example.com/api/v1)")
    elif not _HTTP_URL.fullmatch(api_url):
        problems.append(f"{r.key('api_url')}: must be an http(s) URL")
    context = r.get("context", str, defaults.STATUS_CONTEXT)
    r.finish()
    return StatusConfig(token=token, api_url=api_url, context=context, api=api) if token and api_url else None


def _hook(table: object, where: str, problems: list[str], env: Mapping[str, str]) -> HookConfig | None:
    """Read one ``[[repos.hooks]]`` entry."""
    r = _Reader(table, where, problems, env)
    before = len(problems)
    kind = r.choice("kind", HOOK_KINDS, "standard")
    url = r.get("url", str)
    url_secret = r.secret("url")  # url_env: a URL holding a key is a secret
    if url is not None and url_secret is not None:
        problems.append(f"{r.key('url_env')}: give url or url_env, not both")
    elif url_secret is not None:
        url = url_secret.reveal()
    argv = r.strings("argv")
    if kind == "command":
        if not argv:
            problems.append(f"{r.key('argv')}: a command hook needs argv, such as [\"/usr/local/bin/redeploy\", \"{{digest}}\"]")
    elif url is None or not _HTTP_URL.fullmatch(url):
        problems.append(f"{r.key('url')}: a {kind} hook needs an http(s) URL")
    secret = r.secret("secret")
    signing_key = r.secret("signing_key")
    if kind == "standard" and secret is None and signing_key is None and not any(p.startswith(where) for p in problems[before:]):
        problems.append(f"{r.key('secret_env')}: a standard hook is signed: give secret_env (whsec_…) and/or signing_key_env (whsk_…)")
    hook = HookConfig(
        name=r.get("name", str, where.rsplit(".", 1)[-1]), kind=kind, url=url, url_secret=url_secret, argv=argv, secret=secret,
        signing_key=signing_key, branches=r.globs("branches"),
        timeout_s=_positive(r, "timeout_s", defaults.HOOK_TIMEOUT_S),
    )
    r.finish()
    return hook if len(problems) == before else None


def _cache_from(r: _Reader) -> tuple[str, ...]:
    """Read ``cache_from``: image references whose tag may be a template (``{branch}``, ``{ref}``…)."""
    entries = r.strings("cache_from", _TAGGED_IMAGE, "image references, such as registry.example.com/acme/app:{branch}")
    sample = template_values("refs/heads/x", "0" * 40, {})
    for entry in entries:
        try:
            cache_image(entry, sample)
        except TemplateError as exc:
            r.problems.append(f"{r.key('cache_from')}: {exc}")
    return entries


def _forge(r: _Reader, name: str | None) -> Forge | None:
    """Return the forge a repository names (its own name or an alias); an unknown one is a problem at its key."""
    if name is None:
        return None  # reported as required
    try:
        return forges.forge(name)
    except UnknownForge:
        r.problems.append(f"{r.key('forge')}: must be one of {', '.join(forges.NAMES)}")
        return None


def _repo(table: object, where: str, problems: list[str], env: Mapping[str, str], allow_file: bool) -> RepoConfig | None:
    """Read one ``[[repos]]`` entry."""
    r = _Reader(table, where, problems, env)
    before = len(problems)
    name = r.get("name", str)
    forge = r.get("forge", str)
    clone_url = r.get("clone_url", str)
    image = r.get("image", str)
    for key in ("name", "forge", "clone_url", "image"):
        if key not in r.table:
            problems.append(f"{r.key(key)}: is required")
    spec = _forge(r, forge)
    forge = spec.name if spec else forge
    if clone_url is not None and (why := clone_url_problem(clone_url, allow_file=allow_file)):
        problems.append(f"{r.key('clone_url')}: {why}")
    if image is not None and (not _IMAGE.fullmatch(image) or len(image) > 255):
        problems.append(f"{r.key('image')}: must be an image name without tag or digest, such as registry.example.com/acme/app")
    # A forge with signing tokens (GitLab) verifies with a secret token, a signing token, or both; others need their secret.
    signs = spec is not None and spec.signing_token
    secret = r.secret("secret", required=not signs or "signing_token_env" not in r.table)
    signing_token = r.secret("signing_token") if signs else None
    if "rules" in r.table:
        for key in ("branches", "tags", "latest"):
            if key in r.table:
                problems.append(f"{r.key(key)}: goes in each rule when rules are given")
        rule_tables = r.get("rules", list, [])
        rules = tuple(_rule(t, f"{r.key('rules')}[{i}]", problems, env) for i, t in enumerate(rule_tables))
        if not rule_tables:
            problems.append(f"{r.key('rules')}: must list at least one rule")
    else:
        rules = default_rules(branches=r.globs("branches"), tags=r.globs("tags"), latest=r.get("latest", bool, False))
    platform = r.get("platform", str)
    if platform is not None and not _PLATFORM.fullmatch(platform):
        problems.append(f"{r.key('platform')}: must look like linux/amd64 or linux/arm64/v8")
    builder = r.choice("builder", BUILDERS, "classic")
    build_secrets = r.secret_table("secrets_env", _SECRET_ID)
    if build_secrets and not BACKENDS[builder].takes_secrets:
        takers = " or ".join(f'"{name}"' for name, backend in BACKENDS.items() if backend.takes_secrets)
        problems.append(f"{r.key('secrets_env')}: build secrets need builder = {takers}")
    git_token = r.secret("git_token")
    ssh_key_file = r.get("ssh_key_file", str)
    known_hosts = r.strings("known_hosts")
    accept_new = r.get("accept_new_host_keys", bool, False)
    is_ssh = clone_url is not None and not clone_url.startswith(("https://", "http://", "file://"))
    if git_token is not None and clone_url is not None and is_ssh:
        problems.append(f"{r.key('git_token_env')}: a token authenticates https clone URLs; for ssh give ssh_key_file")
    if ssh_key_file is not None and clone_url is not None and not is_ssh:
        problems.append(f"{r.key('ssh_key_file')}: needs an ssh clone_url")
    if ssh_key_file is not None and not os.path.isfile(ssh_key_file):
        problems.append(f"{r.key('ssh_key_file')}: {ssh_key_file} is not a readable file")
    if is_ssh and ssh_key_file is not None and not known_hosts and not accept_new:
        problems.append(f"{r.key('known_hosts')}: pin the server's host key (a known_hosts line, such as "
                        "`ssh-keyscan -t ed25519 github.com` prints), or set accept_new_host_keys = true")
    repo = RepoConfig(
        name=name or "",
        forge=forge or "",
        clone_url=clone_url or "",
        image=image or "",
        secret=secret,
        signing_token=signing_token,
        dockerfile=r.relative_path("dockerfile", defaults.DOCKERFILE),
        context=r.relative_path("context", defaults.CONTEXT),
        rules=tuple(rule for rule in rules if rule is not None),
        default_branch=r.get("default_branch", str),
        target=r.get("target", str),
        platform=platform,
        build_args=r.string_table("build_args", _ARG_NAME),
        build_args_env=r.secret_table("build_args_env", _ARG_NAME),
        cache_from=_cache_from(r),
        builder=builder,
        build_secrets=build_secrets,
        skip_markers=r.get("skip_markers", bool, True),
        status=_status(r.get("status", dict), r.key("status"), spec, problems, env) if "status" in r.table else None,
        hooks=tuple(h for i, t in enumerate(r.get("hooks", list, [])) if (h := _hook(t, f"{r.key('hooks')}[{i}]", problems, env))),
        git_token=git_token,
        git_username=r.get("git_username", str),
        ssh_key_file=ssh_key_file,
        known_hosts=known_hosts,
        accept_new_host_keys=accept_new,
        paths=r.globs("paths"),
        cancel_superseded=r.get("cancel_superseded", bool, True),
        max_concurrent_builds=_positive(r, "max_concurrent_builds", None, int),
    )
    r.finish()
    return repo if len(problems) == before else None


_TOKEN_NAME = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
_HEADER_NAME = re.compile(r"[A-Za-z0-9-]{1,64}")


def _token(table: object, where: str, problems: list[str], env: Mapping[str, str]) -> TokenConfig | None:
    """Read one ``[[auth.tokens]]`` entry."""
    r = _Reader(table, where, problems, env)
    before = len(problems)
    name = r.get("name", str)
    if name is None or not _TOKEN_NAME.fullmatch(name):
        problems.append(f"{r.key('name')}: is required: letters, digits, _ . @ -, at most 64 characters")
    token = r.secret("token", required=True)
    if token is not None and (len(token.reveal()) < MIN_TOKEN_CHARS or not token.reveal().isascii()
                              or any(c.isspace() or not c.isprintable() for c in token.reveal())):
        problems.append(f"{r.key('token_env')}: the token in {token.env} must be at least {MIN_TOKEN_CHARS} printable "
                        "ASCII characters without spaces (python3 -c 'import secrets; print(secrets.token_urlsafe(32))')")
    scope = r.choice("scope", SCOPES, READ)
    if "scope" not in r.table:
        problems.append(f"{r.key('scope')}: is required: one of {', '.join(SCOPES)}")
    r.finish()
    return TokenConfig(name or "", token, scope) if len(problems) == before and token is not None else None


def _auth(table: object, problems: list[str], env: Mapping[str, str]) -> AuthConfig:
    """Read ``[auth]``, plus the admin token ``$PUSHBUILD_ADMIN_TOKEN`` may give."""
    r = _Reader(table, "auth", problems, env)
    tokens = [t for i, entry in enumerate(r.get("tokens", list, []))
              if (t := _token(entry, f"auth.tokens[{i}]", problems, env)) is not None]
    if env.get(ADMIN_TOKEN_ENV):
        admin = _token({"name": "admin", "token_env": ADMIN_TOKEN_ENV, "scope": OPERATE}, ADMIN_TOKEN_ENV,
                       problems, env)
        tokens += [admin] if admin else []
    names = [t.name for t in tokens]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"auth.tokens: the name {name!r} is given to more than one token")
    values = [t.token.reveal() for t in tokens]
    if len(set(values)) != len(values):
        problems.append("auth.tokens: two tokens have the same value; give each its own")
    header = r.get("trusted_header", str)
    if header is not None and not _HEADER_NAME.fullmatch(header):
        problems.append(f"{r.key('trusted_header')}: must be a header name, such as X-Forwarded-User")
    proxies: list[Network] = []
    for value in r.strings("trusted_proxies"):
        try:
            network = ipaddress.ip_network(value, strict=False)
        except ValueError:
            problems.append(f"{r.key('trusted_proxies')}: {value!r} is not an address or network")
            continue
        if network.prefixlen == 0:
            problems.append(f"{r.key('trusted_proxies')}: {value!r} would trust every address; name the proxy's")
        proxies.append(network)
    if header is not None and not proxies:
        problems.append(f"{r.key('trusted_proxies')}: trusted_header needs the proxies' addresses: "
                        "anyone else could send the header too")
    if proxies and header is None:
        problems.append(f"{r.key('trusted_header')}: trusted_proxies needs the header they set")
    auth = AuthConfig(tokens=tuple(tokens), trusted_header=header, trusted_proxies=tuple(proxies),
                      trusted_scope=r.choice("trusted_scope", SCOPES, READ), operators=r.strings("operators"))
    r.finish()
    return auth


def parse_config(data: Mapping[str, Any], env: Mapping[str, str]) -> Config:
    """Validate a parsed TOML document against ``env``; raise :class:`ConfigError` listing every problem."""
    problems: list[str] = []
    top = _Reader(data, "", problems, env)
    server = _server(top.get("server", dict, {}), problems, env)
    engine = _engine(top.get("engine", dict, {}), problems, env)
    registry = _registry(top.get("registry", dict, {}), problems, env)
    auth = _auth(top.get("auth", dict, {}), problems, env)
    repos = []
    for i, table in enumerate(top.get("repos", list, [])):
        repo = _repo(table, f"repos[{i}]", problems, env, server.allow_file_urls)
        if repo is not None:
            if any((r.forge, r.name) == (repo.forge, repo.name) for r in repos):
                problems.append(f"repos[{i}].name: {repo.name!r} is configured twice for {repo.forge}")
            repos.append(repo)
    top.finish()
    if problems:
        raise ConfigError(problems)
    return Config(server=server, engine=engine, registry=registry, repos=tuple(repos), auth=auth)


def load_config(path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate the configuration file at ``path`` (or ``$PUSHBUILD_CONFIG``; none means defaults)."""
    env = os.environ if env is None else env
    path = path or env.get(CONFIG_ENV)
    if not path:
        return parse_config({}, env)
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ConfigError([f"{path}: cannot be read ({exc.strerror})"]) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: is not valid TOML ({exc})"]) from exc
    return parse_config(data, env)
