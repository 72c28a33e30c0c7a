"""Policy files to a compiled PolicySet, with every mistake reported at once.

YAML is composed into nodes (never constructed into objects), so each value keeps
its line; aliases are refused, which also rules out alias bombs.

A directory contributes every entry named `*.yaml`/`*.yml` in any letter case,
sorted by name: each is loaded or is a problem (a broken symlink, an unreadable
file, a directory or a FIFO with such a name), never skipped in silence. Hidden
entries are not read; any other entry (`notes.txt`, `policies/sweeps/`) is not
read either, and is named in a warning.
"""

from __future__ import annotations

import difflib
import errno
import hashlib
import os
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Final

import yaml
from yaml import MappingNode, Node, ScalarNode, SequenceNode
from yaml.events import AliasEvent

from retention.log import get_logger
from retention.policy.durations import Invalid, parse_duration
from retention.policy.match import MATCH_KEYS, AgentsCondition, Condition
from retention.policy.model import Kind, Policy, PolicySet, PolicySource
from retention.policy.nodes import Where, is_null, is_text, kind, yaml11_problem
from retention.policy.problems import PolicyError, Problem, Problems, policy_label, suggest

__all__ = [
    "PolicyError",
    "PolicySet",
    "PolicySource",
    "ignored_message",
    "is_policy_name",
    "load_policies",
    "parse_policies",
]

MAX_FILE_BYTES: Final = 1 << 20
SUFFIXES: Final = (".yaml", ".yml")
TOP_KEYS: Final = ("policies",)
POLICY_KEYS: Final = (
    "name",
    "description",
    "delete_after",
    "retain_for",
    "match",
    "legal_basis",
    "category",
    "request_id",
    "case",
)
ANNOTATIONS: Final = ("legal_basis", "category", "request_id", "case")
_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}")
_OPEN_FLAGS: Final = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY  # a FIFO never blocks
_log = get_logger("retention.policy")


def is_policy_name(name: str) -> bool:
    """Whether a directory entry is a policy file: `*.yaml`/`*.yml` in any case, not hidden."""
    return not name.startswith(".") and name.lower().endswith(SUFFIXES)


def ignored_message(path: Path) -> str:
    """Why an entry of a policies directory was not read, for its warning."""
    what = "a subdirectory" if path.is_dir() and not path.is_symlink() else "not *.yaml or *.yml"
    return f"{path}: not read ({what}); only a directory's own *.yaml and *.yml files are"


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


def load_policies(paths: Sequence[Path], ignored: list[Path] | None = None) -> PolicySet:
    """Load files and directories (see the module docstring); raise PolicyError listing
    every problem. Entries of a directory that are not read are appended to `ignored`
    when given (the caller shows them), else each is logged as a warning."""
    problems: list[Problem] = []
    files: list[Path] = []
    skipped: list[Path] = []
    if not paths:
        problems.append(Problem("--policies", None, "no policy files given"))
    for path in paths:
        if path.is_dir():
            files.extend(_scan(path, problems, skipped))
        else:
            files.append(path)  # whatever it is: `_read` says why it cannot be read
    documents: list[tuple[str, str]] = []
    sources: list[PolicySource] = []
    seen: set[tuple[int, int]] = set()
    for path in files:
        read = _read(path, problems)
        if read is None:
            continue
        text, digest, identity = read
        if identity in seen:
            continue  # the same file named twice (e.g. a directory and one of its files)
        seen.add(identity)
        documents.append((str(path), text))
        sources.append(PolicySource(str(path), digest))
    if ignored is not None:
        ignored.extend(skipped)  # the caller shows them, whether the set loads or not
    policy_set = _compile(problems, documents, sources)
    if ignored is None:
        # Logged once the set loads: a set that does not load is an error anyway (and a
        # directory without policy files names what it holds in its problem).
        for path in skipped:
            _log.warning("policy.ignored_entry", path=str(path), hint=ignored_message(path))
    return policy_set


