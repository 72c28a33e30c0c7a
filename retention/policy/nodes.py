"""Reading YAML nodes (not Python objects) so that every value keeps its line number."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from yaml import MappingNode, Node, ScalarNode, SequenceNode

from retention.policy.problems import Problems

_TAG = "tag:yaml.org,2002:"
STR_TAG: Final = _TAG + "str"
NULL_TAG: Final = _TAG + "null"
BOOL_TAG: Final = _TAG + "bool"
INT_TAG: Final = _TAG + "int"
FLOAT_TAG: Final = _TAG + "float"
_KIND_WORDS: Final = {
    STR_TAG: "text",
    NULL_TAG: "nothing (null)",
    BOOL_TAG: "a boolean",
    INT_TAG: "a number",
    FLOAT_TAG: "a number",
}
_DECIMAL_INT: Final = re.compile(r"[-+]?(?:0|[1-9][0-9]*)")
_DECIMAL_FLOAT: Final = re.compile(r"[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")


def kind(node: Node) -> str:
    """A node's type in words, for 'expected X, got Y' messages."""
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    return _KIND_WORDS.get(node.tag, "a scalar")


def is_null(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.tag == NULL_TAG


def is_text(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.tag == STR_TAG


def metadata_text(node: ScalarNode) -> str:
    """The text a metadata value in a policy stands for, so it compares with the API's JSON.

    Quoted values are taken as written. Plain YAML booleans `true`/`false` (any case)
    become lowercase; decimal integers lose signs and zeros that do not change the
    number (`+7` -> `7`); decimal floats take Python's repr (`7.50` -> `7.5`).
    Everything else (`yes`, `0x1F`, dates) is the text as written.
    """
    value: str = node.value
    if node.style in ("'", '"', "|", ">") or node.tag == STR_TAG:
        return value
    if node.tag == BOOL_TAG and value.lower() in ("true", "false"):
        return value.lower()
    if node.tag == INT_TAG and len(value) < 100 and _DECIMAL_INT.fullmatch(value):
        return str(int(value))
    if node.tag == FLOAT_TAG and len(value) < 100 and _DECIMAL_FLOAT.fullmatch(value):
        return repr(float(value))
    return value


@dataclass(frozen=True, slots=True)
class Where:
    """The policy being read and the collector its problems go to."""

    problems: Problems
    policy: str

    def add(self, at: Node, field: str, message: str) -> None:
        self.problems.add(at, message, policy=self.policy, field=field)


def scalar_items(node: Node, where: Where, field: str, what: str) -> list[ScalarNode] | None:
    """A scalar or a non-empty list of scalars (a string stands for a one-item list)."""
    if isinstance(node, ScalarNode) and not is_null(node):
        return [node]
    if is_null(node):
        where.add(node, field, f"is empty; give {what} or a list of them")
        return None
    if isinstance(node, MappingNode):
        where.add(node, field, f"expected {what} or a list of them, got a mapping")
        return None
    assert isinstance(node, SequenceNode)
    if not node.value:
        where.add(node, field, "is an empty list, which matches no call; remove it to match all")
        return None
    items: list[ScalarNode] = []
    ok = True
    for i, item in enumerate(node.value):
        if isinstance(item, ScalarNode) and not is_null(item):
            items.append(item)
        else:
            where.add(item, f"{field}[{i}]", f"expected {what}, got {kind(item)}")
            ok = False
    return items if ok else None
