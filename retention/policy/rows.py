"""One row per call for `retention explain --ids`: the decision, the credited or holding
policies, and the first condition that failed; pure, like the engine.

The first failed condition is the one that would have changed the outcome's kind:
for a call no deletion rule matches, the first deletion rule's (in policy order);
for a call deleted or not yet due, the first retention rule's that does not match.
A held or skipped call has none. The words come from the conditions' own
`mismatch`, which never names a metadata value or a phone number.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal

from retention.api.models import Call
from retention.policy.decision import Action, Reason
from retention.policy.describe import annotation_text
from retention.policy.engine import decide
from retention.policy.match import Listed
from retention.policy.model import Kind, PolicySet

# A row's decision: the engine's action, or why the call could not be decided.
RowDecision = Literal["delete", "keep", "skip", "not_found", "unusable_id", "error"]
ROW_DECISIONS: Final[tuple[RowDecision, ...]] = (
    "delete",
    "keep",
    "skip",
    "not_found",
    "unusable_id",
    "error",
)


@dataclass(frozen=True, slots=True)
class ExplainRow:
    """`call_id` is the id as given, or `(line N)` for one that is not a usable id."""

    call_id: str
    decision: RowDecision
    reason: str  # the engine's reason, or why there is no decision
    policy: str = ""  # the credited deletion rule
    held_by: tuple[str, ...] = ()  # every retention rule still holding the call
    failed: str = ""  # `policy: the first condition it fails`
    annotations: str = ""  # `policy: legal basis: ...` of the policies named, `|`-separated


_ACTIONS: Final[dict[Action, RowDecision]] = {
    Action.DELETE: "delete",
    Action.KEEP: "keep",
    Action.SKIP: "skip",
}


def call_row(
    policy_set: PolicySet, call_id: str, call: Call, now: datetime, listed: Listed
) -> ExplainRow:
    """The row of a call read from the API, judged as listed under `listed`."""
    decision = decide(policy_set, call, now, listed.agent_id, listed.agent_name)
    named = [decision.credited_policy] if decision.credited_policy else []
    named += decision.holders
    annotated = [(name, annotation_text(policy_set.by_name(name))) for name in named]
    return ExplainRow(
        call_id=call_id,
        decision=_ACTIONS[decision.action],
        reason=decision.reason.value,
        policy=decision.credited_policy or "",
        held_by=decision.holders,
        failed=_first_failure(policy_set, call, listed, decision.reason),
        annotations=" | ".join(f"{name}: {text}" for name, text in annotated if text),
    )


def _first_failure(policy_set: PolicySet, call: Call, listed: Listed, reason: Reason) -> str:
    if reason is Reason.NO_DELETION_RULE:
        kind = Kind.DELETE
    elif reason in (Reason.DUE, Reason.NOT_YET_DUE):
        kind = Kind.RETAIN
    else:
        return ""
    for policy in policy_set.policies:
        if policy.kind != kind:
            continue
        failed = policy.first_mismatch(call, listed)
        if failed is not None:
            return f"{policy.name}: {failed.mismatch(call, listed)}"
    return ""