def _compile(
    problems: list[Problem], documents: list[tuple[str, str]], sources: list[PolicySource]
) -> PolicySet:
    """The set, or PolicyError with the loading problems and the parsing ones together."""
    if problems and not documents:
        raise PolicyError(problems)
    try:
        policy_set = parse_policies(documents, sources)
    except PolicyError as err:
        raise PolicyError([*problems, *err.problems]) from None
    if problems:
        raise PolicyError(problems)
    return policy_set


def _scan(directory: Path, problems: list[Problem], ignored: list[Path]) -> list[Path]:
    """A directory's policy files, sorted by name; other non-hidden entries to `ignored`."""
    try:
        names = sorted(entry.name for entry in os.scandir(directory))
    except OSError as err:
        problems.append(Problem(str(directory), None, f"cannot list: {err.strerror or err}"))
        return []
    found = [directory / name for name in names if is_policy_name(name)]
    ignored.extend(directory / n for n in names if not n.startswith(".") and not is_policy_name(n))
    if not found:
        others = [n for n in names if not n.startswith(".")]
        shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
        problems.append(
            Problem(
                str(directory),
                None,
                "no *.yaml or *.yml files in this directory (subdirectories are not read)"
                + (f"; it holds {shown}" if others else ""),
            )
        )
    return found


def _read(path: Path, problems: list[Problem]) -> tuple[str, str, tuple[int, int]] | None:
    """(text, sha256 hex, (device, inode)) of a file, or None after reporting why it
    cannot be read. Only a file actually read is ever taken for another one."""
    where = str(path)
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except FileNotFoundError:
        if path.is_symlink():
            problems.append(Problem(where, None, "a broken symlink (its target does not exist)"))
        else:
            problems.append(Problem(where, None, "no such file or directory"))
        return None
    except OSError as err:
        if err.errno == errno.ELOOP:
            problems.append(Problem(where, None, "a symlink loop"))
        else:
            problems.append(Problem(where, None, f"cannot read: {err.strerror or err}"))
        return None
    try:
        status = os.fstat(fd)
        mode = status.st_mode
        if stat.S_ISDIR(mode):
            problems.append(
                Problem(
                    where,
                    None,
                    "a directory named like a policy file; directories inside a policies "
                    "directory are not read: rename it or give it to --policies itself",
                )
            )
            return None
        if not stat.S_ISREG(mode):
            problems.append(Problem(where, None, "not a regular file (a FIFO, socket or device?)"))
            return None
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as err:
        problems.append(Problem(where, None, f"cannot read: {err.strerror or err}"))
        return None
    finally:
        os.close(fd)
    if len(data) > MAX_FILE_BYTES:
        problems.append(Problem(where, None, "larger than 1 MiB; is it a policy file?"))
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        problems.append(Problem(where, line, "not UTF-8 text"))
        return None
    return text, hashlib.sha256(data).hexdigest(), (status.st_dev, status.st_ino)


@dataclass(frozen=True, slots=True)
class _Entry:
    """One item of a `policies:` list: its name when usable, even if the rest is wrong,
    so that duplicate names are reported alongside every other problem."""

    name: str | None
    file: str
    line: int
    policy: Policy | None


