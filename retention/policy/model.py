"""Compiled policies: what `load_policies` returns and the engine evaluates."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

from retention.api.models import Call
from retention.policy.match import Condition, Listed

if TYPE_CHECKING:
    from retention.policy.index import PolicyIndex


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


@dataclass(frozen=True, slots=True)
class PolicySet:
    """The policies of a run, compiled once into an index that `decide` reads."""

    policies: tuple[Policy, ...]
    sources: tuple[PolicySource, ...] = ()
    index: PolicyIndex = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        from retention.policy.index import PolicyIndex  # here: index imports this module

        object.__setattr__(self, "index", PolicyIndex(self.policies))

    def by_name(self, name: str) -> Policy:
        for policy in self.policies:
            if policy.name == name:
                return policy
        raise KeyError(name)
