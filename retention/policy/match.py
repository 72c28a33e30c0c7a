"""Match conditions: each a small class compiled once from YAML, with its own
validation, its own plain-words description and its own explanation of a miss.

Metadata values compare in one canonical text (`retention.policy.canonical`), the
same for the policy's values and the API's; strings are case-sensitive
shell-style globs (`fnmatch.fnmatchcase` semantics) matched against that text,
compiled to one regex per condition. Regions compare in any letter case.

A call is judged with the agent it was listed under (`Listed`): an `agents`
condition of a retention rule holds when any of the four names of the call's
agent matches (listed id, listed name, the call's `agent_id`, the call's
`agent_name`); of a deletion rule, only when every one that is present matches.

Adding a matcher: a `Condition` subclass (its `part` of a call and whether it
`holds` there) and its parser in `MATCH_KEYS`. The index (`retention.policy.index`)
reads every condition through `part` and `holds` alone, so it needs no change.
"""

from __future__ import annotations

import fnmatch
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Final

import msgspec
from yaml import MappingNode, Node, ScalarNode

from retention.api.models import (
    DOCUMENTED_STATUSES,
    END_REASONS,
    REGIONS,
    SDK_STATUSES,
    TELEPHONY_TYPES,
    TERMINAL_STATUSES,
    Call,
)
from retention.policy.canonical import canonical_text, is_unclear, text_form
from retention.policy.nodes import (
    GLOB_CHARS,
    Where,
    is_null,
    kind,
    metadata_problem,
    metadata_text,
    scalar_items,
    yaml11_problem,
)
from retention.policy.phones import DIGEST, looks_like_number, phone_digest
from retention.policy.problems import suggest
from retention.policy.values import ValueFile
from retention.timestamps import as_utc, rfc3339

__all__ = [
    "MATCH_KEYS",
    "AgentsCondition",
    "Condition",
    "DeploymentsCondition",
    "EndReasonsCondition",
    "Globs",
    "Identity",
    "Listed",
    "MetadataCondition",
    "PhoneNumbersCondition",
    "RegionsCondition",
    "StartedCondition",
    "StatusesCondition",
    "TelephonyCondition",
    "identity",
    "origin_of",
    "region_of",
    "text_form",
]

TERMINAL_ORDER: Final = ("completed", "failed")

# (listed agent id, listed agent name, call's agent_id, call's agent_name); "" = absent.
Identity = tuple[str, str, str, str]


class Listed(msgspec.Struct, frozen=True):
    """The agent a call was listed under: its id, and its current name from GET /agents.
    (A struct: one is made per call decided, and a struct is quicker to make.)"""

    agent_id: str
    agent_name: str | None = None


def identity(call: Call, listed: Listed) -> Identity:
    """The four names of a call's agent, absent ones as ""."""
    return (listed.agent_id, listed.agent_name or "", call.agent_id or "", call.agent_name or "")


def region_of(value: str | None) -> str | None:
    """A region in its canonical case (`eu` -> `EU`); anything else unchanged."""
    if value is None or not value.isascii():
        return value
    upper = value.upper()
    return upper if upper in REGIONS else value


def _quoted(items: tuple[str, ...], joiner: str = "or") -> str:
    words = [f"`{i}`" for i in items]
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} {joiner} {words[-1]}"


def _plain(items: tuple[str, ...]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} or {items[-1]}"


