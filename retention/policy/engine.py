"""The decision engine: a pure function of (policies, call, now, listed agent) — no
I/O, no clock.

A call is judged as a call of the agent it was listed under: one whose own
`agent_id` names another agent is skipped (`inconsistent`). A call is deleted
only when its status is exactly `completed` or `failed`, it is not redacted, a matching
`delete_after` rule is due (age >= duration) and no matching `retain_for` rule
still holds it (age < duration, or forever). Age runs from `start_time`, else
`end_time`; a call in the future is never due.
"""

from __future__ import annotations

from datetime import UTC, datetime

from retention.api.models import Call
from retention.policy.decision import Action, Decision, Reason
from retention.policy.match import Listed
from retention.policy.model import PolicySet

__all__ = ["Action", "Decision", "Listed", "Reason", "age_of", "decide"]


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
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return policies.index.decide(call, now, Listed(agent_id, agent_name or None), matches)


def age_of(call: Call, now: datetime) -> float | None:
    """A call's age in seconds (negative in the future), or None without timestamps."""
    origin = call.age_origin
    if origin is None:
        return None
    if origin.tzinfo is None:
        origin = origin.replace(tzinfo=UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return (now - origin).total_seconds()
