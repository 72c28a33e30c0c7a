"""What a benchmark produces (one figure: a ratio or a duration against its
target) and how figures are shown: a plain table on stdout, a Markdown table
in docs/BENCHMARKS.md."""

from __future__ import annotations

import os
import platform
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

RESULTS_START = "<!-- results:start -->"
RESULTS_END = "<!-- results:end -->"


@dataclass(frozen=True)
class Figure:
    number: str
    title: str
    value: float | None  # None when the benchmark could not run
    unit: str  # "x" for a ratio, "s" for seconds
    target: str  # e.g. ">= 0.95"
    met: bool | None
    detail: str  # the raw numbers behind the figure, and what limits it

    @property
    def shown(self) -> str:
        if self.value is None:
            return "n/a"
        if self.unit == "s":
            return f"{self.value:.2f} s"
        return f"{self.value:.2f}x" if self.value >= 10 else f"{self.value:.3f}"

    @property
    def verdict(self) -> str:
        return {True: "met", False: "MISSED", None: "-"}[self.met]


def at_least(value: float, target: float) -> bool:
    return value >= target


def at_most(value: float, target: float) -> bool:
    return value <= target


def text_table(figures: Sequence[Figure]) -> str:
    rows = [("#", "benchmark", "figure", "target", "verdict", "detail")]
    rows += [(f.number, f.title, f.shown, f.target, f.verdict, f.detail) for f in figures]
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = []
    for n, row in enumerate(rows):
        cells = [cell.ljust(width) for cell, width in zip(row[:5], widths, strict=True)]
        lines.append("  ".join([*cells, row[5]]).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in [*widths, 6]))
    return "\n".join(lines)


def markdown_table(figures: Sequence[Figure]) -> str:
    lines = [
        "| # | benchmark | figure | target | verdict | detail |",
        "|---|---|---|---|---|---|",
    ]
    for f in figures:
        lines.append(
            f"| {f.number} | {f.title} | {f.shown} | {f.target} | {f.verdict} | {f.detail} |"
        )
    return "\n".join(lines)


def machine() -> str:
    load = os.getloadavg()
    return (
        f"{os.cpu_count()} cores ({platform.machine()}, {platform.system()} "
        f"{platform.release()}), Python {platform.python_version()}, "
        f"load average before the run {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}"
    )


def results_section(figures: Sequence[Figure], command: str, machine_line: str) -> str:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return "\n".join(
        [
            RESULTS_START,
            f"Measured {when} on {machine_line}.",
            "",
            f"Command: `{command}`",
            "",
            markdown_table(figures),
            RESULTS_END,
        ]
    )


def write_results(doc: Path, section: str) -> None:
    """Replace the results block of the doc (or append one when it has none)."""
    text = doc.read_text() if doc.exists() else "# Benchmarks\n"
    pattern = re.compile(re.escape(RESULTS_START) + ".*?" + re.escape(RESULTS_END), re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text)
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    doc.write_text(text)


def command_line() -> str:
    return " ".join([".venv/bin/python", "-m", "bench", *sys.argv[1:]])