@dataclass(frozen=True, slots=True)
class Globs:
    """Case-sensitive shell-style patterns, any of which may match: the plain values in a
    frozenset (constant time however many a value file lists), the patterns with glob
    characters as one compiled regex. `source` names the value file they came from."""

    patterns: tuple[str, ...]
    source: ValueFile | None = field(default=None, compare=False)
    exact: frozenset[str] = field(init=False, repr=False, compare=False)
    match: Callable[[str], object] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        globs = [p for p in self.patterns if not GLOB_CHARS.isdisjoint(p)]
        object.__setattr__(
            self, "exact", frozenset(p for p in self.patterns if GLOB_CHARS.isdisjoint(p))
        )
        regex = re.compile("|".join(fnmatch.translate(p) for p in globs)) if globs else None
        object.__setattr__(self, "match", None if regex is None else regex.match)

    def __call__(self, text: str) -> bool:
        if text in self.exact:
            return True
        match = self.match
        return match is not None and match(text) is not None

    def words(self) -> str:
        """The patterns for a description; a value file by its name and size."""
        if self.source is not None:
            return self.source.words()
        return _quoted(self.patterns)

    def covers(self, other: Globs) -> bool:
        """True only when every text `other` matches surely matches here (conservative)."""
        mine = set(self.patterns)
        return all(
            p in mine or "*" in mine or (GLOB_CHARS.isdisjoint(p) and self(p))
            for p in other.patterns
        )


class Condition(ABC):
    """One condition under `match:`; a policy matches a call when all of its conditions do.

    A condition looks at one `part` of a call (its region, its agent's names, ...) and
    `holds` or not for that value; conditions with the same `dimension` look at the same
    part. `repeats`: whether many calls share a value there, so an index may memoise it."""

    key: ClassVar[str]
    repeats: ClassVar[bool] = True

    @property
    def dimension(self) -> str:
        """What part of a call this looks at; conditions on the same part can be compared."""
        return self.key

    @abstractmethod
    def part(self, call: Call, listed: Listed) -> Hashable:
        """The value this condition looks at: the same for every condition of a dimension."""

    @abstractmethod
    def holds(self, value: Any) -> bool:
        """Whether the condition holds for a value its `part` returned."""

    def matches(self, call: Call, listed: Listed) -> bool:
        return self.holds(self.part(call, listed))

    @abstractmethod
    def describe(self) -> str:
        """The condition in plain words, e.g. "the region is US or EU"."""

    @abstractmethod
    def mismatch(self, call: Call, listed: Listed) -> str:
        """Why a call fails this condition, naming no metadata value."""

    @abstractmethod
    def covers(self, other: Condition) -> bool:
        """Whether every call `other` matches surely matches this too (conservative)."""

    @abstractmethod
    def signature(self) -> tuple[object, ...]:
        """A comparable form: equal signatures select the same calls."""

    def excludes(self, other: Condition) -> bool:
        """Whether no call can meet both this and `other` (conservative: False when unsure)."""
        return False


@dataclass(frozen=True, slots=True)
class AgentsCondition(Condition):
    """`every` is set for a deletion rule: then the agent must match by every id it has
    (the listed id, and the call's `agent_id` when present), or by every name it has
    (the listed name and the call's `agent_name`, those present, at least one): the
    sources of one kind must agree. For a retention rule any one of the four is enough."""

    key: ClassVar[str] = "agents"
    globs: Globs
    every: bool = False

    def part(self, call: Call, listed: Listed) -> Identity:
        return identity(call, listed)

    def holds(self, value: Identity) -> bool:
        globs = self.globs
        listed_id, listed_name, call_id, call_name = value
        # The listed id always counts, even empty: a call of no known agent never matches.
        if self.every:
            by_id = globs(listed_id) and (not call_id or globs(call_id))
            by_name = (bool(listed_name) or bool(call_name)) and (
                (not listed_name or globs(listed_name)) and (not call_name or globs(call_name))
            )
            return by_id or by_name
        return (
            globs(listed_id)
            or (bool(listed_name) and globs(listed_name))
            or (bool(call_id) and globs(call_id))
            or (bool(call_name) and globs(call_name))
        )

    def describe(self) -> str:
        if self.every:
            return (
                f"the agent is {self.globs.words()} by all its ids or by all its "
                "names (as listed and as the call says)"
            )
        return (
            f"the agent is {self.globs.words()} by any id or name it has "
            "(as listed or as the call says)"
        )

    def mismatch(self, call: Call, listed: Listed) -> str:
        listed_id, listed_name, call_id, call_name = identity(call, listed)
        names = [("listed agent", listed_id), ("listed name", listed_name)]
        names += [("call's agent_id", call_id), ("call's agent_name", call_name)]
        present = [(what, value) for what, value in names if value or what == "listed agent"]
        patterns = self.globs.words()
        if self.every:
            failed = [f"{what} `{value}`" for what, value in present if not self.globs(value)]
            return (
                f"{_plain(tuple(failed))} is not {patterns} "
                "(a deletion needs all its ids, or all its names, to match)"
            )
        shown = [f"{what} `{value}`" for what, value in present]
        return f"none of {_plain(tuple(shown))} is {patterns}"

    def covers(self, other: Condition) -> bool:
        # Any or all: every text `other` matches also matches here, so any identity does.
        return isinstance(other, AgentsCondition) and self.globs.covers(other.globs)

    def signature(self) -> tuple[object, ...]:
        return (self.key, frozenset(self.globs.patterns))


