"""The error tree (webhook/errors.py): its docstring is the tree, and each request error has its status."""

import inspect
import re

import pytest

from webhook import errors

CLASSES = {name: value for name, value in vars(errors).items()
           if inspect.isclass(value) and issubclass(value, Exception) and value.__module__ == errors.__name__}
#: Each line of the tree in the module's docstring: its depth, the class, and the status if it gives one.
TREE = [((line.index(name) - 4) // 4, name, int(status) if status else None)
        for line in errors.__doc__.split("::", 1)[1].split("\n\n")[1].splitlines()
        for name, status in [re.match(r"[ │├└─]*(\w+)\s*(\d{3}\b)?", line.removeprefix("    ")).groups()]]
STATUSES = {"BadRequest": 400, "SignatureError": 401, "Unauthorized": 401, "Forbidden": 403, "NotFound": 404,
            "Conflict": 409, "PayloadTooLarge": 413, "UnsupportedMediaType": 415, "Unprocessable": 422,
            "TooManyRequests": 429, "Unreachable": 502}


def test_the_docstrings_tree_lists_every_class_once_under_its_parent():
    """The tree a reader sees is the one the code defines: every class, each under its own base."""
    assert sorted(name for _, name, _ in TREE) == sorted(CLASSES)
    parents: list[str] = []
    for depth, name, _ in TREE:
        del parents[depth:]
        assert CLASSES[name].__bases__[0].__name__ == (parents[-1] if parents else "Exception"), name
        parents.append(name)


def test_the_docstrings_statuses_are_the_codes():
    assert {name: status for _, name, status in TREE if status} == STATUSES


@pytest.mark.parametrize("name, status", STATUSES.items())
def test_every_request_error_has_its_documented_status(name, status):
    assert issubclass(CLASSES[name], errors.RequestError) and CLASSES[name].status == status


def test_every_request_error_is_listed_with_a_status():
    """A RequestError added without a line in the table above would be answered with a status nobody chose."""
    assert {name for name, cls in CLASSES.items() if issubclass(cls, errors.RequestError) and cls is not errors.RequestError} == set(STATUSES)


def test_every_error_is_a_pushbuild_error_carrying_its_message():
    """Callers catch one root; ``message`` is what is shown."""
    for name, cls in CLASSES.items():
        assert issubclass(cls, errors.PushbuildError), name
    assert errors.NotFound("no build 7").message == "no build 7" == str(errors.NotFound("no build 7"))
    assert issubclass(errors.UnknownForge, LookupError)


def test_a_config_error_lists_each_problem():
    error = errors.ConfigError(["server.port: must be a number", "repos[0].image: missing"])
    assert error.problems == ["server.port: must be a number", "repos[0].image: missing"]
    assert error.message == "invalid configuration:\n  - server.port: must be a number\n  - repos[0].image: missing"


def test_build_errors_carry_their_flags():
    """An unreachable engine and a temporary registry failure are told apart from the rest."""
    assert errors.EngineError("gone", unreachable=True).unreachable and not errors.EngineError("RUN failed").unreachable
    assert errors.RegistryError("503", temporary=True).temporary and not errors.RegistryError("denied").temporary
