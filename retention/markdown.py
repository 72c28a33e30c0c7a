"""Markdown tables for the reports (`--report *.md`, the audit evidence): one escaping."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

NONE_CELL = "—"  # how a value the report does not have is shown


def cell(value: object) -> str:
    """Any value as the text of one table cell: every line break becomes a space (a row
    is one line) and every pipe is escaped (a pipe ends a cell); None is a dash."""
    if value is None:
        return NONE_CELL
    return " ".join(str(value).splitlines()).replace("|", "\\|")


def table(header: Sequence[object], rows: Iterable[Sequence[object]]) -> list[str]:
    """A GitHub-flavoured Markdown table, one line per row."""
    lines = [_row(header), "|" + "---|" * len(header)]
    lines.extend(_row(row) for row in rows)
    return lines


def _row(values: Sequence[object]) -> str:
    return "| " + " | ".join(cell(value) for value in values) + " |"