@dataclass(frozen=True, slots=True)
class OneOfCondition(Condition):
    """A condition that holds when one text field of a call is any of a set of values
    (its region, status, end reason, telephony account type). Each kind names its field
    (`part`), the order its values are listed in, and the words for them."""

    values: frozenset[str]
    order: ClassVar[tuple[str, ...]]  # the order values are named in
    noun: ClassVar[str]  # "region": "the region is US or EU"
    missing: ClassVar[str]  # "region": "the call has no region (needs US or EU)"

    def holds(self, value: str | None) -> bool:
        return value in self.values

    def _listed(self) -> str:
        return _plain(_sorted(self.values, self.order))

    def describe(self) -> str:
        return f"the {self.noun} is {self._listed()}"

    def mismatch(self, call: Call, listed: Listed) -> str:
        value = self.part(call, listed)
        if value is None:
            return f"the call has no {self.missing} (needs {self._listed()})"
        return f"{self.noun} {value or '(none)'} is not {self._listed()}"

    def covers(self, other: Condition) -> bool:
        return type(other) is type(self) and other.values <= self.values

    def excludes(self, other: Condition) -> bool:
        return type(other) is type(self) and other.values.isdisjoint(self.values)

    def signature(self) -> tuple[object, ...]:
        return (self.key, self.values)


@dataclass(frozen=True, slots=True)
class RegionsCondition(OneOfCondition):
    """Regions in canonical case; the call's region is compared in any letter case."""

    key: ClassVar[str] = "regions"
    order: ClassVar[tuple[str, ...]] = REGIONS
    noun: ClassVar[str] = "region"
    missing: ClassVar[str] = "region"

    def part(self, call: Call, listed: Listed) -> str | None:
        return call.deployment_region

    def holds(self, value: str | None) -> bool:
        return region_of(value) in self.values


@dataclass(frozen=True, slots=True)
class StatusesCondition(OneOfCondition):
    """Exactly: `Completed` is no terminal status."""

    key: ClassVar[str] = "statuses"
    order: ClassVar[tuple[str, ...]] = TERMINAL_ORDER
    noun: ClassVar[str] = "status"
    missing: ClassVar[str] = "status"

    def part(self, call: Call, listed: Listed) -> str:
        return call.status


