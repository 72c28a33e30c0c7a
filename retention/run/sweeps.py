"""Each erasure sweep's account (a deletion rule with `delete_after: 0d`): the calls it
matched, and what became of each, so "did we erase this customer's calls, and if not,
why not" is answered from one report.

    matched = due (erased, or not, by outcome) + held (by each rule)
            + not terminal yet + no timestamp + already redacted + other skips
            + not yet due (a start in the future) + credited to another sweep

Counts only: bounded by policies and reasons, never by calls.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any, Final

from retention.policy.decision import Reason
from retention.policy.model import Kind, Policy
from retention.run.stats import RunStats

# The skip reasons every account shows, even at 0: why a matched call was not erased.
ANSWERED_SKIPS: Final = (Reason.NOT_TERMINAL, Reason.NO_TIMESTAMP, Reason.ALREADY_REDACTED)
SKIP_WORDS: Final = {
    Reason.NOT_TERMINAL: "not terminal yet",
    Reason.NO_TIMESTAMP: "no timestamp",
    Reason.ALREADY_REDACTED: "already redacted",
}


def is_sweep(policy: Policy) -> bool:
    return policy.kind == Kind.DELETE and policy.duration == timedelta(0)


def sweep_accounts(
    stats: RunStats, policies: Sequence[Policy], outcome_order: Sequence[str]
) -> list[dict[str, Any]]:
    """One account per sweep, in policy order (the JSON report's `sweeps`)."""
    matched = stats.matched_by_policy()
    accounts = []
    for sweep in (p for p in policies if is_sweep(p)):
        outcomes = stats.by_policy.get(sweep.name, Counter[str]())
        held = stats.held_from.get(sweep.name, Counter[str]())
        skipped = stats.sweep_skipped.get(sweep.name, Counter[str]())
        accounts.append(
            {
                "policy": sweep.name,
                "matched": matched.get(sweep.name, 0),
                "due": stats.due_by_policy[sweep.name],
                "outcomes": {o: outcomes[o] for o in outcome_order if outcomes[o]},
                "held_by": dict(sorted(held.items(), key=lambda item: (-item[1], item[0]))),
                **{reason.value: skipped[reason.value] for reason in ANSWERED_SKIPS},
                "other_skips": {
                    reason: n
                    for reason, n in sorted(skipped.items())
                    if n and reason not in {r.value for r in ANSWERED_SKIPS}
                },
            }
        )
    return accounts


def account_rows(account: Mapping[str, Any]) -> list[tuple[str, int]]:
    """An account as (what, calls) rows, for the Markdown and HTML tables."""
    rows: list[tuple[str, int]] = [("calls matched", account["matched"]), ("due", account["due"])]
    rows += [(outcome.replace("_", " "), n) for outcome, n in account["outcomes"].items()]
    rows += [(f"held by {hold}", n) for hold, n in account["held_by"].items()]
    rows += [(SKIP_WORDS[reason], account[reason.value]) for reason in ANSWERED_SKIPS]
    rows += [(f"skipped: {reason}", n) for reason, n in account["other_skips"].items()]
    return rows
