"""Plain words for policies and decisions, read by `validate` and `explain`.

Nothing here prints a call's metadata values, transcript, summary or phone numbers:
a condition that fails on metadata names the key only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from retention.api.models import Call
from retention.policy.decision import Decision, Reason
from retention.policy.durations import words
from retention.policy.engine import age_of, decide
from retention.policy.match import Listed
from retention.policy.model import Kind, Policy, PolicySet

_UNIT_WORDS = {"h": "hour", "d": "day", "w": "week"}


def duration_words(policy: Policy) -> str:
    """The duration as written, in words: `90d` -> `90 days`, `forever` -> `forever`."""
    text = policy.duration_text
    if policy.forever or text[-1:] not in _UNIT_WORDS:
        return words(policy.duration)
    count = int(text[:-1])
    return f"{count} {_UNIT_WORDS[text[-1]]}" + ("" if count == 1 else "s")


def rule_words(policy: Policy) -> str:
    if policy.kind == Kind.RETAIN:
        return f"retain {duration_words(policy)}"
    return f"delete after {duration_words(policy)}"


def scope_words(policy: Policy) -> str:
    if not policy.conditions:
        return "every call (no conditions)"
    return "; ".join(c.describe() for c in policy.conditions)


def describe_policy(policy: Policy) -> list[str]:
    """A few lines saying what a policy matches and what it does."""
    if policy.kind == Kind.DELETE:
        action = (
            "deletes them as soon as they are completed or failed"
            if policy.duration == timedelta(0)
            else f"deletes them once {duration_words(policy)} old"
        )
    else:
        span = "forever" if policy.forever else f"until {duration_words(policy)} old"
        action = f"keeps them {span}, even when a deletion rule is due"
    lines = [
        f"{policy.name} ({policy.where}): {rule_words(policy)}",
        f"  matches: {scope_words(policy)}",
        f"  {action}",
    ]
    if policy.description:
        lines.append(f"  why: {' '.join(policy.description.split())}")
    lines.extend(f"  {ANNOTATION_WORDS[key]}: {text}" for key, text in policy.annotations)
    return lines


ANNOTATION_WORDS = {
    "legal_basis": "legal basis",
    "category": "category",
    "request_id": "request",
    "case": "case",
}


def annotation_text(policy: Policy) -> str:
    """A policy's annotations on one line (`legal basis: ...; case: ...`), or ""."""
    return "; ".join(f"{ANNOTATION_WORDS[key]}: {text}" for key, text in policy.annotations)


def may_overlap(a: Policy, b: Policy) -> bool:
    """Whether some call could match both (conservative: True unless surely not)."""
    return not any(x.excludes(y) or y.excludes(x) for x in a.conditions for y in b.conditions)


def overrides(policy_set: PolicySet) -> list[tuple[Policy, Policy]]:
    """(sweep, retention rule) pairs where the rule may keep calls the sweep would erase:
    a sweep is a deletion rule with `delete_after: 0d`."""
    policies = policy_set.policies
    sweeps = [p for p in policies if p.kind == Kind.DELETE and p.duration == timedelta(0)]
    holds = [p for p in policies if p.kind == Kind.RETAIN]
    return [(s, h) for s in sweeps for h in holds if may_overlap(s, h)]


def _span_words(policy: Policy) -> str:
    """`a 52-week`, `a 90-day`, `a permanent`: a retention rule's span as an adjective."""
    if policy.forever:
        return "a permanent"
    text = policy.duration_text
    if text[-1:] in _UNIT_WORDS and text[:-1].isdigit():
        return f"a {int(text[:-1])}-{_UNIT_WORDS[text[-1]]}"
    return f"a {duration_words(policy)}"


def override_words(sweep: Policy, hold: Policy) -> str:
    """`a 52-week retention rule, contract-hold (case: C-12), may override part of erasure`."""
    case = f" (case: {hold.case})" if hold.case else ""
    return (
        f"{_span_words(hold)} retention rule, {hold.name}{case}, may override part of {sweep.name}"
    )


