"""The compiled form of a policy set that makes `decide` cheap.

Each part of a call that conditions look at (the agent's four names, region,
status, one metadata key) is a dimension: a memo from the call's value there to the bitmask of the
policies that value satisfies. A call's matching policies are the AND of a few
masks, and each distinct mask's outcome (shortest deletion, longest retention,
the pre-built decisions) is computed once. Memos are bounded: they are cleared
when full, so memory never grows with the number of calls.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Final, Generic, TypeVar

from retention.api.models import TERMINAL_STATUSES, Call
from retention.policy.canonical import canonical_text, is_unclear
from retention.policy.decision import (
    KEEP_NO_DELETION_RULE,
    SKIP_ALREADY_REDACTED,
    SKIP_INCONSISTENT,
    SKIP_NO_TIMESTAMP,
    SKIP_NOT_TERMINAL,
    SKIP_UNCLEAR_METADATA,
    SKIP_ZDR,
    Action,
    Decision,
    Reason,
)
from retention.policy.match import (
    AgentsCondition,
    Condition,
    Deployment,
    DeploymentsCondition,
    EndReasonsCondition,
    Identity,
    Listed,
    MetadataCondition,
    PhoneNumbersCondition,
    RegionsCondition,
    StartedCondition,
    StatusesCondition,
    TelephonyCondition,
    origin_of,
    text_form,
)
from retention.policy.model import Kind, Policy
from retention.policy.phones import phone_digest

MEMO_LIMIT: Final = 8192
FOREVER: Final = timedelta.max  # any real age is shorter
_ZERO: Final = timedelta(0)
K = TypeVar("K", bound=Hashable)
C = TypeVar("C", bound=Condition)


class _Dimension(Generic[K]):
    """Value in one part of a call -> bitmask of the policies whose conditions it meets."""

    __slots__ = ("free", "memo", "tests")

    def __init__(self, free: int, tests: Sequence[tuple[int, Callable[[K], bool]]]) -> None:
        self.free = free  # policies with no condition here match any value
        self.tests = tuple(tests)
        self.memo: dict[K, int] = {}

    def compute(self, value: K) -> int:
        """The mask for a value not in the memo, remembered for next time."""
        mask = self.free
        for bit, test in self.tests:
            if test(value):
                mask |= bit
        if len(self.memo) >= MEMO_LIMIT:
            self.memo.clear()
        self.memo[value] = mask
        return mask


class _Outcomes:
    """What a set of matching policies decides, for any age."""

    __slots__ = ("delete_after", "due", "held", "held_by_spans", "not_yet_due", "retain_for")

    def __init__(self, matching: Sequence[Policy]) -> None:
        deletions = [p for p in matching if p.kind == Kind.DELETE]
        # Credit: the shortest deletion (due whenever any is), ties to the first name.
        credited = min(deletions, key=lambda p: (p.duration, p.name), default=None)
        # Holders, longest first (forever first), ties to the first name: the first holds
        # whenever any does, and those still holding at an age are always a prefix.
        retentions = sorted(
            (p for p in matching if p.kind == Kind.RETAIN),
            key=lambda p: (p.duration is not None, -(p.duration or _ZERO), p.name),
        )
        self.delete_after = credited.duration if credited is not None else None
        self.retain_for = (retentions[0].duration or FOREVER) if retentions else None
        name = credited.name if credited is not None else None
        names = tuple(p.name for p in retentions)
        self.due = Decision(Action.DELETE, Reason.DUE, name)
        self.held = Decision(Action.KEEP, Reason.HELD, name, names[0] if names else None, names[1:])
        self.not_yet_due = Decision(Action.KEEP, Reason.NOT_YET_DUE, name)
        # Several holders: (span, the held decision naming the holders whose span is longer
        # than an age between this span and the next longer one), shortest span first.
        self.held_by_spans: tuple[tuple[timedelta, Decision], ...] | None = None
        if len(retentions) > 1:
            self.held_by_spans = tuple(
                (
                    retentions[count].duration or FOREVER,
                    Decision(Action.KEEP, Reason.HELD, name, names[0], names[1 : count + 1]),
                )
                for count in range(len(retentions) - 1, -1, -1)
            )

    def held_at(self, age: timedelta) -> Decision:
        """The held decision at `age` (< retain_for), naming every rule still holding."""
        spans = self.held_by_spans
        if spans is None:
            return self.held
        for span, decision in spans:
            if age < span:
                return decision
        return self.held  # not reached: the longest span holds at any age given here


def _dimension(
    policies: Sequence[Policy], dimension: str, test: Callable[[Condition], Callable[[K], bool]]
) -> _Dimension[K] | None:
    """The memo for one part of a call, or None when no policy has a condition on it."""
    free = 0
    tests: list[tuple[int, Callable[[K], bool]]] = []
    for i, policy in enumerate(policies):
        mine = [test(c) for c in policy.conditions if c.dimension == dimension]
        if not mine:
            free |= 1 << i
        elif len(mine) == 1:
            tests.append((1 << i, mine[0]))
        else:
            tests.append((1 << i, _all_of(tuple(mine))))
    return _Dimension(free, tests) if tests else None


def _all_of(tests: tuple[Callable[[K], bool], ...]) -> Callable[[K], bool]:
    return lambda value: all(test(value) for test in tests)


def _agent_test(condition: Condition) -> Callable[[Identity], bool]:
    assert isinstance(condition, AgentsCondition)
    return condition.matches_identity


def _region_test(condition: Condition) -> Callable[[str | None], bool]:
    assert isinstance(condition, RegionsCondition)
    return condition.matches_region


def _status_test(condition: Condition) -> Callable[[str], bool]:
    assert isinstance(condition, StatusesCondition)
    return condition.statuses.__contains__


def _end_reason_test(condition: Condition) -> Callable[[str | None], bool]:
    assert isinstance(condition, EndReasonsCondition)
    return condition.reasons.__contains__


def _telephony_test(condition: Condition) -> Callable[[str | None], bool]:
    assert isinstance(condition, TelephonyCondition)
    return condition.types.__contains__


def _deployment_test(condition: Condition) -> Callable[[Deployment], bool]:
    assert isinstance(condition, DeploymentsCondition)
    return condition.matches_deployment


def _unmemoised(
    policies: Sequence[Policy], kind: type[C]
) -> tuple[int, tuple[tuple[int, tuple[C, ...]], ...]]:
    """For a part of a call whose values rarely repeat (phone numbers, start times):
    the policies free of it, and each other policy's bit with its conditions there."""
    free = 0
    tests: list[tuple[int, tuple[C, ...]]] = []
    for i, policy in enumerate(policies):
        mine = tuple(c for c in policy.conditions if isinstance(c, kind))
        if mine:
            tests.append((1 << i, mine))
        else:
            free |= 1 << i
    return free, tuple(tests)