def parse_policies(
    documents: Sequence[tuple[str, str]], sources: Sequence[PolicySource] = ()
) -> PolicySet:
    """Compile (file name, YAML text) pairs; raise PolicyError listing every problem."""
    entries: list[_Entry] = []
    found: list[Problem] = []
    all_sources = list(sources)
    for name, text in documents:
        problems = Problems(name)
        entries.extend(_parse_file(text, problems))
        found.extend(sorted(problems.found, key=lambda p: (p.file != name, p.file, p.line or 0)))
        for value_file in problems.value_files:  # recorded once, as the policy files are
            source = PolicySource(value_file.path, value_file.sha256, value_file.count)
            if source not in all_sources:
                all_sources.append(source)
    first: dict[str, _Entry] = {}
    for entry in entries:
        if entry.name is None:
            continue
        other = first.setdefault(entry.name, entry)
        if other is not entry:
            found.append(
                Problem(
                    entry.file,
                    entry.line,
                    f"duplicate name, also defined at {other.file}:{other.line}",
                    f"'{entry.name}'",
                    "name",
                )
            )
    policies = [e.policy for e in entries if e.policy is not None]
    if not found and not policies:
        found.append(
            Problem(documents[0][0] if documents else "--policies", None, "no policies loaded")
        )
    if found:
        raise PolicyError(found)
    return PolicySet(tuple(policies), tuple(all_sources))


def _parse_file(text: str, problems: Problems) -> list[_Entry]:
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
    return [_parse_policy(item, index, problems) for index, item in enumerate(node.value)]


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


def _parse_policy(node: Node, index: int, problems: Problems) -> _Entry:
    before = len(problems.found)
    label = f"#{index + 1}"
    line = node.start_mark.line + 1
    if not isinstance(node, MappingNode):
        problems.add(
            node, f"expected a policy (a mapping with `name:`), got {kind(node)}", policy=label
        )
        return _Entry(None, problems.file, line, None)
    name_entry = next(
        (v for k, v in node.value if isinstance(k, ScalarNode) and k.value == "name"), None
    )
    name: str | None = None
    if name_entry is None:
        problems.add(node, "missing; every policy needs a unique name", policy=label, field="name")
    elif (refused := yaml11_problem(name_entry)) is not None:
        problems.add(name_entry, refused, policy=label, field="name")
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
        return _Entry(name, problems.file, line, None)
    where = Where(problems, label)
    description = None
    if "description" in entries:
        value = entries["description"][1]
        if not isinstance(value, ScalarNode):
            where.add(value, "description", f"expected text, got {kind(value)}")
        elif (refused := yaml11_problem(value)) is not None:
            where.add(value, "description", refused)
        else:
            description = None if is_null(value) else str(value.value)
    annotations = _annotations(entries, where)
    rule = _rule(node, entries, where)
    conditions = _conditions(entries, where, problems, label)
    if len(problems.found) > before or name is None or rule is None or conditions is None:
        return _Entry(name, problems.file, line, None)
    rule_kind, duration, text = rule
    if rule_kind == Kind.DELETE:  # a deletion needs every name of the agent to match
        conditions = tuple(
            replace(c, every=True) if isinstance(c, AgentsCondition) else c for c in conditions
        )
    if rule_kind == Kind.DELETE and "case" in annotations:
        where.add(entries["case"][0], "case", "names a hold's case: it belongs to a retention rule")
        return _Entry(name, problems.file, line, None)
    if rule_kind == Kind.RETAIN and "request_id" in annotations:
        where.add(
            entries["request_id"][0],
            "request_id",
            "names a sweep's request: it belongs to a deletion rule",
        )
        return _Entry(name, problems.file, line, None)
    policy = Policy(
        name,
        rule_kind,
        duration,
        text,
        conditions,
        description,
        problems.file,
        line,
        **annotations,
    )
    return _Entry(name, problems.file, line, policy)


def _annotations(entries: dict[str, tuple[ScalarNode, Node]], where: Where) -> dict[str, str]:
    """The free-text annotations that are set (empty text is as good as absent)."""
    found: dict[str, str] = {}
    for key in ANNOTATIONS:
        if key not in entries:
            continue
        value = entries[key][1]
        if not isinstance(value, ScalarNode) or is_null(value):
            where.add(value, key, f"expected text, got {kind(value)}")
        elif (refused := yaml11_problem(value)) is not None:
            where.add(value, key, refused)
        elif str(value.value).strip():
            found[key] = " ".join(str(value.value).split())
    return found


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
