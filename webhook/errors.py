"""The errors pushbuild raises, one tree for the whole package.

::

    PushbuildError
    ├── ConfigError              the configuration is invalid; nothing starts
    ├── RequestError             a request is refused; carries its HTTP status
    │   ├── BadRequest              400 malformed body, invalid ref or SHA
    │   ├── SignatureError          401 missing or wrong signature
    │   ├── NotFound                404 unknown repository or build
    │   ├── PayloadTooLarge         413 body over the limit
    │   ├── UnsupportedMediaType    415 neither JSON nor form-encoded
    │   └── TooManyRequests         429 a per-process cap (log followers) is reached
    └── BuildError               a build failed; the message is shown to users
        ├── GitError                fetching or reading the commit failed
        ├── ContextError            the commit cannot be a build context
        ├── EngineError             the Docker engine failed or refused the build
        └── RegistryError           pushing to the registry failed

Adapters translate library exceptions into these (``raise GitError(...) from exc``),
so callers never catch a third-party type. Messages never contain secrets.
"""

from __future__ import annotations


class PushbuildError(Exception):
    """The root of every error pushbuild raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(PushbuildError):
    """The configuration is invalid; ``problems`` lists each as ``key: what is wrong``."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems))
        self.problems = problems


class RequestError(PushbuildError):
    """A request pushbuild refuses, answered with ``status`` and a JSON message."""

    status = 400


class BadRequest(RequestError):
    """The body or a value in it is malformed."""

    status = 400


class SignatureError(RequestError):
    """The delivery is not signed with the repository's secret."""

    status = 401


class NotFound(RequestError):
    """The repository or build does not exist here."""

    status = 404


class PayloadTooLarge(RequestError):
    """The body is larger than the configured limit."""

    status = 413


class UnsupportedMediaType(RequestError):
    """The body is neither JSON nor form-encoded."""

    status = 415


class TooManyRequests(RequestError):
    """A capacity this process keeps for others is taken (log followers)."""

    status = 429


class BuildError(PushbuildError):
    """A build failed; ``message`` says why in words safe to show."""


class GitError(BuildError):
    """Fetching the commit or reading its tree failed."""


class ContextError(BuildError):
    """The commit's tree cannot serve as a build context (no Dockerfile, unsafe paths)."""


class EngineError(BuildError):
    """The Docker engine failed, or a build step failed on it; ``unreachable`` when it went away."""

    def __init__(self, message: str, *, unreachable: bool = False) -> None:
        super().__init__(message)
        self.unreachable = unreachable


class RegistryError(BuildError):
    """The registry refused or failed a push; ``temporary`` failures are worth retrying."""

    def __init__(self, message: str, *, temporary: bool = False) -> None:
        super().__init__(message)
        self.temporary = temporary