@dataclass(frozen=True, slots=True)
class MetadataCondition(Condition):
    """One key under `match.metadata`: the call must have the key and its text must match."""

    key: ClassVar[str] = "metadata"
    name: str
    globs: Globs

    @property
    def dimension(self) -> str:
        return f"metadata.{self.name}"

    def part(self, call: Call, listed: Listed) -> str | None:
        """The value's text: an API string as it is (its canonical text is taken by
        `holds`: canonical_text is idempotent, so a memo keyed by either agrees), any
        other value in its canonical text; None when absent, null, a list or an object."""
        metadata = call.metadata
        if metadata is None:
            return None
        value = metadata.get(self.name)
        return value if type(value) is str else text_form(value)

    def holds(self, value: str | None) -> bool:
        """Null, a list or an object matches no condition, not even `*`."""
        return value is not None and self.globs(canonical_text(value))

    def describe(self) -> str:
        return f"metadata `{self.name}` is {self.globs.words()}"

    def mismatch(self, call: Call, listed: Listed) -> str:
        # Never the call's value: metadata values are personal data.
        value = None if call.metadata is None else call.metadata.get(self.name)
        if value is None:
            return f"metadata key `{self.name}` is absent"
        if is_unclear(value):
            return f"metadata key `{self.name}` is a list or an object, which matches nothing"
        return f"metadata key `{self.name}` did not match"

    def covers(self, other: Condition) -> bool:
        return (
            isinstance(other, MetadataCondition)
            and other.name == self.name
            and self.globs.covers(other.globs)
        )

    def excludes(self, other: Condition) -> bool:
        # Only plain values can be told apart for sure; patterns may overlap.
        return (
            isinstance(other, MetadataCondition)
            and other.name == self.name
            and self.globs.match is None
            and other.globs.match is None
            and self.globs.exact.isdisjoint(other.globs.exact)
        )

    def signature(self) -> tuple[object, ...]:
        return (self.dimension, frozenset(self.globs.patterns))


def origin_of(call: Call) -> datetime | None:
    """The instant a call started, as its age counts it: `start_time`, else `end_time`
    (a call that never connected has only that); without an offset, UTC."""
    origin = call.age_origin
    return None if origin is None else as_utc(origin)


