"""`UserError` means exit 2, and only that: an error with another exit code is a
`FatalError` of its own kind, never a `UserError` that overrides its code."""

from __future__ import annotations

import importlib
import pkgutil

import retention
from retention.errors import ExitCode, FatalError, UserError


def _subclasses(base: type[FatalError]) -> set[type[FatalError]]:
    found: set[type[FatalError]] = set()
    todo = [base]
    while todo:
        for sub in todo.pop().__subclasses__():
            if sub not in found:
                found.add(sub)
                todo.append(sub)
    return found


def _import_all() -> None:
    for module in pkgutil.walk_packages(retention.__path__, "retention."):
        if not module.name.endswith("__main__"):  # importing it would run the CLI
            importlib.import_module(module.name)


def test_every_user_error_exits_2() -> None:
    _import_all()
    users = _subclasses(UserError)
    assert len(users) > 10  # the walk found the project's errors
    assert {cls.__name__: cls.exit_code for cls in users if cls.exit_code != 2} == {}


def test_the_fatal_errors_that_are_not_user_errors_name_their_own_exit_code() -> None:
    _import_all()
    others = {
        cls.__name__: cls.exit_code
        for cls in _subclasses(FatalError)
        if not issubclass(cls, UserError)
    }
    assert others == {
        "AuditLogLocked": ExitCode.LOCKED,
        "FetchFailed": ExitCode.SOME_FAILED,
    }
