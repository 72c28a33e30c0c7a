"""Safety belts of `run --execute`, on by default.

- First run: an execute run on an audit log with no earlier execute run (and never
  rotated) must be capped by `--max-deletes`, or be an `apply` of a reviewed plan;
  otherwise exit 2 before anything is sent.
- Surge guard: the run stops (exit 3) before its DELETE requests exceed
  max(floor, factor x the median `deleted` count of the latest execute runs). The
  history comes from the start-up scan (the resume sidecar, or the `run_finished`
  lines it streams: no second read of the log); when the live file holds fewer runs
  than the window and the log was rotated, the rest comes from the rotation state
  (which records the history up to the rotation) or, for a state written before it
  did, from the newest segments.
- `apply` is not limited by the surge guard (the pinned plan is the approval);
  `--max-deletes` still applies. `--no-surge-guard` turns the guard off for one run.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from retention import defaults
from retention.audit.history import log_history
from retention.audit.writer import AuditLog
from retention.errors import UserError

DEFAULT_SURGE_FLOOR: Final = defaults.SURGE_FLOOR
DEFAULT_SURGE_FACTOR: Final = defaults.SURGE_FACTOR


class FirstRunUncapped(UserError):
    """A first execute run with neither --max-deletes nor a plan (exit 2)."""


@dataclass(frozen=True, slots=True)
class SurgeGuard:
    enabled: bool = True
    floor: int = DEFAULT_SURGE_FLOOR
    factor: float = DEFAULT_SURGE_FACTOR


@dataclass(frozen=True, slots=True)
class History:
    """The latest execute runs' deletion counts, oldest first; `first`: there were none."""

    counts: tuple[int, ...]
    first: bool


def surge_limit(counts: Sequence[int], guard: SurgeGuard) -> int:
    """The largest number of DELETEs a run may send: max(floor, ceil(factor x median))."""
    median = statistics.median(counts) if counts else 0
    return max(guard.floor, math.ceil(guard.factor * median))


def read_history(audit: AuditLog) -> History:
    """From the start-up scan and the rotation state; segments only for an older state."""
    counts = log_history(audit)
    return History(counts, first=not counts and audit.state.segment == 0)


def belt_limit(
    audit: AuditLog, *, max_deletes: int | None, applying: bool, guard: SurgeGuard
) -> int | None:
    """The surge guard's line for this execute run (None: no guard), or exit 2 for an
    uncapped first run."""
    if applying:
        return None
    history = read_history(audit)
    if history.first:
        if max_deletes is None:
            raise FirstRunUncapped(
                "this is the first execute run on this audit log: cap it with --max-deletes N, "
                "or review a plan first (`retention plan --out PLAN`, then `retention apply "
                "PLAN --execute`)",
                where="safety belt",
            )
        return None  # the explicit cap is this run's approval
    if not guard.enabled:
        return None
    return surge_limit(history.counts, guard)