def _sorted(values: frozenset[str], order: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(v for v in order if v in values)


@dataclass(frozen=True, slots=True)
class PhoneNumbersCondition(Condition):
    """The call is to or from a number whose digest is listed (see retention.policy.phones).
    A call without telephony data, or whose numbers do not normalise, never matches."""

    key: ClassVar[str] = "phone_numbers"
    digests: frozenset[str]
    source: ValueFile | None = field(default=None, compare=False)

    repeats: ClassVar[bool] = False  # nearly one number per call: no memo

    def part(self, call: Call, listed: Listed) -> tuple[str | None, str | None]:
        """The digests of the `to` and `from` numbers (None: absent or not a number)."""
        params = call.telephony_params
        if params is None:
            return (None, None)
        return (phone_digest(params.to), phone_digest(params.from_))

    def holds(self, value: tuple[str | None, str | None]) -> bool:
        to, from_ = value
        return (to is not None and to in self.digests) or (
            from_ is not None and from_ in self.digests
        )

    def describe(self) -> str:
        source = self.source
        if source is not None:
            where = f"{source.path} (sha256:{source.sha256[:16]})"
            return f"the call is to or from one of the hashed phone numbers in {where}"
        if len(self.digests) == 1:
            return "the call is to or from the hashed phone number given"
        return f"the call is to or from one of the {len(self.digests)} hashed phone numbers given"

    def mismatch(self, call: Call, listed: Listed) -> str:
        # Never a number, nor its digest: only which side was there to compare.
        params = call.telephony_params
        if params is None:
            return "the call has no telephony data (no phone numbers)"
        present = [side for side, value in (("to", params.to), ("from", params.from_)) if value]
        if not present:
            return "the call has no `to` or `from` number (removed, or never set)"
        return f"its {' and '.join(f'`{s}`' for s in present)} number is not a listed one"

    def covers(self, other: Condition) -> bool:
        return isinstance(other, PhoneNumbersCondition) and other.digests <= self.digests

    def signature(self) -> tuple[object, ...]:
        return (self.key, self.digests)


@dataclass(frozen=True, slots=True)
class EndReasonsCondition(OneOfCondition):
    key: ClassVar[str] = "end_reasons"
    order: ClassVar[tuple[str, ...]] = END_REASONS
    noun: ClassVar[str] = "end reason"
    missing: ClassVar[str] = "end reason"

    def part(self, call: Call, listed: Listed) -> str | None:
        return call.end_reason


def account_type_of(call: Call) -> str | None:
    params = call.telephony_params
    return None if params is None else params.account_type


@dataclass(frozen=True, slots=True)
class TelephonyCondition(OneOfCondition):
    """The telephony account type; a call without telephony data never matches."""

    key: ClassVar[str] = "telephony"
    order: ClassVar[tuple[str, ...]] = TELEPHONY_TYPES
    noun: ClassVar[str] = "telephony account"
    missing: ClassVar[str] = "telephony account type"

    def part(self, call: Call, listed: Listed) -> str | None:
        return account_type_of(call)


# (deployment_id, deployment_version_id); "" = absent.
Deployment = tuple[str, str]


def deployment_of(call: Call) -> Deployment:
    return (call.deployment_id or "", call.deployment_version_id or "")


@dataclass(frozen=True, slots=True)
class DeploymentsCondition(Condition):
    """The call's deployment id or its deployment version id matches (either is enough)."""

    key: ClassVar[str] = "deployments"
    globs: Globs

    def part(self, call: Call, listed: Listed) -> Deployment:
        return deployment_of(call)

    def holds(self, value: Deployment) -> bool:
        globs = self.globs
        ident, version = value
        return (bool(ident) and globs(ident)) or (bool(version) and globs(version))

    def describe(self) -> str:
        return f"the deployment or its version is {self.globs.words()}"

    def mismatch(self, call: Call, listed: Listed) -> str:
        ident, version = deployment_of(call)
        if not ident and not version:
            return "the call names no deployment"
        shown = [f"{w} `{v}`" for w, v in (("deployment", ident), ("version", version)) if v]
        return f"neither {' nor '.join(shown)} is {self.globs.words()}"

    def covers(self, other: Condition) -> bool:
        return isinstance(other, DeploymentsCondition) and self.globs.covers(other.globs)

    def signature(self) -> tuple[object, ...]:
        return (self.key, frozenset(self.globs.patterns))


@dataclass(frozen=True, slots=True)
class StartedCondition(Condition):
    """`started_before` (strictly before) or `started_after` (at or after) an instant,
    measured on `origin_of`: `started_after: A` with `started_before: B` is [A, B)."""

    key: ClassVar[str] = "started"
    instant: datetime
    before: bool

    @property
    def field_name(self) -> str:
        return "started_before" if self.before else "started_after"

    repeats: ClassVar[bool] = False  # start times are nearly unique: no memo

    def part(self, call: Call, listed: Listed) -> datetime | None:
        return origin_of(call)

    def holds(self, value: datetime | None) -> bool:
        if value is None:
            return False
        return value < self.instant if self.before else value >= self.instant

    def _when(self) -> str:
        return rfc3339(self.instant)

    def describe(self) -> str:
        where = "before" if self.before else "at or after"
        return f"the call started {where} {self._when()}"

    def mismatch(self, call: Call, listed: Listed) -> str:
        origin = origin_of(call)
        if origin is None:
            return "the call has no start_time or end_time"
        where = "not before" if self.before else "before"
        return f"it started {rfc3339(origin)}, {where} {self._when()}"

    def covers(self, other: Condition) -> bool:
        if not isinstance(other, StartedCondition) or other.before != self.before:
            return False
        return other.instant <= self.instant if self.before else other.instant >= self.instant

    def excludes(self, other: Condition) -> bool:
        if not isinstance(other, StartedCondition) or other.before == self.before:
            return False
        before, after = (self, other) if self.before else (other, self)
        return before.instant <= after.instant

    def signature(self) -> tuple[object, ...]:
        return (self.field_name, self.instant)


def _parse_agents(node: Node, where: Where) -> list[Condition]:
    items = scalar_items(node, where, "match.agents", "an agent id or name (a glob)")
    if items is None:
        return []
    return [AgentsCondition(Globs(tuple(str(i.value) for i in items), items.source))]


def _parse_regions(node: Node, where: Where) -> list[Condition]:
    items = scalar_items(node, where, "match.regions", "a region (US, EU or APAC)")
    if items is None:
        return []
    regions: set[str] = set()
    for i, item in enumerate(items):
        value = str(item.value)
        region = region_of(value)
        if region in REGIONS:
            regions.add(region)
        else:
            where.add(
                item,
                f"match.regions[{i}]" if len(items) > 1 else "match.regions",
                f"unknown region `{value}`; regions are US, EU and APAC{suggest(value, REGIONS)}",
            )
    return [RegionsCondition(frozenset(regions))] if len(regions) == len(items) else []


def _parse_statuses(node: Node, where: Where) -> list[Condition]:
    items = scalar_items(node, where, "match.statuses", "a status (completed or failed)")
    if items is None:
        return []
    statuses: set[str] = set()
    for i, item in enumerate(items):
        value = str(item.value)
        field_name = f"match.statuses[{i}]" if len(items) > 1 else "match.statuses"
        if value in TERMINAL_STATUSES:
            statuses.add(value)
        elif value in DOCUMENTED_STATUSES or value in SDK_STATUSES:
            where.add(
                item,
                field_name,
                f"`{value}` is not a terminal status: only completed and failed calls "
                "can be deleted or retained (omit statuses to match both)",
            )
        else:
            where.add(
                item,
                field_name,
                f"unknown status `{value}`; statuses are completed and failed"
                + suggest(value, TERMINAL_ORDER),
            )
    return [StatusesCondition(frozenset(statuses))] if len(statuses) == len(items) else []


def _parse_metadata(node: Node, where: Where) -> list[Condition]:
    if not isinstance(node, MappingNode):
        got = "nothing (null)" if is_null(node) else kind(node)
        where.add(node, "match.metadata", f"expected a mapping of key: value(s), got {got}")
        return []
    conditions: list[Condition] = []
    seen: dict[str, int] = {}
    for key_node, value_node in node.value:
        if not isinstance(key_node, ScalarNode) or is_null(key_node):
            where.add(key_node, "match.metadata", f"a key must be text, got {kind(key_node)}")
            continue
        name = str(key_node.value)
        refused = yaml11_problem(key_node)
        if refused is not None:
            where.add(key_node, "match.metadata", refused)
            continue
        if name in seen:  # two values for one key would silently match nothing
            where.add(
                key_node,
                "match.metadata",
                f"duplicate key `{name}` (also on line {seen[name]}); list the values instead",
            )
            continue
        seen[name] = key_node.start_mark.line + 1
        items = scalar_items(value_node, where, f"match.metadata.{name}", "a value (a glob)")
        if items is None:
            continue
        ok = True
        for i, item in enumerate(items):
            problem = metadata_problem(item)
            if problem is not None:
                at = f"match.metadata.{name}" + (f"[{i}]" if len(items) > 1 else "")
                where.add(item, at, problem)
                ok = False
        if ok:
            patterns = tuple(metadata_text(i) for i in items)
            conditions.append(MetadataCondition(name, Globs(patterns, items.source)))
    return conditions


def _at(field_name: str, items: list[ScalarNode], i: int) -> str:
    return f"{field_name}[{i}]" if len(items) > 1 else field_name


def _parse_phone_numbers(node: Node, where: Where) -> list[Condition]:
    items = scalar_items(
        node, where, "match.phone_numbers", "a phone number's digest (`sha256:...`)"
    )
    if items is None:
        return []
    digests: set[str] = set()
    ok = True
    fullmatch = DIGEST.fullmatch
    for i, item in enumerate(items):
        value = str(item.value).strip().lower()
        if fullmatch(value):
            digests.add(value)
            continue
        ok = False
        if looks_like_number(value):  # never repeat the number in the message
            where.add(
                item,
                _at("match.phone_numbers", items, i),
                "a plain phone number: policies hold only digests, so that no phone number "
                "is written in a policy, a log or a report; run `retention hash-phone NUMBER` "
                "and write the `sha256:...` it prints instead",
            )
        else:
            where.add(
                item,
                _at("match.phone_numbers", items, i),
                "not a phone number's digest: expected `sha256:` and 64 hex digits, as "
                "printed by `retention hash-phone NUMBER`",
            )
    if not ok:
        return []
    return [PhoneNumbersCondition(frozenset(digests), items.source)]


def _parse_choices(
    node: Node, where: Where, field_name: str, what: str, choices: tuple[str, ...]
) -> frozenset[str] | None:
    """Values of a closed set, compared exactly; an unknown one gets a did-you-mean."""
    items = scalar_items(node, where, field_name, what)
    if items is None:
        return None
    found: set[str] = set()
    for i, item in enumerate(items):
        value = str(item.value)
        if value in choices:
            found.add(value)
        else:
            where.add(
                item,
                _at(field_name, items, i),
                f"unknown value `{value}`; the documented ones are {', '.join(choices)}"
                + suggest(value, choices),
            )
    return frozenset(found) if len(found) == len({str(i.value) for i in items}) else None


def _parse_end_reasons(node: Node, where: Where) -> list[Condition]:
    reasons = _parse_choices(node, where, "match.end_reasons", "an end reason", END_REASONS)
    return [] if reasons is None else [EndReasonsCondition(reasons)]


def _parse_telephony(node: Node, where: Where) -> list[Condition]:
    types = _parse_choices(
        node, where, "match.telephony", "a telephony account type", TELEPHONY_TYPES
    )
    return [] if types is None else [TelephonyCondition(types)]


def _parse_deployments(node: Node, where: Where) -> list[Condition]:
    items = scalar_items(node, where, "match.deployments", "a deployment id or version id (a glob)")
    if items is None:
        return []
    return [DeploymentsCondition(Globs(tuple(str(i.value) for i in items), items.source))]


_RFC3339: Final = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?"
    r"(?:[Zz]|[+-][0-9]{2}:[0-9]{2})"
)