def overridden_words(sweep: Policy, hold: Policy, calls: int) -> str:
    """For a run's report: `a 52-week retention rule, contract-hold (case: C-42),
    overrode part of erasure-dsr-118: it kept 3 calls erasure-dsr-118 would have erased`."""
    case = f" (case: {hold.case})" if hold.case else ""
    kept = f"{calls} call{'s' if calls != 1 else ''}"
    return (
        f"{_span_words(hold)} retention rule, {hold.name}{case}, overrode part of "
        f"{sweep.name}: it kept {kept} {sweep.name} would have erased"
    )


def covers(holder: Policy, policy: Policy) -> bool:
    """Whether `holder` surely matches every call `policy` matches (conservative)."""
    return all(any(h.covers(c) for c in policy.conditions) for h in holder.conditions)


def warnings(policy_set: PolicySet) -> list[str]:
    """Policies that can never take effect, or look like a slip."""
    found: list[str] = []
    policies = policy_set.policies
    forever = [p for p in policies if p.kind == Kind.RETAIN and p.forever]
    for policy in policies:
        if policy.kind != Kind.DELETE:
            continue
        holder = next((h for h in forever if covers(h, policy)), None)
        if holder is not None:
            found.append(
                f"{policy.name} ({policy.where}) can never delete anything: every call it "
                f"matches is kept forever by {holder.name} ({holder.where})"
            )
        if holder is None and policy.duration == timedelta(0):
            for hold in policies:
                if hold.kind == Kind.RETAIN and may_overlap(policy, hold):
                    found.append(
                        f"{override_words(policy, hold)} ({policy.where}): their conditions can "
                        f"overlap, and what {hold.name} ({hold.where}) matches is kept"
                    )
        if not policy.conditions and policy.duration == timedelta(0):
            found.append(
                f"{policy.name} ({policy.where}) deletes every completed or failed call at "
                "once (delete_after 0d, no conditions)"
            )
    for i, policy in enumerate(policies):
        for earlier in policies[:i]:
            if _same_rule(earlier, policy):
                found.append(
                    f"{policy.name} ({policy.where}) repeats {earlier.name} ({earlier.where}): "
                    "same rule, same conditions"
                )
                break
    return found


def _same_rule(a: Policy, b: Policy) -> bool:
    signature_a = frozenset(c.signature() for c in a.conditions)
    signature_b = frozenset(c.signature() for c in b.conditions)
    return (a.kind, a.duration, signature_a) == (b.kind, b.duration, signature_b)


def age_words(seconds: float) -> str:
    """`45 days 3 hours`, `5 hours`, `in the future (2 hours ahead)`."""
    if seconds < 0:
        return f"in the future ({age_words(-seconds)} ahead)"
    days, rest = divmod(int(seconds), 86400)
    hours = rest // 3600
    if days:
        return f"{days} day{'s' if days != 1 else ''}" + (f" {hours} h" if hours else "")
    minutes = (rest % 3600) // 60
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


@dataclass(frozen=True, slots=True)
class PolicyVerdict:
    """How one policy sees one call, for `explain`."""

    policy: Policy
    matched: bool
    state: str  # due / not yet due / holds / expired, or why it did not match


def verdicts(
    policy_set: PolicySet, call: Call, now: datetime, listed: Listed
) -> list[PolicyVerdict]:
    age = age_of(call, now)
    found = []
    for policy in policy_set.policies:
        failed = policy.first_mismatch(call, listed)
        if failed is not None:
            found.append(PolicyVerdict(policy, False, failed.mismatch(call, listed)))
            continue
        found.append(PolicyVerdict(policy, True, _state(policy, age)))
    return found