def _metadata_test(condition: Condition) -> Callable[[str], bool]:
    """On a canonical text, or on an API string (canonical_text is idempotent, so a
    memo keyed by both agrees)."""
    assert isinstance(condition, MetadataCondition)
    globs = condition.globs
    return lambda text: globs(canonical_text(text))


class PolicyIndex:
    """Decides calls against a fixed tuple of policies; see the module docstring."""

    def __init__(self, policies: Sequence[Policy]) -> None:
        self._policies = tuple(policies)
        self._all = (1 << len(self._policies)) - 1
        self._agents = _dimension(policies, AgentsCondition.key, _agent_test)
        self._regions = _dimension(policies, RegionsCondition.key, _region_test)
        self._statuses = _dimension(policies, StatusesCondition.key, _status_test)
        self._end_reasons = _dimension(policies, EndReasonsCondition.key, _end_reason_test)
        self._telephony = _dimension(policies, TelephonyCondition.key, _telephony_test)
        self._deployments = _dimension(policies, DeploymentsCondition.key, _deployment_test)
        self._facts = any(
            d is not None for d in (self._end_reasons, self._telephony, self._deployments)
        )
        # Phone numbers and start times are nearly unique per call: no memo, no cost
        # unless a policy names them; a call's two digests are computed once.
        self._phones_free, self._phones = _unmemoised(policies, PhoneNumbersCondition)
        self._started_free, self._started = _unmemoised(policies, StartedCondition)
        keys = sorted(
            {c.name for p in policies for c in p.conditions if isinstance(c, MetadataCondition)}
        )
        self._metadata: list[tuple[str, _Dimension[str]]] = []
        self._no_metadata = self._all  # the mask for a call with null metadata
        # Keys a retention rule names: a list or an object there leaves the call unclear.
        self._held_keys = tuple(
            sorted(
                {
                    c.name
                    for p in policies
                    if p.kind == Kind.RETAIN
                    for c in p.conditions
                    if isinstance(c, MetadataCondition)
                }
            )
        )
        for key in keys:
            dim = _dimension(policies, f"metadata.{key}", _metadata_test)
            assert dim is not None
            self._metadata.append((key, dim))
            self._no_metadata &= dim.free
        self._outcomes: dict[int, _Outcomes] = {}

    def matching(self, mask: int) -> list[Policy]:
        return [p for i, p in enumerate(self._policies) if mask >> i & 1]

    def mask(self, call: Call, listed: Listed) -> int:
        """The bitmask of the policies whose every condition the call meets."""
        # Memo lookups are inlined: this runs once per call listed.
        mask = self._all
        agents = self._agents
        if agents is not None:
            # All four names: a retention rule needs any to match, a deletion rule all.
            agent = (
                listed.agent_id,
                listed.agent_name or "",
                call.agent_id or "",
                call.agent_name or "",
            )
            found = agents.memo.get(agent)
            mask &= agents.compute(agent) if found is None else found
        regions = self._regions
        if regions is not None:
            found = regions.memo.get(call.deployment_region)
            mask &= regions.compute(call.deployment_region) if found is None else found
        statuses = self._statuses
        if statuses is not None:
            found = statuses.memo.get(call.status)
            mask &= statuses.compute(call.status) if found is None else found
        if self._facts:
            mask &= self._call_facts(call)
        if self._phones:
            mask &= self._phone_mask(call)
        if self._started:
            mask &= self._started_mask(call)
        if self._metadata:
            metadata = call.metadata
            if metadata is None:
                return mask & self._no_metadata
            for key, dim in self._metadata:
                value = metadata.get(key)
                # A string is its own memo key (its canonical text is computed on a miss).
                text = value if value.__class__ is str else text_form(value)
                if text is None:  # absent, null, a list or an object: matches no condition
                    mask &= dim.free
                else:
                    found = dim.memo.get(text)
                    mask &= dim.compute(text) if found is None else found
        return mask

    def _call_facts(self, call: Call) -> int:
        """The mask of the end reason, telephony account and deployment dimensions."""
        mask = self._all
        reasons = self._end_reasons
        if reasons is not None:
            found = reasons.memo.get(call.end_reason)
            mask &= reasons.compute(call.end_reason) if found is None else found
        telephony = self._telephony
        if telephony is not None:
            params = call.telephony_params
            account = None if params is None else params.account_type
            found = telephony.memo.get(account)
            mask &= telephony.compute(account) if found is None else found
        deployments = self._deployments
        if deployments is not None:
            deployment = (call.deployment_id or "", call.deployment_version_id or "")
            found = deployments.memo.get(deployment)
            mask &= deployments.compute(deployment) if found is None else found
        return mask

    def _phone_mask(self, call: Call) -> int:
        mask = self._phones_free
        params = call.telephony_params
        if params is None:  # no telephony data: no phone condition holds
            return mask
        digests = (phone_digest(params.to), phone_digest(params.from_))
        if digests == (None, None):
            return mask
        for bit, conditions in self._phones:
            if all(c.matches_digests(digests) for c in conditions):
                mask |= bit
        return mask

    def _started_mask(self, call: Call) -> int:
        mask = self._started_free
        origin = origin_of(call)
        if origin is None:
            return mask
        for bit, conditions in self._started:
            if all(c.matches_origin(origin) for c in conditions):
                mask |= bit
        return mask

    def decide(
        self, call: Call, now: datetime, listed: Listed, matches: dict[int, int] | None = None
    ) -> Decision:
        """The call's decision. With `matches`, the mask of the policies the call matches
        (whatever the decision, skips included) is counted there: mask -> calls."""
        if matches is not None:
            mask = self.mask(call, listed)
            matches[mask] = matches.get(mask, 0) + 1
            return self._decide(call, now, listed, mask)
        return self._decide(call, now, listed, None)

    def _decide(self, call: Call, now: datetime, listed: Listed, mask: int | None) -> Decision:
        # Skip reasons, most fundamental first: identity, status, redaction, ZDR,
        # timestamps, unclear metadata.
        if call.agent_id and call.agent_id != listed.agent_id:
            return SKIP_INCONSISTENT
        if call.status not in TERMINAL_STATUSES:  # exactly completed or failed
            return SKIP_NOT_TERMINAL
        if call.redacted_at is not None:
            return SKIP_ALREADY_REDACTED
        if call.zdr_enabled:
            return SKIP_ZDR
        origin = call.start_time
        if origin is None:
            origin = call.end_time
            if origin is None:
                return SKIP_NO_TIMESTAMP
        if origin.tzinfo is None:
            origin = origin.replace(tzinfo=UTC)  # a timestamp without offset is UTC
        metadata = call.metadata
        if metadata is not None:
            for key in self._held_keys:
                if is_unclear(metadata.get(key)):
                    return SKIP_UNCLEAR_METADATA
        if mask is None:
            mask = self.mask(call, listed)
        outcomes = self._outcomes.get(mask)
        if outcomes is None:
            outcomes = _Outcomes(self.matching(mask))
            if len(self._outcomes) >= MEMO_LIMIT:
                self._outcomes.clear()
            self._outcomes[mask] = outcomes
        delete_after = outcomes.delete_after
        if delete_after is None:
            return KEEP_NO_DELETION_RULE
        age = now - origin
        if age < delete_after:
            return outcomes.not_yet_due
        retain_for = outcomes.retain_for
        if retain_for is not None and age < retain_for:
            return outcomes.held if outcomes.held_by_spans is None else outcomes.held_at(age)
        return outcomes.due
