"""Match conditions: each a small class compiled once from YAML, with its own
validation, its own plain-words description and its own explanation of a miss.

Metadata values compare as text (`text_form`); strings are case-sensitive
shell-style globs (`fnmatch.fnmatchcase` semantics), compiled to one regex per
condition.
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
    MetadataValue,
)
from retention.policy.nodes import Where, is_null, kind, metadata_text, scalar_items
from retention.policy.problems import suggest

_GLOB_CHARS: Final = frozenset("*?[")
TERMINAL_ORDER: Final = ("completed", "failed")


def text_form(value: MetadataValue) -> str | None:
    """The text of an API metadata value: strings as they are, booleans `true`/`false`,
    integers in decimal, floats by Python's repr (`7.0` -> `7.0`); null is no value."""
    cls = value.__class__
    if cls is str:
        return value  # type: ignore[return-value]
    if cls is bool:
        return "true" if value else "false"
    if cls is int:
        return str(value)
    if cls is float:
        return repr(value)
    return None


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
            p in mine or "*" in mine or (_GLOB_CHARS.isdisjoint(p) and self(p))
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
    def matches(self, call: Call, agent_name: str | None) -> bool: ...

    @abstractmethod
    def describe(self) -> str:
        """The condition in plain words, e.g. "the region is US or EU"."""

    @abstractmethod
    def mismatch(self, call: Call, agent_name: str | None) -> str:
        """Why a call fails this condition, naming no metadata value."""

    @abstractmethod
    def covers(self, other: Condition) -> bool:
        """Whether every call `other` matches surely matches this too (conservative)."""

    @abstractmethod
    def signature(self) -> tuple[object, ...]:
        """A comparable form: equal signatures select the same calls."""


@dataclass(frozen=True, slots=True)
class AgentsCondition(Condition):
    key: ClassVar[str] = "agents"
    globs: Globs

    def matches_agent(self, agent_id: str, agent_name: str | None) -> bool:
        globs = self.globs
        return globs(agent_id) or (agent_name is not None and globs(agent_name))

    def matches(self, call: Call, agent_name: str | None) -> bool:
        return self.matches_agent(call.agent_id, call.agent_name or agent_name)

    def describe(self) -> str:
        return f"the agent (id or name) is {_quoted(self.globs.patterns)}"

    def mismatch(self, call: Call, agent_name: str | None) -> str:
        name = call.agent_name or agent_name
        who = f"agent `{call.agent_id}`" + (f" (`{name}`)" if name else "")
        return f"{who} is not {_quoted(self.globs.patterns)}"

    def covers(self, other: Condition) -> bool:
        return isinstance(other, AgentsCondition) and self.globs.covers(other.globs)

    def signature(self) -> tuple[object, ...]:
        return (self.key, frozenset(self.globs.patterns))


@dataclass(frozen=True, slots=True)
class RegionsCondition(Condition):
    key: ClassVar[str] = "regions"
    regions: frozenset[str]

    def matches(self, call: Call, agent_name: str | None) -> bool:
        return call.deployment_region in self.regions

    def _listed(self) -> str:
        return _plain(tuple(r for r in REGIONS if r in self.regions))

    def describe(self) -> str:
        return f"the region is {self._listed()}"

    def mismatch(self, call: Call, agent_name: str | None) -> str:
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

    def matches(self, call: Call, agent_name: str | None) -> bool:
        return call.status in self.statuses

    def _listed(self) -> str:
        return _plain(tuple(s for s in TERMINAL_ORDER if s in self.statuses))

    def describe(self) -> str:
        return f"the status is {self._listed()}"

    def mismatch(self, call: Call, agent_name: str | None) -> str:
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

    def matches_value(self, value: MetadataValue) -> bool:
        text = text_form(value)
        return text is not None and self.globs(text)

    def matches(self, call: Call, agent_name: str | None) -> bool:
        metadata = call.metadata
        return metadata is not None and self.matches_value(metadata.get(self.name))

    def describe(self) -> str:
        return f"metadata `{self.name}` is {_quoted(self.globs.patterns)}"

    def mismatch(self, call: Call, agent_name: str | None) -> str:
        # Never the call's value: metadata values are personal data.
        if call.metadata is None or call.metadata.get(self.name) is None:
            return f"metadata key `{self.name}` is absent"
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
        if value in REGIONS:
            regions.add(value)
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
        if name in seen:  # two values for one key would silently match nothing
            where.add(
                key_node,
                "match.metadata",
                f"duplicate key `{name}` (also on line {seen[name]}); list the values instead",
            )
            continue
        seen[name] = key_node.start_mark.line + 1
        items = scalar_items(value_node, where, f"match.metadata.{name}", "a value (a glob)")
        if items is not None:
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