def _state(policy: Policy, age: float | None) -> str:
    if age is None:
        return "no age (no start_time or end_time)"
    if policy.duration is None:
        return "holds it (forever)"
    left = policy.duration.total_seconds() - age
    if policy.kind == Kind.DELETE:
        return "due" if left <= 0 else f"not yet due (due in {age_words(left)})"
    return f"holds it (for {age_words(left)} more)" if left > 0 else "no longer holds it"


def decision_words(decision: Decision, call: Call, listed: Listed) -> str:
    credited, holder = decision.credited_policy, decision.held_by
    match decision.reason:
        case Reason.INCONSISTENT:
            return (
                f"SKIP: the call says agent {call.agent_id}, but belongs to the agent it is "
                f"listed under ({listed.agent_id}): inconsistent, never deleted"
            )
        case Reason.DUE:
            return f"DELETE: {credited} is due and no retention rule holds the call"
        case Reason.HELD:
            others = decision.also_held_by
            if not others:
                return f"KEEP: {credited} is due, but {holder} still holds the call"
            rest = ", ".join(others[:-1]) + (" and " if len(others) > 1 else "") + others[-1]
            return f"KEEP: {credited} is due, but {holder} still holds the call (and {rest})"
        case Reason.NOT_YET_DUE:
            return f"KEEP: no deletion rule is due yet ({credited} will be first)"
        case Reason.NO_DELETION_RULE:
            return "KEEP: no deletion rule matches this call"
        case Reason.NOT_TERMINAL:
            return f"SKIP: status {call.status or '(none)'!r} is not exactly completed or failed"
        case Reason.ALREADY_REDACTED:
            return "SKIP: already redacted"
        case Reason.ZDR:
            return "SKIP: zero data retention (zdr_enabled), nothing sensitive to delete"
        case Reason.NO_TIMESTAMP:
            return "SKIP: no start_time or end_time, so the call has no age"
        case Reason.UNCLEAR_METADATA:
            return (
                "SKIP: a metadata key a retention rule names is a list or an object, so "
                "whether the rule holds the call is unclear"
            )


def explain_lines(policy_set: PolicySet, call: Call, now: datetime, listed: Listed) -> list[str]:
    """The full explanation of one call's decision, as a run listing the call under the
    agent `listed` would decide it, without any sensitive field."""
    lines = [
        f"call {call.id}",
        f"  listed    under agent {listed.agent_id or '(unknown)'}"
        + (f" ({listed.agent_name})" if listed.agent_name else ""),
        f"  agent     {call.agent_id or '(none)'}"
        + (f" ({call.agent_name})" if call.agent_name else "")
        + " (as the call says)",
        f"  status    {call.status or '(none)'}",
        f"  region    {call.deployment_region or '(none)'}",
        f"  zdr       {'yes' if call.zdr_enabled else 'no'}",
        f"  redacted  {call.redacted_at.isoformat() if call.redacted_at else 'no'}",
    ]
    age = age_of(call, now)
    origin = "start_time" if call.start_time is not None else "end_time"
    lines.append(
        f"  age       {age_words(age)} from {origin} (now {now.isoformat()})"
        if age is not None
        else "  age       unknown: no start_time or end_time"
    )
    lines.append("")
    lines.extend(_table(verdicts(policy_set, call, now, listed)))
    lines.append("")
    decision = decide(policy_set, call, now, listed.agent_id, listed.agent_name)
    lines.append("decision: " + decision_words(decision, call, listed))
    # The record of processing behind the decision: the annotations of the rules it names.
    named = [decision.credited_policy] if decision.credited_policy else []
    for name in [*named, *decision.holders]:
        text = annotation_text(policy_set.by_name(name))
        if text:
            lines.append(f"  {name}: {text}")
    return lines


def _table(found: Sequence[PolicyVerdict]) -> list[str]:
    rows = [("policy", "rule", "matched", "why")]
    rows += [
        (v.policy.name, rule_words(v.policy), "yes" if v.matched else "no", v.state) for v in found
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True))
        + "  "
        + row[3]
        for row in rows
    ]
