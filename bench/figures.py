"""What a benchmark produces (one figure: a ratio or a duration against its
target) and how figures are shown: a plain table on stdout, a Markdown table
in docs/BENCHMARKS.md."""

from __future__ import annotations

import os
import platform
import re
import statistics
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
    # Over repeated runs (`--repeat N`): `value` is the median, these its range.
    low: float | None = None
    high: float | None = None
    runs: int = 1

    def _format(self, value: float | None) -> str:
        if value is None:
            return "n/a"
        if self.unit == "s":
            return f"{value:.2f} s"
        return f"{value:.2f}x" if value >= 10 else f"{value:.3f}"

    @property
    def shown(self) -> str:
        return self._format(self.value)

    @property
    def spread(self) -> tuple[str, str]:
        """The (min, max) cells: "-" for a single run."""
        if self.runs < 2 or self.low is None or self.high is None:
            return "-", "-"
        return self._format(self.low), self._format(self.high)

    @property
    def verdict(self) -> str:
        return {True: "met", False: "MISSED", None: "-"}[self.met]


@dataclass(frozen=True)
class Spread:
    """A figure measured several times: median, min, max (robust to a busy neighbour)."""

    median: float
    low: float
    high: float
    runs: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        return cls(statistics.median(values), min(values), max(values), len(values))


def at_least(value: float, target: float) -> bool:
    return value >= target


def at_most(value: float, target: float) -> bool:
    return value <= target


HEADER = ("#", "benchmark", "figure (median)", "min", "max", "runs", "target", "verdict", "detail")


def _row(f: Figure) -> tuple[str, ...]:
    low, high = f.spread
    return (f.number, f.title, f.shown, low, high, str(f.runs), f.target, f.verdict, f.detail)


def text_table(figures: Sequence[Figure]) -> str:
    rows = [HEADER, *(_row(f) for f in figures)]
    last = len(HEADER) - 1
    widths = [max(len(row[i]) for row in rows) for i in range(last)]
    lines = []
    for n, row in enumerate(rows):
        cells = [cell.ljust(width) for cell, width in zip(row[:last], widths, strict=True)]
        lines.append("  ".join([*cells, row[last]]).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in [*widths, 6]))
    return "\n".join(lines)


def markdown_table(figures: Sequence[Figure]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(_row(f)) + " |" for f in figures]
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
