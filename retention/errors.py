"""The errors that end a command, and the exit codes DESIGN.md fixes for cron and Kubernetes.

`FatalError` is the base: the CLI prints `str(err)` as one line (a JSON line for `run`
when stderr is not a terminal) and exits with its `exit_code`. `UserError` is the one
that means exit 2: a mistake the user can fix, found before anything is deleted.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    OK = 0  # finished, nothing failed
    SOME_FAILED = 1  # finished, some deletions failed (audit verify: log broken)
    BAD_INPUT = 2  # policies, flags or credentials wrong, found before any deletion
    MAX_DELETES = 3  # stopped by --max-deletes
    CREDENTIALS_REFUSED = 4  # the API refused the credentials mid-run (401/403)
    INTERRUPTED = 5  # stopped by a signal
    LOCKED = 6  # another run holds the audit log's lock


class FatalError(Exception):
    """The command cannot go on. The CLI prints `str(err)` as one line and exits with
    `exit_code`. Messages name the cause and where (file:line, flag or environment
    variable), and never carry secrets or personal data."""

    exit_code: ExitCode = ExitCode.SOME_FAILED
    run_id: str | None = None  # set once a run has begun, for the final log line

    def __init__(self, message: str, *, where: str | None = None) -> None:
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)


class UserError(FatalError):
    """A mistake the user can fix (exit 2): policies, flags, paths or credentials."""

    exit_code = ExitCode.BAD_INPUT


class CredentialsRefused(UserError):
    """The API answered 401/403 before anything was deleted or checked: the key is wrong."""


class ApiUnreachable(UserError):
    """The first request could not connect, or the base URL has no /agents."""


class AuditLogLocked(FatalError):
    """Another run holds the audit log's lock (exit 6)."""

    exit_code = ExitCode.LOCKED


class FetchFailed(FatalError):
    """The API could not answer (5xx, retries exhausted): not bad input, so exit 1."""

    exit_code = ExitCode.SOME_FAILED


class InsecureBaseURL(UserError):
    """A base URL that is malformed, or plain http:// to a host that is not loopback."""


class MissingAPIKey(UserError):
    """No API key, or a blank one."""