def _parse_instant(node: Node, where: Where, field_name: str) -> datetime | None:
    example = "an RFC 3339 instant with its offset, e.g. 2026-01-01T00:00:00Z"
    if not isinstance(node, ScalarNode) or is_null(node):
        where.add(node, field_name, f"expected {example}, got {kind(node)}")
        return None
    text = str(node.value).strip()
    if not _RFC3339.fullmatch(text):
        hint = (
            " (a date alone is ambiguous: give the time and its offset)" if len(text) == 10 else ""
        )
        where.add(node, field_name, f"`{text}` is not {example}{hint}")
        return None
    try:
        moment = datetime.fromisoformat(text[:-1] + "+00:00" if text[-1] in "zZ" else text)
    except ValueError:
        where.add(node, field_name, f"`{text}` is not a real instant (check the date and time)")
        return None
    return moment


def _parse_started_before(node: Node, where: Where) -> list[Condition]:
    instant = _parse_instant(node, where, "match.started_before")
    return [] if instant is None else [StartedCondition(instant, before=True)]


def _parse_started_after(node: Node, where: Where) -> list[Condition]:
    instant = _parse_instant(node, where, "match.started_after")
    return [] if instant is None else [StartedCondition(instant, before=False)]


# The keys allowed under `match:`, each with the parser that validates and compiles it.
MATCH_KEYS: Final[dict[str, Callable[[Node, Where], list[Condition]]]] = {
    "agents": _parse_agents,
    "regions": _parse_regions,
    "statuses": _parse_statuses,
    "metadata": _parse_metadata,
    "phone_numbers": _parse_phone_numbers,
    "end_reasons": _parse_end_reasons,
    "telephony": _parse_telephony,
    "deployments": _parse_deployments,
    "started_after": _parse_started_after,
    "started_before": _parse_started_before,
}
