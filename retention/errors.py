"""Errors a user can fix, and the exit codes DESIGN.md fixes for cron and Kubernetes."""

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


class UserError(Exception):
    """A mistake the user can fix. The CLI prints `str(err)` as one line and exits 2.

    Messages name the cause and where (file:line, flag or environment variable),
    and never carry secrets or personal data.
    """

    exit_code: ExitCode = ExitCode.BAD_INPUT
    run_id: str | None = None  # set once a run has begun, for the final log line

    def __init__(self, message: str, *, where: str | None = None) -> None:
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)
