"""The forecast: how many kept calls become due within the next days, by policy.

A call *becomes due* at the first instant the engine would decide it due if nothing
about the call changes: its start (else end) plus the `delete_after` of the deletion
rule credited for it, or, when a retention rule would still hold it then, plus that
rule's `retain_for` (never, for `forever`). Only calls kept now, as `not_yet_due` or
`held`, can become due; skipped calls cannot (a call not terminal yet has no end, so
when it becomes eligible is unknown; one redacted, zero-data-retention or without a
timestamp never will). A call listed in the future becomes due `delete_after` after it.

Memory is flat: one counter per day up to the horizon, per deletion policy.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from retention import defaults
from retention.errors import UserError

DAY_SECONDS: Final = 86400
DEFAULT_HORIZON: Final = defaults.HORIZON
MAX_HORIZON_DAYS: Final = 366
WINDOWS: Final = (7, 30)  # the report's columns, with the horizon itself
_HORIZON = re.compile(r"^\s*(\d{1,4})\s*([dw])\s*$")


class HorizonError(UserError):
    """A --horizon that is not a whole number of days or weeks within bounds (exit 2)."""


def parse_horizon(text: str) -> int:
    """`30d`, `2w` -> days (1 to MAX_HORIZON_DAYS)."""
    found = _HORIZON.fullmatch(text)
    if found is None:
        raise HorizonError(f"`{text}` is not a horizon such as 30d or 2w", where="--horizon")
    days = int(found.group(1)) * (7 if found.group(2) == "w" else 1)
    if not 1 <= days <= MAX_HORIZON_DAYS:
        raise HorizonError(f"`{text}` is outside 1d to {MAX_HORIZON_DAYS}d", where="--horizon")
    return days


def windows(horizon_days: int) -> tuple[int, ...]:
    """The windows reported: 7 and 30 days when within the horizon, and the horizon."""
    return tuple(sorted({w for w in WINDOWS if w < horizon_days} | {horizon_days}))


@dataclass
class Forecast:
    """Per deletion policy, calls becoming due on day 1..horizon from `now` (day d:
    due in (now + d-1 days, now + d days])."""

    horizon_days: int = defaults.HORIZON_DAYS
    days: dict[str, list[int]] = field(default_factory=dict)

    def add(self, policy: str, seconds_until_due: float) -> None:
        """A kept call `policy` will delete in `seconds_until_due` (> 0)."""
        day = math.ceil(seconds_until_due / DAY_SECONDS)
        if 1 <= day <= self.horizon_days:
            counts = self.days.get(policy)
            if counts is None:
                counts = self.days[policy] = [0] * self.horizon_days
            counts[day - 1] += 1

    def within(self, policy: str, days: int) -> int:
        """Calls of `policy` becoming due within `days` days (at most the horizon)."""
        return sum(self.days.get(policy, ())[:days])

    def summary(self) -> dict[str, Any]:
        """As reports and the plan header carry it: counts per window, by policy."""
        shown = windows(self.horizon_days)
        by_policy = {
            policy: {f"{w}d": self.within(policy, w) for w in shown} for policy in sorted(self.days)
        }
        return {
            "horizon_days": self.horizon_days,
            "windows_days": list(shown),
            "by_policy": by_policy,
            "total": {f"{w}d": sum(c[f"{w}d"] for c in by_policy.values()) for w in shown},
        }


def forecast_rows(summary: Mapping[str, Any]) -> tuple[list[str], list[tuple[str, ...]]]:
    """A summary as a table: the header and one row per policy, then all policies."""
    keys = [f"{w}d" for w in summary["windows_days"]]
    header = ["policy", *(f"due within {key}" for key in keys)]
    rows: list[tuple[str, ...]] = [
        (policy, *(str(counts[key]) for key in keys))
        for policy, counts in sorted(
            summary["by_policy"].items(), key=lambda item: (-item[1][keys[-1]], item[0])
        )
    ]
    if rows:
        rows.append(("all policies", *(str(summary["total"][key]) for key in keys)))
    return header, rows


FORECAST_NOTE: Final = (
    "Kept calls (not yet due, or held by a rule that ends) that become due in the window "
    "if nothing about them changes; calls not terminal yet are not counted."
)
