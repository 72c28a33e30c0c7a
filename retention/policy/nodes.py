"""Reading YAML nodes (not Python objects) so that every value keeps its line number."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from yaml import MappingNode, Node, ScalarNode, SequenceNode

from retention.policy.canonical import YAML11_BOOLEANS, canonical_text
from retention.policy.problems import Problems, ValueMark
from retention.policy.values import ValueFile, ValueFileError, read_values, resolve

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
_DECIMAL: Final = re.compile(r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")
_LEADING_ZERO: Final = re.compile(r"[-+]?0[0-9]+")  # octal in YAML 1.1
GLOB_CHARS: Final = frozenset("*?[")


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


def yaml11_problem(node: Node) -> str | None:
    """Why a plain (unquoted) word must not be read as text here, or None.

    YAML 1.1 tools read `yes`, `no`, `on`, `off`, `y`, `n` (any case) as booleans,
    so the same file would mean a boolean to one reader and text to another.
    """
    if not isinstance(node, ScalarNode) or node.style or not isinstance(node.value, str):
        return None
    word = node.value
    if word.lower() not in YAML11_BOOLEANS:
        return None
    boolean = "true" if word.lower() in ("yes", "on", "y") else "false"
    return (
        f"`{word}` unquoted is a boolean in YAML 1.1 but text in YAML 1.2; write "
        f'`{boolean}` for the boolean, or `"{word}"` in quotes for the word'
    )


def metadata_problem(node: ScalarNode) -> str | None:
    """Why a metadata value in a policy is ambiguous, or None (see `metadata_text`)."""
    refused = yaml11_problem(node)
    if refused is not None:
        return refused
    if node.style or node.tag not in (INT_TAG, FLOAT_TAG):
        return None
    value: str = node.value
    if not _DECIMAL.fullmatch(value) or _LEADING_ZERO.fullmatch(value):
        return (
            f"`{value}` unquoted is a number in YAML 1.1 notation that is not a plain decimal; "
            f'write the number in decimal, or `"{value}"` in quotes for the text'
        )
    return None


def metadata_text(node: ScalarNode) -> str:
    """The canonical text a metadata value in a policy stands for (`canonical_text`),
    quoted or not: `true`, `True` and `"TRUE"` are `true`; `1`, `1.0` and `"1"` are
    `1`. A value with glob characters (`*`, `?`, `[`) is a pattern, taken as written.
    Check `metadata_problem` first."""
    value = str(node.value)
    if not GLOB_CHARS.isdisjoint(value):
        return value
    return canonical_text(value)


@dataclass(frozen=True, slots=True)
class Where:
    """The policy being read and the collector its problems go to."""

    problems: Problems
    policy: str

    def add(self, at: Node, field: str, message: str) -> None:
        self.problems.add(at, message, policy=self.policy, field=field)


class Items(list[ScalarNode]):
    """The values of a condition; `source` is the value file they were read from, if any."""

    source: ValueFile | None = None


def scalar_items(node: Node, where: Where, field: str, what: str) -> Items | None:
    """A scalar, a non-empty list of scalars (a string stands for a one-item list), or
    `{file: PATH}`: the values of a value file (see `retention.policy.values`)."""
    if isinstance(node, MappingNode) and _is_file_mapping(node):
        return _file_items(node, where, field)
    if isinstance(node, ScalarNode) and not is_null(node):
        problem = yaml11_problem(node)
        if problem is not None:
            where.add(node, field, problem)
            return None
        return Items([node])
    if is_null(node):
        where.add(node, field, f"is empty; give {what} or a list of them")
        return None
    if isinstance(node, MappingNode):
        where.add(
            node,
            field,
            f"expected {what}, a list of them or {{file: PATH}} (one per line), got a mapping",
        )
        return None
    assert isinstance(node, SequenceNode)
    if not node.value:
        where.add(node, field, "is an empty list, which matches no call; remove it to match all")
        return None
    items = Items()
    ok = True
    for i, item in enumerate(node.value):
        problem = yaml11_problem(item)
        if problem is not None:
            where.add(item, f"{field}[{i}]" if len(node.value) > 1 else field, problem)
            ok = False
        elif isinstance(item, ScalarNode) and not is_null(item):
            items.append(item)
        else:
            where.add(item, f"{field}[{i}]", f"expected {what}, got {kind(item)}")
            ok = False
    return items if ok else None


def _is_file_mapping(node: MappingNode) -> bool:
    keys = [k.value for k, _ in node.value if isinstance(k, ScalarNode)]
    return "file" in keys


def _file_items(node: MappingNode, where: Where, field: str) -> Items | None:
    """`{file: PATH}`: one text value per line of the file, each with its own line."""
    if len(node.value) != 1:
        where.add(node, field, "a value file is written `{file: PATH}`, with no other key")
        return None
    value = node.value[0][1]
    if not is_text(value) or not str(value.value).strip():
        where.add(value, f"{field}.file", f"expected the path of a value file, got {kind(value)}")
        return None
    path = resolve(str(value.value), where.problems.file)
    try:
        source, lines = read_values(path)
    except ValueFileError as err:
        if err.line is None:  # the place is the policy's `file:` line
            where.add(value, f"{field}.file", f"value file {path}: {err.message}")
        else:  # the place is the value file's own line
            mark = ValueMark(str(path), err.line - 1)
            where.problems.add(mark, err.message, policy=where.policy, field=f"{field}.file")
        return None
    where.problems.value_files.append(source)
    items = Items(FileValue(value, source.path, line) for value, line in lines)
    items.source = source
    return items


class FileValue(ScalarNode):
    """A value read from a value file: text, as if quoted, whose place (a `ValueMark`) is
    made only when a problem is reported, so that 100k values load quickly."""

    def __init__(self, value: str, file: str, line: int) -> None:
        self.tag = STR_TAG
        self.value = value
        self.style = '"'
        self.end_mark = None
        self._file = file
        self._line = line

    @property
    def start_mark(self) -> ValueMark:  # type: ignore[override]
        return ValueMark(self._file, self._line - 1)
