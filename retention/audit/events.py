"""The closed sets of the audit log and of a run's counts, each spelled once.

`Event` is the `event` of an audit-log line. `Outcome` is what became of a call the
policies selected for deletion, as a run counts it: the four outcomes the log records
are events too (`LOGGED_OUTCOMES`), the others are counted only. Every module that
reads, writes, counts or shows them uses these members, so adding one means editing
this file and the code that produces it; the metrics, reports, progress and verify
iterate the enums. Both are `StrEnum`s: a member is its wire string.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final


class Event(enum.StrEnum):
    RUN_STARTED = "run_started"
    DELETE_REQUESTED = "delete_requested"  # the intent, durable before the DELETE is sent
    DELETED = "deleted"
    ALREADY_REDACTED = "already_redacted"
    NOT_FOUND = "not_found"
    FAILED = "failed"
    RUN_FINISHED = "run_finished"
    CHECKPOINT = "checkpoint"  # a signed checkpoint over the chain (audit/signing.py)


class Outcome(enum.StrEnum):
    """In the order the reports show them."""

    WOULD_DELETE = "would_delete"  # a dry run's (or plan's) due call
    DELETED = Event.DELETED.value  # the API redacted it at our request
    ALREADY_REDACTED = Event.ALREADY_REDACTED.value  # redacted, not by this DELETE
    NOT_FOUND = Event.NOT_FOUND.value  # the API has no such call
    FAILED = Event.FAILED.value  # not deleted: the line's `error` says why
    UNCONFIRMED = "unconfirmed"  # sent, what the API did is unknown: the intent stays open
    DROPPED = "dropped"  # `apply`: planned, no longer due (by reason in the report's plan)
    NOT_IN_PLAN = "not_in_plan"  # `apply`: due now, never approved: not deleted


# The outcomes an audit-log line records, in the order the evidence shows them.
LOGGED_OUTCOMES: Final = (Event.DELETED, Event.ALREADY_REDACTED, Event.NOT_FOUND, Event.FAILED)
OUTCOME_EVENTS: Final = frozenset(LOGGED_OUTCOMES)
# The outcomes that say the call is redacted, each with its `redacted_at`.
REDACTION_EVENTS: Final = frozenset({Event.DELETED, Event.ALREADY_REDACTED})

# The keys each event needs beyond ts, run_id, event, seq and hash.
EVENT_KEYS: Final[Mapping[str, tuple[str, ...]]] = {
    Event.RUN_STARTED: (),
    Event.RUN_FINISHED: (),
    Event.DELETE_REQUESTED: ("call_id", "agent_id", "policy"),
    Event.DELETED: ("call_id", "agent_id", "policy", "redacted_at"),
    Event.ALREADY_REDACTED: ("call_id", "agent_id", "policy", "redacted_at"),
    Event.NOT_FOUND: ("call_id", "agent_id", "policy"),
    Event.FAILED: ("call_id", "agent_id", "policy", "error"),
    Event.CHECKPOINT: ("covers_seq", "covers_hash", "key", "signature"),
}


class RunMode(enum.StrEnum):
    """What a run was: `plan` and `apply` are the two halves of a reviewed deletion."""

    DRY_RUN = "dry run"
    EXECUTE = "execute"
    PLAN = "plan"
    APPLY = "apply"

    @staticmethod
    def of(dry_run: bool) -> RunMode:
        """A run that is neither a plan nor an apply, from its `dry_run` flag."""
        return RunMode.DRY_RUN if dry_run else RunMode.EXECUTE

    @property
    def label(self) -> str:
        """The Prometheus `mode` label: `dry_run`, `execute`, ..."""
        return self.value.replace(" ", "_")


@dataclass(frozen=True, slots=True)
class OpenIntent:
    """A `delete_requested` line that has no outcome yet."""

    call_id: str
    agent_id: str
    policy: str
    run_id: str
    line: int  # in the live file; 0 for an intent carried over a rotation
    ts: str = ""  # when the intent was written (RFC 3339), for recovery's settle window
    seq: int = 0


# A run counts its failures by cause, and the audit log's report its stops and failures;
# both keep at most MAX_CAUSES distinct causes, and count any further one as OTHER_CAUSE.
MAX_CAUSES: Final = 20  # distinct failure causes kept; any further one counts as "other"
OTHER_CAUSE: Final = "other"
