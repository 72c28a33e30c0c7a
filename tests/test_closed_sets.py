"""The closed sets (audit events, outcomes, reasons, run modes) are spelled once, in
their enum's home, and everything that counts or shows them follows the enum."""

from __future__ import annotations

import ast
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import retention
from retention.audit.events import EVENT_KEYS, LOGGED_OUTCOMES, Event, Outcome, RunMode
from retention.policy.decision import (
    DELETE_REASONS,
    KEEP_REASONS,
    SKIP_REASONS,
    ListingSkip,
    Reason,
)
from retention.run.context import RunContext
from retention.run.metrics import build_registry
from retention.run.report import render_markdown, summarise
from retention.run.stats import RunStats

PACKAGE = Path(retention.__file__).parent
HOMES = {PACKAGE / "audit" / "events.py", PACKAGE / "policy" / "decision.py"}
SPELLINGS = {str(m) for enum in (Event, Outcome, RunMode, ListingSkip) for m in enum}
# The same words meaning something else: a call's status, the kinds of a problem, a
# crash point, the rows of `explain`; each a different closed set of its own module.
ELSEWHERE = {
    ("api/models.py", "failed"),  # a call's status
    ("policy/match.py", "failed"),  # a call's status
    ("policy/rows.py", "not_found"),  # an explain row: no call with this id
    ("run/explain.py", "not_found"),
    ("audit/proof.py", "not_found"),  # a mismatch kind: the API has no such call
    ("audit/proof.py", "unreadable"),  # a mismatch kind: the API's answer was unusable
    ("audit/erasure_check.py", "not_found"),
    ("audit/erasure_check.py", "unreadable"),
    ("audit/evidence.py", "dry run"),  # a column: was the run a dry run, yes or no
    ("cli.py", "execute"),  # the --execute flag
    ("audit/verify.py", "checkpoint"),  # a problem kind
    ("audit/rotation.py", "checkpoint"),  # a crash point of the rotation
}


def _spelled(path: Path) -> list[tuple[int, str]]:
    """String constants that spell a member, other than a document's field names (dict
    keys, subscripts and `.get` arguments: the JSON shapes of reports and lines)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    keys = {id(k) for node in ast.walk(tree) if isinstance(node, ast.Dict) for k in node.keys}
    keys |= {id(node.slice) for node in ast.walk(tree) if isinstance(node, ast.Subscript)}
    keys |= {
        id(node.args[0])
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "get"
        and node.args
    }
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and node.value in SPELLINGS
        and id(node) not in keys | docstrings
    ]


def test_no_module_outside_the_homes_spells_a_member() -> None:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path in HOMES or "sandbox" in path.parts:
            continue  # the sandbox is the API's stand-in, not the job
        where = str(path.relative_to(PACKAGE))
        found += [
            f"{where}:{line}: {value!r}"
            for line, value in _spelled(path)
            if (where, value) not in ELSEWHERE
        ]
    assert found == []


def test_the_reason_groups_partition_the_reasons() -> None:
    groups = Counter([*DELETE_REASONS, *KEEP_REASONS, *SKIP_REASONS])
    assert set(groups) == {*Reason, *ListingSkip}
    assert max(groups.values()) == 1


def test_every_event_has_its_keys_and_the_logged_outcomes_are_outcomes() -> None:
    assert set(EVENT_KEYS) == set(Event)
    assert {str(e) for e in LOGGED_OUTCOMES} <= {str(o) for o in Outcome}


def test_every_outcome_and_reason_is_exported_as_a_metric_even_at_zero() -> None:
    samples = {
        (metric.name, sample.labels.get("outcome") or sample.labels.get("reason"))
        for metric in build_registry(RunStats()).collect()
        for sample in metric.samples
    }
    assert {("retention_run_calls_acted", str(o)) for o in Outcome} <= samples
    skipped = {("retention_run_calls_skipped", str(r)) for r in SKIP_REASONS}
    kept = {("retention_run_calls_kept", str(r)) for r in KEEP_REASONS}
    assert skipped | kept <= samples


def test_every_outcome_reached_has_a_column_in_the_markdown_report() -> None:
    stats = RunStats(dry_run=False)
    for n, outcome in enumerate(Outcome, start=1):
        for _ in range(n):
            stats.record_selected("p", "agent", "eu", outcome)
    context = RunContext("r1", False, datetime(2025, 1, 1, tzinfo=UTC), None, ())
    text = render_markdown(summarise(stats, context))
    header = next(line for line in text.splitlines() if line.startswith("| policy |"))
    row = next(line for line in text.splitlines() if line.startswith("| p |"))
    cells = [c.strip() for c in header.strip("|").split("|")]
    counts = [c.strip() for c in row.strip("|").split("|")]
    assert cells == ["policy", "total", *(str(o) for o in Outcome)]
    reached = [str(n) for n in range(1, len(Outcome) + 1)]
    assert counts == ["p", str(sum(range(1, len(Outcome) + 1))), *reached]
