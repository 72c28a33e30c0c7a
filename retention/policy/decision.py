"""What the engine decides for one call, and why."""

from __future__ import annotations

import enum
from bisect import bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Final


class Action(enum.StrEnum):
    DELETE = "delete"
    KEEP = "keep"
    SKIP = "skip"


class Reason(enum.StrEnum):
    DUE = "due"  # delete: a matching deletion rule is due and nothing holds the call
    HELD = "held"  # keep: a deletion rule is due but a retention rule still holds the call
    NO_DELETION_RULE = "no_deletion_rule"  # keep: no deletion rule matches
    NOT_YET_DUE = "not_yet_due"  # keep: deletion rules match, none is due yet
    INCONSISTENT = "inconsistent"  # skip: the call's agent_id is not the agent it was listed under
    NOT_TERMINAL = "not_terminal"  # skip: status is not exactly completed or failed
    ALREADY_REDACTED = "already_redacted"  # skip: redacted_at is set
    ZDR = "zdr"  # skip: zero data retention, nothing sensitive was kept
    NO_TIMESTAMP = "no_timestamp"  # skip: neither start_time nor end_time
    # skip: a metadata key a retention rule names holds a list or an object (not a scalar)
    UNCLEAR_METADATA = "unclear_metadata"


class ListingSkip(enum.StrEnum):
    """Why the run skipped a listed call before the engine could decide it."""

    INVALID_ID = "invalid_id"  # an id that may not go into a URL
    UNREADABLE = "unreadable"  # a listed call the models cannot decode


# Each reason belongs to one action; the metrics export every member, 0 when absent.
DELETE_REASONS: Final = (Reason.DUE,)
KEEP_REASONS: Final = (Reason.HELD, Reason.NO_DELETION_RULE, Reason.NOT_YET_DUE)
SKIP_REASONS: Final[tuple[str, ...]] = (
    *(r for r in Reason if r not in {*DELETE_REASONS, *KEEP_REASONS}),
    *ListingSkip,
)


@dataclass(frozen=True, slots=True)
class Decision:
    """`credited_policy`: for DELETE the due deletion rule with the shortest duration; for
    KEEP/HELD the rule that would have deleted it; for KEEP/NOT_YET_DUE the rule that will
    be due first. `held_by`: for KEEP/HELD the retention rule holding it longest;
    `also_held_by`: every other retention rule that still holds it, longest first (ties
    by name)."""

    action: Action
    reason: Reason
    credited_policy: str | None = None
    held_by: str | None = None
    also_held_by: tuple[str, ...] = ()

    @property
    def holders(self) -> tuple[str, ...]:
        """Every retention rule holding the call (KEEP/HELD), longest first; else ()."""
        return () if self.held_by is None else (self.held_by, *self.also_held_by)


SKIP_INCONSISTENT = Decision(Action.SKIP, Reason.INCONSISTENT)
SKIP_NOT_TERMINAL = Decision(Action.SKIP, Reason.NOT_TERMINAL)
SKIP_ALREADY_REDACTED = Decision(Action.SKIP, Reason.ALREADY_REDACTED)
SKIP_ZDR = Decision(Action.SKIP, Reason.ZDR)
SKIP_NO_TIMESTAMP = Decision(Action.SKIP, Reason.NO_TIMESTAMP)
SKIP_UNCLEAR_METADATA = Decision(Action.SKIP, Reason.UNCLEAR_METADATA)
KEEP_NO_DELETION_RULE = Decision(Action.KEEP, Reason.NO_DELETION_RULE)


class ByAge:
    """A decision that depends on a call's age only by comparing it with some spans (age <
    span, or not), tabulated: one decision per interval between consecutive spans, taken
    at the interval's start, where every such comparison comes out as anywhere inside."""

    __slots__ = ("decisions", "spans")

    def __init__(self, spans: Iterable[timedelta], decide: Callable[[timedelta], Decision]) -> None:
        self.spans = tuple(sorted(set(spans)))
        self.decisions = tuple(decide(age) for age in (timedelta.min, *self.spans))

    def at(self, age: timedelta) -> Decision:
        return self.decisions[bisect_right(self.spans, age)]
