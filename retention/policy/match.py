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
"""

from __future__ import annotations

import fnmatch
import re
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar, Final

from yaml import MappingNode, Node, ScalarNode

from retention.api.models import (
    DOCUMENTED_STATUSES,
    REGIONS,
    SDK_STATUSES,
    TERMINAL_STATUSES,
    Call,
)
from retention.policy.canonical import is_unclear, text_form
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
from retention.policy.problems import suggest

__all__ = [
    "MATCH_KEYS",
    "AgentsCondition",
    "Condition",
    "Globs",
    "Identity",
    "Listed",
    "MetadataCondition",
    "RegionsCondition",
    "StatusesCondition",
    "identity",
    "region_of",
    "text_form",
]

TERMINAL_ORDER: Final = ("completed", "failed")

# (listed agent id, listed agent name, call's agent_id, call's agent_name); "" = absent.
Identity = tuple[str, str, str, str]


@dataclass(frozen=True, slots=True)
class Listed:
    """The agent a call was listed under: its id, and its current name from GET /agents."""

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
    """Case-sensitive shell-style patterns, any of which may match, as one compiled regex."""

    patterns: tuple[str, ...]
    match: Callable[[str], object] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        regex = re.compile("|".join(fnmatch.translate(p) for p in self.patterns))
        object.__setattr__(self, "match", regex.match)

    def __call__(self, text: str) -> bool:
        return self.match(text) is not None

    def covers(self, other: Globs) -> bool:
        """True only when every text `other` matches surely matches here (conservative)."""
        mine = set(self.patterns)
        return all(
            p in mine or "*" in mine or (GLOB_CHARS.isdisjoint(p) and self(p))
            for p in other.patterns
        )


class Condition(ABC):
    """One condition under `match:`; a policy matches a call when all of its conditions do."""

    key: ClassVar[str]

    @property
    def dimension(self) -> str:
        """What part of a call this looks at; conditions on the same part can be compared."""
        return self.key

    @abstractmethod
    def matches(self, call: Call, listed: Listed) -> bool: ...

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


@dataclass(frozen=True, slots=True)
class AgentsCondition(Condition):
    """`every` is set for a deletion rule: then the agent must match by every id it has
    (the listed id, and the call's `agent_id` when present), or by every name it has
    (the listed name and the call's `agent_name`, those present, at least one): the
    sources of one kind must agree. For a retention rule any one of the four is enough."""

    key: ClassVar[str] = "agents"
    globs: Globs
    every: bool = False

    def matches_identity(self, names: Identity) -> bool:
        globs = self.globs
        listed_id, listed_name, call_id, call_name = names
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

    def matches(self, call: Call, listed: Listed) -> bool:
        return self.matches_identity(identity(call, listed))

    def describe(self) -> str:
        if self.every:
            return (
                f"the agent is {_quoted(self.globs.patterns)} by all its ids or by all its "
                "names (as listed and as the call says)"
            )
        return (
            f"the agent is {_quoted(self.globs.patterns)} by any id or name it has "
            "(as listed or as the call says)"
        )

    def mismatch(self, call: Call, listed: Listed) -> str:
        listed_id, listed_name, call_id, call_name = identity(call, listed)
        names = [("listed agent", listed_id), ("listed name", listed_name)]
        names += [("call's agent_id", call_id), ("call's agent_name", call_name)]
        present = [(what, value) for what, value in names if value or what == "listed agent"]
        patterns = _quoted(self.globs.patterns)
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
class RegionsCondition(Condition):
    """Regions in canonical case; the call's region is compared in any letter case."""

    key: ClassVar[str] = "regions"
    regions: frozenset[str]

    def matches_region(self, region: str | None) -> bool:
        return region_of(region) in self.regions

    def matches(self, call: Call, listed: Listed) -> bool:
        return self.matches_region(call.deployment_region)

    def _listed(self) -> str:
        return _plain(tuple(r for r in REGIONS if r in self.regions))

    def describe(self) -> str:
        return f"the region is {self._listed()}"

    def mismatch(self, call: Call, listed: Listed) -> str:
        if call.deployment_region is None:
            return f"the call has no region (needs {self._listed()})"
        return f"region {call.deployment_region} is not {self._listed()}"

    def covers(self, other: Condition) -> bool:
        return isinstance(other, RegionsCondition) and other.regions <= self.regions

    def signature(self) -> tuple[object, ...]:
        return (self.key, self.regions)


@dataclass(frozen=True, slots=True)
class StatusesCondition(Condition):
    key: ClassVar[str] = "statuses"
    statuses: frozenset[str]

    def matches(self, call: Call, listed: Listed) -> bool:
        return call.status in self.statuses  # exactly: `Completed` is no terminal status

    def _listed(self) -> str:
        return _plain(tuple(s for s in TERMINAL_ORDER if s in self.statuses))

    def describe(self) -> str:
        return f"the status is {self._listed()}"

    def mismatch(self, call: Call, listed: Listed) -> str:
        return f"status {call.status or '(none)'} is not {self._listed()}"

    def covers(self, other: Condition) -> bool:
        return isinstance(other, StatusesCondition) and other.statuses <= self.statuses

    def signature(self) -> tuple[object, ...]:
        return (self.key, self.statuses)


@dataclass(frozen=True, slots=True)
class MetadataCondition(Condition):
    """One key under `match.metadata`: the call must have the key and its text must match."""

    key: ClassVar[str] = "metadata"
    name: str
    globs: Globs

    @property
    def dimension(self) -> str:
        return f"metadata.{self.name}"

    def matches_value(self, value: object) -> bool:
        """Null, a list or an object matches no condition, not even `*`."""
        text = text_form(value)
        return text is not None and self.globs(text)

    def matches(self, call: Call, listed: Listed) -> bool:
        metadata = call.metadata
        return metadata is not None and self.matches_value(metadata.get(self.name))

    def describe(self) -> str:
        return f"metadata `{self.name}` is {_quoted(self.globs.patterns)}"

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

    def signature(self) -> tuple[object, ...]:
        return (self.dimension, frozenset(self.globs.patterns))


def _parse_agents(node: Node, where: Where) -> list[Condition]:
    items = scalar_items(node, where, "match.agents", "an agent id or name (a glob)")
    if items is None:
        return []
    return [AgentsCondition(Globs(tuple(str(i.value) for i in items)))]


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
            conditions.append(MetadataCondition(name, Globs(patterns)))
    return conditions


# The keys allowed under `match:`, each with the parser that validates and compiles it.
MATCH_KEYS: Final[dict[str, Callable[[Node, Where], list[Condition]]]] = {
    "agents": _parse_agents,
    "regions": _parse_regions,
    "statuses": _parse_statuses,
    "metadata": _parse_metadata,
}
