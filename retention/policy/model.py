"""Compiled policies: what `load_policies` returns and the engine evaluates."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Final

from retention.api.models import Call
from retention.policy.decision import ByAge
from retention.policy.index import PolicyIndex
from retention.policy.match import Condition, Listed, MetadataCondition

FOREVER: Final = timedelta.max  # longer than any real age


class Kind(enum.StrEnum):
    DELETE = "delete_after"
    RETAIN = "retain_for"


@dataclass(frozen=True, slots=True)
class Policy:
    name: str
    kind: Kind
    duration: timedelta | None  # None only for `retain_for: forever`
    duration_text: str  # as written, e.g. "90d" or "forever"
    conditions: tuple[Condition, ...]  # all must hold; empty = every call
    description: str | None = None
    file: str = "<memory>"
    line: int = 0
    # Free-text annotations for the record of processing (GDPR Art. 30): shown by
    # validate, explain, the reports and the plan; never in per-call audit lines.
    legal_basis: str | None = None
    category: str | None = None
    request_id: str | None = None  # a deletion rule's (a sweep's) request
    case: str | None = None  # a retention rule's (a hold's) case

    @property
    def annotations(self) -> tuple[tuple[str, str], ...]:
        """The annotations that are set, as (key, text) in a fixed order."""
        found = (
            ("legal_basis", self.legal_basis),
            ("category", self.category),
            ("request_id", self.request_id),
            ("case", self.case),
        )
        return tuple((key, text) for key, text in found if text)

    @property
    def forever(self) -> bool:
        return self.duration is None

    @property
    def span(self) -> timedelta:
        """How long the rule runs: its duration, `FOREVER` for `retain_for: forever`."""
        return FOREVER if self.duration is None else self.duration

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    def first_mismatch(self, call: Call, listed: Listed) -> Condition | None:
        """The first condition the call, listed under `listed`, fails; None when all hold."""
        for condition in self.conditions:
            if not condition.matches(call, listed):
                return condition
        return None

    def matches(self, call: Call, listed: Listed) -> bool:
        return self.first_mismatch(call, listed) is None


@dataclass(frozen=True, slots=True)
class PolicySource:
    """A loaded file and the SHA-256 (hex) of its bytes, for the audit log's run_started.
    `values` is set for a value file (`{file: PATH}`): how many values it holds."""

    path: str
    sha256: str
    values: int | None = None


class PolicySet:
    """The policies of a run, with what makes deciding a call cheap: the index of which
    policies match it, and a memo (filled by the engine) of what each set of matching
    policies decides by age. The memo is bounded by the engine."""

    __slots__ = ("held_keys", "index", "outcomes", "policies", "sources")

    def __init__(self, policies: Iterable[Policy], sources: Iterable[PolicySource] = ()) -> None:
        self.policies = tuple(policies)
        self.sources = tuple(sources)
        self.index = PolicyIndex([p.conditions for p in self.policies])
        # Metadata keys a retention rule names: a list or an object there is unclear.
        self.held_keys = tuple(
            sorted(
                {
                    c.name
                    for p in self.policies
                    if p.kind is Kind.RETAIN
                    for c in p.conditions
                    if isinstance(c, MetadataCondition)
                }
            )
        )
        self.outcomes: dict[int, ByAge] = {}  # mask of matching policies -> decisions

    def by_name(self, name: str) -> Policy:
        for policy in self.policies:
            if policy.name == name:
                return policy
        raise KeyError(name)
