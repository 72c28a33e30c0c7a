"""The decision engine: a pure function of (policies, call, now, listed agent) — no
I/O, no clock. The rules are the two functions `skip_reason` and `judge`; `decide`
applies them, with two memos that only make it cheap (see the end of this module).

A call is judged as a call of the agent it was listed under: one whose own
`agent_id` names another agent is skipped (`inconsistent`). A call is deleted
only when its status is exactly `completed` or `failed`, it is not redacted, a matching
`delete_after` rule is due (age >= duration) and no matching `retain_for` rule
still holds it (age < duration, or forever). Age runs from `start_time`, else
`end_time`; a call in the future is never due.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Final

from retention.api.models import TERMINAL_STATUSES, Call
from retention.policy.canonical import is_unclear
from retention.policy.decision import (
    KEEP_NO_DELETION_RULE,
    SKIP_ALREADY_REDACTED,
    SKIP_INCONSISTENT,
    SKIP_NO_TIMESTAMP,
    SKIP_NOT_TERMINAL,
    SKIP_UNCLEAR_METADATA,
    SKIP_ZDR,
    Action,
    ByAge,
    Decision,
    Reason,
)
from retention.policy.match import Listed, origin_of
from retention.policy.model import Kind, Policy, PolicySet
from retention.timestamps import as_utc

__all__ = ["Action", "Decision", "Listed", "Reason", "age_of", "decide", "judge", "skip_reason"]

MEMO_LIMIT: Final = 8192  # sets of matching policies whose decisions are kept


# -- The rules -------------------------------------------------------------------------


def skip_reason(call: Call, listed: Listed, held_keys: Sequence[str]) -> Decision | None:
    """Why the policies may not judge this call at all; checked in this order."""
    if call.agent_id and call.agent_id != listed.agent_id:
        return SKIP_INCONSISTENT  # it names another agent than the one it was listed under
    if call.status not in TERMINAL_STATUSES:
        return SKIP_NOT_TERMINAL  # only exactly `completed` or `failed`
    if call.redacted_at is not None:
        return SKIP_ALREADY_REDACTED
    if call.zdr_enabled:
        return SKIP_ZDR  # zero data retention: nothing sensitive was kept
    if call.start_time is None and call.end_time is None:
        return SKIP_NO_TIMESTAMP  # no age
    if call.metadata is not None:
        for key in held_keys:  # the keys retention rules look at
            if is_unclear(call.metadata.get(key)):
                return SKIP_UNCLEAR_METADATA  # a list or an object: a hold may not be read
    return None


def judge(matching: Sequence[Policy], age: timedelta) -> Decision:
    """What the policies a call matches decide for it, at its age."""
    deletions = [p for p in matching if p.kind is Kind.DELETE]
    if not deletions:
        return KEEP_NO_DELETION_RULE
    # The credit goes to the shortest deletion rule, ties to the first name: it is due
    # whenever any is, and it is the one that comes due first.
    credited = min(deletions, key=lambda p: (p.span, p.name))
    if age < credited.span:
        return Decision(Action.KEEP, Reason.NOT_YET_DUE, credited.name)
    # Held beats due: every retention rule still holding the call is named, the longest
    # first (forever first), ties by name.
    holding = [p for p in matching if p.kind is Kind.RETAIN and age < p.span]
    holding.sort(key=lambda p: p.name)
    holding.sort(key=lambda p: p.span, reverse=True)  # stable: ties stay in name order
    if holding:
        also = tuple(p.name for p in holding[1:])
        return Decision(Action.KEEP, Reason.HELD, credited.name, holding[0].name, also)
    return Decision(Action.DELETE, Reason.DUE, credited.name)


# -- Applying them ---------------------------------------------------------------------


def decide(
    policies: PolicySet,
    call: Call,
    now: datetime,
    agent_id: str,
    agent_name: str | None,
    matches: dict[int, int] | None = None,
) -> Decision:
    """Decide one call listed under the agent `agent_id`, whose current name (from
    GET /agents) is `agent_name` (None or "" when it has none). With `matches`, the
    bitmask of the policies the call matches (bit i: `policies.policies[i]`) is counted
    there, whatever the decision."""
    listed = Listed(agent_id, agent_name or None)
    mask = None
    if matches is not None:
        mask = policies.index.mask(call, listed)
        matches[mask] = matches.get(mask, 0) + 1
    skipped = skip_reason(call, listed, policies.held_keys)
    if skipped is not None:
        return skipped
    if mask is None:
        mask = policies.index.mask(call, listed)
    # The matching policies decide by age only through `age < span` for their spans, so
    # `judge` is tabulated once per set of matching policies (see ByAge).
    outcomes = policies.outcomes.get(mask)
    if outcomes is None:
        outcomes = _tabulate(policies, mask)
    origin = origin_of(call)
    assert origin is not None  # skip_reason: a call without either is skipped
    return outcomes.decisions[bisect_right(outcomes.spans, as_utc(now) - origin)]


def _tabulate(policies: PolicySet, mask: int) -> ByAge:
    matching = [p for i, p in enumerate(policies.policies) if mask >> i & 1]
    outcomes = ByAge((p.span for p in matching if not p.forever), lambda age: judge(matching, age))
    if len(policies.outcomes) >= MEMO_LIMIT:
        policies.outcomes.clear()
    policies.outcomes[mask] = outcomes
    return outcomes


def age_of(call: Call, now: datetime) -> float | None:
    """A call's age in seconds (negative in the future), or None without timestamps."""
    origin = call.age_origin
    if origin is None:
        return None
    return (as_utc(now) - as_utc(origin)).total_seconds()
