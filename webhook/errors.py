"""The errors pushbuild raises, one tree for the whole package.

::

    PushbuildError
    ├── ConfigError              the configuration is invalid; nothing starts
    ├── UnknownForge             a name no registered forge or status API answers to
    ├── RequestError             a request is refused; carries its HTTP status
    │   ├── BadRequest              400 malformed body, invalid ref or SHA
    │   ├── SignatureError          401 missing or wrong signature
    │   ├── Unauthorized            401 no API credential, or a wrong one
    │   ├── Forbidden               403 a credential whose scope is too small
    │   ├── NotFound                404 unknown repository or build
    │   ├── Conflict                409 the build or delivery is not in a state for that
    │   ├── PayloadTooLarge         413 body over the limit
    │   ├── UnsupportedMediaType    415 neither JSON nor form-encoded
    │   ├── Unprocessable           422 well-formed, but no rule builds it
    │   ├── TooManyRequests         429 a per-process cap (log followers) is reached
    │   └── Unreachable             502 the forge did not answer a question asked for the request
    └── BuildError               a build failed; the message is shown to users
        ├── GitError                fetching or reading the commit failed
        ├── ContextError            the commit cannot be a build context
        ├── EngineError             the Docker engine failed or refused the build
        ├── RegistryError           pushing to the registry failed
        └── Cancelled               someone cancelled the build while it ran

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


class UnknownForge(PushbuildError, LookupError):
    """A name that no registered forge (or commit status API) answers to; the message lists those that do."""


class RequestError(PushbuildError):
    """A request pushbuild refuses, answered with ``status`` and a JSON message."""

    status = 400


class BadRequest(RequestError):
    """The body or a value in it is malformed."""

    status = 400


class SignatureError(RequestError):
    """The delivery is not signed with the repository's secret."""

    status = 401


class Unauthorized(RequestError):
    """The API needs a credential this request does not carry (or carries wrong)."""

    status = 401


class Forbidden(RequestError):
    """The credential is valid, but its scope does not allow this."""

    status = 403


class Conflict(RequestError):
    """The build or delivery is not in a state that allows this (retrying a running build)."""

    status = 409


class Unprocessable(RequestError):
    """The request is well-formed but names something pushbuild will not do (no rule builds the ref)."""

    status = 422


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


class Unreachable(RequestError):
    """A peer the request needed (the forge's git server) failed; the message says which, without secrets."""

    status = 502


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


class Cancelled(BuildError):
    """The build was cancelled while it ran (``POST /api/builds/<id>/cancel``); nothing more is pushed."""
