"""Policy files to a compiled PolicySet, with every mistake reported at once.

YAML is composed into nodes (never constructed into objects), so each value keeps
its line; aliases are refused, which also rules out alias bombs. A directory
contributes its own `*.yaml`/`*.yml` files, sorted by name; subdirectories (such
as `policies/sweeps/`) and hidden files are not read.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Final

import yaml
from yaml import MappingNode, Node, ScalarNode, SequenceNode
from yaml.events import AliasEvent

from retention.policy.durations import Invalid, parse_duration
from retention.policy.match import MATCH_KEYS, Condition
from retention.policy.model import Kind, Policy, PolicySet, PolicySource
from retention.policy.nodes import Where, is_null, is_text, kind
from retention.policy.problems import PolicyError, Problem, Problems, policy_label, suggest

__all__ = ["PolicyError", "PolicySet", "PolicySource", "load_policies", "parse_policies"]

MAX_FILE_BYTES: Final = 1 << 20
SUFFIXES: Final = (".yaml", ".yml")
TOP_KEYS: Final = ("policies",)
POLICY_KEYS: Final = ("name", "description", "delete_after", "retain_for", "match")
_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}")


class _AliasRefused(Exception):
    """An alias (*name) in a policy file, at a 0-based line."""

    def __init__(self, line: int) -> None:
        self.line = line


class _NoAliasLoader(yaml.SafeLoader):
    """The pure-Python safe composer, refusing aliases (used without libyaml)."""

    def compose_node(self, parent: Node | None, index: object) -> Node | None:
        if self.check_event(AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise _AliasRefused(event.start_mark.line)
        return super().compose_node(parent, index)  # type: ignore[arg-type]


def _compose_nodes(text: str) -> Node | None:
    """YAML text to nodes with line marks; aliases refused, which rules out alias bombs."""
    if not yaml.__with_libyaml__:
        return yaml.compose(text, Loader=_NoAliasLoader)
    # libyaml is ~10x faster and caps nesting depth itself; aliases are caught in a first pass.
    for event in yaml.parse(text, Loader=yaml.CSafeLoader):
        if isinstance(event, AliasEvent):
            raise _AliasRefused(event.start_mark.line if event.start_mark else 0)
    return yaml.compose(text, Loader=yaml.CSafeLoader)


def load_policies(paths: Sequence[Path]) -> PolicySet:
    """Load files and directories (their *.yaml/*.yml, sorted, not recursive)."""
    problems: list[Problem] = []
    files: list[Path] = []
    if not paths:
        problems.append(Problem("--policies", None, "no policy files given"))
    for path in paths:
        if path.is_dir():
            found = sorted(
                p
                for p in path.iterdir()
                if p.suffix in SUFFIXES and p.is_file() and not p.name.startswith(".")
            )
            if not found:
                problems.append(
                    Problem(
                        str(path),
                        None,
                        "no *.yaml or *.yml files in this directory (subdirectories are not read)",
                    )
                )
            files.extend(found)
        elif path.is_file():
            files.append(path)
        elif path.exists():
            problems.append(Problem(str(path), None, "not a regular file or directory"))
        else:
            problems.append(Problem(str(path), None, "no such file or directory"))
    documents: list[tuple[str, str]] = []
    sources: list[PolicySource] = []
    seen: set[Path] = set()
    for path in files:
        if path.resolve() in seen:
            continue  # the same file named twice (e.g. a directory and one of its files)
        seen.add(path.resolve())
        text = _read(path, problems)
        if text is not None:
            documents.append((str(path), text[0]))
            sources.append(PolicySource(str(path), text[1]))
    if problems and not documents:
        raise PolicyError(problems)
    try:
        policy_set = parse_policies(documents, sources)
    except PolicyError as err:
        raise PolicyError([*problems, *err.problems]) from None
    if problems:
        raise PolicyError(problems)
    return policy_set


def _read(path: Path, problems: list[Problem]) -> tuple[str, str] | None:
    """(text, sha256 hex) of a file, or None after reporting why it cannot be read."""
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as err:
        problems.append(Problem(str(path), None, f"cannot read: {err.strerror or err}"))
        return None
    if len(data) > MAX_FILE_BYTES:
        problems.append(Problem(str(path), None, "larger than 1 MiB; is it a policy file?"))
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        problems.append(Problem(str(path), line, "not UTF-8 text"))
        return None
    return text, hashlib.sha256(data).hexdigest()


def parse_policies(
    documents: Sequence[tuple[str, str]], sources: Sequence[PolicySource] = ()
) -> PolicySet:
    """Compile (file name, YAML text) pairs; raise PolicyError listing every problem."""
    policies: list[Policy] = []
    found: list[Problem] = []
    for name, text in documents:
        problems = Problems(name)
        policies.extend(_parse_file(text, problems))
        found.extend(sorted(problems.found, key=lambda p: p.line or 0))
    first: dict[str, Policy] = {}
    for policy in policies:
        other = first.setdefault(policy.name, policy)
        if other is not policy:
            found.append(
                Problem(
                    policy.file,
                    policy.line,
                    f"duplicate name, also defined at {other.where}",
                    f"'{policy.name}'",
                    "name",
                )
            )
    if not found and not policies:
        found.append(
            Problem(documents[0][0] if documents else "--policies", None, "no policies loaded")
        )
    if found:
        raise PolicyError(found)
    return PolicySet(tuple(policies), tuple(sources))


def _parse_file(text: str, problems: Problems) -> list[Policy]:
    root = _compose(text, problems)
    if root is None:
        return []
    entries = _mapping(root, problems, None, None, TOP_KEYS)
    if entries is None:
        return []
    if "policies" not in entries:
        problems.add(root, "missing `policies:` (a list of policies)")
        return []
    node = entries["policies"][1]
    if is_null(node) or (isinstance(node, SequenceNode) and not node.value):
        problems.add(node, "the file defines no policies", field="policies")
        return []
    if not isinstance(node, SequenceNode):
        problems.add(
            node, f"expected a list of policies (`- name: ...`), got {kind(node)}", field="policies"
        )
        return []
    policies = []
    for index, item in enumerate(node.value):
        policy = _parse_policy(item, index, problems)
        if policy is not None:
            policies.append(policy)
    return policies


def _compose(text: str, problems: Problems) -> Node | None:
    try:
        root = _compose_nodes(text)
    except _AliasRefused as err:
        problems.found.append(
            Problem(problems.file, err.line + 1, "YAML aliases (*name) are not supported here")
        )
        return None
    except yaml.MarkedYAMLError as err:
        detail = f"{err.context}, {err.problem}" if err.context else str(err.problem)
        problems.add(err.problem_mark, f"YAML syntax error: {detail}")
        return None
    except yaml.reader.ReaderError as err:
        line = text.count("\n", 0, err.position) + 1
        problems.found.append(Problem(problems.file, line, f"YAML error: {err.reason}"))
        return None
    except yaml.YAMLError as err:
        problems.add(None, f"YAML error: {str(err).splitlines()[0]}")
        return None
    except RecursionError:
        problems.add(None, "YAML nested too deeply")
        return None
    if root is None:
        problems.add(None, "the file is empty; expected `policies:` and a list of policies")
    elif isinstance(root, SequenceNode):
        problems.add(root, "expected `policies:` at the top, got a list (forgot `policies:`?)")
        return None
    return root


def _mapping(
    node: Node,
    problems: Problems,
    policy: str | None,
    field: str | None,
    allowed: Sequence[str],
    misplaced: Sequence[str] = (),
    misplaced_hint: str = "",
) -> dict[str, tuple[ScalarNode, Node]] | None:
    """A mapping's entries by key, reporting wrong types, duplicate and unknown keys."""
    if not isinstance(node, MappingNode):
        problems.add(node, f"expected a mapping, got {kind(node)}", policy=policy, field=field)
        return None
    entries: dict[str, tuple[ScalarNode, Node]] = {}
    for key_node, value_node in node.value:
        if not isinstance(key_node, ScalarNode) or is_null(key_node):
            problems.add(
                key_node, f"a key must be text, got {kind(key_node)}", policy=policy, field=field
            )
            continue
        key = str(key_node.value)
        if key in entries:
            earlier = entries[key][0].start_mark.line + 1
            problems.add(
                key_node,
                f"duplicate key `{key}` (also on line {earlier})",
                policy=policy,
                field=field,
            )
        elif key not in allowed:
            hint = misplaced_hint if key in misplaced else suggest(key, allowed)
            problems.add(key_node, f"unknown key `{key}`{hint}", policy=policy, field=field)
        else:
            entries[key] = (key_node, value_node)
    return entries


def _parse_policy(node: Node, index: int, problems: Problems) -> Policy | None:
    before = len(problems.found)
    label = f"#{index + 1}"
    if not isinstance(node, MappingNode):
        problems.add(
            node, f"expected a policy (a mapping with `name:`), got {kind(node)}", policy=label
        )
        return None
    name_entry = next(
        (v for k, v in node.value if isinstance(k, ScalarNode) and k.value == "name"), None
    )
    name: str | None = None
    if name_entry is None:
        problems.add(node, "missing; every policy needs a unique name", policy=label, field="name")
    elif not is_text(name_entry):
        problems.add(
            name_entry,
            f"expected text, got {kind(name_entry)} (quote it)",
            policy=label,
            field="name",
        )
    elif not _NAME.fullmatch(str(name_entry.value)):
        problems.add(
            name_entry,
            f"`{name_entry.value}` is not a usable name: use up to 100 "
            "letters, digits, `-`, `_` and `.`",
            policy=label,
            field="name",
        )
    else:
        name = str(name_entry.value)
        label = policy_label(name, index)
    entries = _mapping(
        node,
        problems,
        label,
        None,
        POLICY_KEYS,
        tuple(MATCH_KEYS),
        ": conditions go under `match:`",
    )
    if entries is None:
        return None
    where = Where(problems, label)
    description = None
    if "description" in entries:
        value = entries["description"][1]
        if isinstance(value, ScalarNode):
            description = None if is_null(value) else str(value.value)
        else:
            where.add(value, "description", f"expected text, got {kind(value)}")
    rule = _rule(node, entries, where)
    conditions = _conditions(entries, where, problems, label)
    if len(problems.found) > before or name is None or rule is None or conditions is None:
        return None
    rule_kind, duration, text = rule
    return Policy(
        name,
        rule_kind,
        duration,
        text,
        conditions,
        description,
        problems.file,
        node.start_mark.line + 1,
    )


def _rule(
    node: MappingNode, entries: dict[str, tuple[ScalarNode, Node]], where: Where
) -> tuple[Kind, timedelta | None, str] | None:
    has_delete, has_retain = "delete_after" in entries, "retain_for" in entries
    if has_delete and has_retain:
        where.add(
            entries["retain_for"][0],
            "retain_for",
            "a policy has either delete_after (a "
            "deletion rule) or retain_for (a retention rule), not both",
        )
        return None
    if not has_delete and not has_retain:
        if _misspelt_rule(node):
            return None  # the unknown-key message already suggests the right key
        where.add(
            node,
            "delete_after",
            "missing: give delete_after (a deletion rule) or retain_for (a retention rule)",
        )
        return None
    rule_kind = Kind.DELETE if has_delete else Kind.RETAIN
    value = entries[rule_kind.value][1]
    duration = parse_duration(
        value,
        where,
        rule_kind.value,
        forever_ok=rule_kind == Kind.RETAIN,
        zero_ok=rule_kind == Kind.DELETE,
    )
    if isinstance(duration, Invalid):
        return None
    return rule_kind, duration, str(value.value).strip()


def _misspelt_rule(node: MappingNode) -> bool:
    """Whether an unknown key of the policy is a near miss of delete_after or retain_for."""
    keys = [str(k.value) for k, _ in node.value if isinstance(k, ScalarNode)]
    rules = ("delete_after", "retain_for")
    return any(k not in POLICY_KEYS and difflib.get_close_matches(k, rules, n=1) for k in keys)


def _conditions(
    entries: dict[str, tuple[ScalarNode, Node]], where: Where, problems: Problems, label: str
) -> tuple[Condition, ...] | None:
    if "match" not in entries:
        return ()
    node = entries["match"][1]
    if is_null(node):
        # `match:` with nothing after it is more often a slip than a wish to match everything.
        where.add(node, "match", "is empty (null); write `match: {}` to match every call")
        return None
    match = _mapping(
        node,
        problems,
        label,
        "match",
        tuple(MATCH_KEYS),
        POLICY_KEYS,
        ": it belongs to the policy, not under `match:`",
    )
    if match is None:
        return None
    conditions: list[Condition] = []
    for key in MATCH_KEYS:
        if key in match:
            conditions.extend(MATCH_KEYS[key](match[key][1], where))
    return tuple(conditions)
