"""The decision engine: a pure function of (policies, call, now) — no I/O, no clock.

A call is deleted only when it is terminal and not redacted, a matching
`delete_after` rule is due (age >= duration) and no matching `retain_for` rule
still holds it (age < duration, or forever). Age runs from `start_time`, else
`end_time`; a call in the future is never due.
"""

from __future__ import annotations

from datetime import UTC, datetime

from retention.api.models import Call
from retention.policy.decision import Action, Decision, Reason
from retention.policy.model import PolicySet

__all__ = ["Action", "Decision", "Reason", "age_of", "decide"]


def decide(
    policies: PolicySet, call: Call, now: datetime, agent_name: str | None = None
) -> Decision:
    """Decide one call. `agent_name` is the agent's name from GET /agents, used when the
    call's own `agent_name` is null (agents match by id or by name)."""
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return policies.index.decide(call, now, agent_name)


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
