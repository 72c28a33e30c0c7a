"""Self-contained HTML pages, rendered by Jinja2 from the templates in
retention/templates, with autoescaping on and `StrictUndefined`.

Python computes what a page shows (tables of cells, bars with their coordinates,
all plain strings and numbers); the templates only lay it out. Autoescaping is on
for every template, so a value from the API (an agent name such as
`<img src=x onerror=...>`) can only ever render as text, and no Python code builds
markup. A name a template uses but is not given is an error, not an empty string.

Charts are inline SVG drawn by a template macro: a horizontal bar chart is a few
rectangles and labels, needs no JavaScript, prints, and keeps the page free of any
URL to fetch; a chart library would bring JavaScript or a second renderer for that.
Every chart is drawn from the rows of the table printed under it, so every number
in a chart is also in a table.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

CHART_WIDTH: Final = 720
BAR_HEIGHT: Final = 22
LABEL_WIDTH: Final = 300
VALUE_WIDTH: Final = 80
LABEL_CHARS: Final = 40  # a longer label is cut in the chart; the table has it whole
# Dark fills, one per chart: readable in grey, with the count printed beside each bar.
INK: Final = {"due": "#9c2f23", "kept": "#1f5f8b", "neutral": "#3d4a57", "warn": "#8a5a00"}


@dataclass(frozen=True, slots=True)
class Code:
    """A cell shown in monospace (an id, a digest, a match): `<code>` in the page."""

    text: str


Cell = str | int | Code


@dataclass(frozen=True, slots=True)
class Column:
    title: str
    numeric: bool = False


@dataclass(frozen=True, slots=True)
class Table:
    """A table; `name` (data-table) lets tests find it. Numbers are right-aligned.
    With no row and no total, the page says "None." instead."""

    name: str
    columns: Sequence[Column]
    rows: Sequence[Sequence[Cell]]
    total: Sequence[Cell] | None = None
    row_classes: Sequence[str | None] = ()  # by row; a missing one is no class

    def __post_init__(self) -> None:
        for row in [*self.rows, *([self.total] if self.total is not None else [])]:
            if len(row) != len(self.columns):
                raise ValueError(f"table {self.name}: a row of {len(row)} cells")

    def row_class(self, index: int) -> str | None:
        return self.row_classes[index] if index < len(self.row_classes) else None


@dataclass(frozen=True, slots=True)
class Bar:
    label: str
    shown: str  # the label as the chart prints it (cut when long)
    value: int
    width: int
    label_y: int
    rect_y: int
    value_x: int


@dataclass(frozen=True, slots=True)
class Chart:
    """A horizontal bar chart, every coordinate computed here; the template draws it."""

    name: str
    title: str
    fill: str
    height: int
    bars: Sequence[Bar]
    width: int = CHART_WIDTH
    label_x: int = LABEL_WIDTH - 6
    bar_x: int = LABEL_WIDTH
    bar_height: int = BAR_HEIGHT - 6


def bar_chart(
    bars: Sequence[tuple[str, int]], *, name: str, title: str, ink: str = "neutral"
) -> Chart | None:
    """Horizontal bars, each with its label and count; no chart when all are zero."""
    if not bars or not any(value for _, value in bars):
        return None
    peak = max(value for _, value in bars)
    span = CHART_WIDTH - LABEL_WIDTH - VALUE_WIDTH
    drawn = []
    for i, (label, value) in enumerate(bars):
        y = 4 + i * BAR_HEIGHT
        width = max(1, round(span * value / peak)) if value else 0
        shown = label if len(label) <= LABEL_CHARS else label[: LABEL_CHARS - 1] + "…"
        drawn.append(Bar(label, shown, value, width, y + 15, y + 3, LABEL_WIDTH + width + 6))
    return Chart(name, title, INK[ink], BAR_HEIGHT * len(bars) + 8, tuple(drawn))


@dataclass(frozen=True, slots=True)
class Figure:
    """A chart (if any bar is not zero) and the table it is drawn from."""

    chart: Chart | None
    table: Table


def _is_code(value: object) -> bool:
    return isinstance(value, Code)


def environment() -> Environment:
    """Templates shipped in the package; autoescaping on for every one of them."""
    env = Environment(
        loader=PackageLoader("retention", "templates"),
        autoescape=select_autoescape(("html",), default_for_string=True, default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.tests["code"] = _is_code
    return env


ENV: Final = environment()


def render(template: str, **context: Any) -> str:
    """A whole page: no script, no link, no URL to fetch."""
    return ENV.get_template(template).render(**context)


def macros(template: str) -> Mapping[str, Callable[..., str]]:
    """The macros a template defines, by name: for a page written piece by piece
    (a head, a row at a time, a tail), each piece autoescaped like a whole page."""
    return dict(vars(ENV.get_template(template).module))


# How the HTML reports (a run's, the audit log's) name the reason a run stopped early.
STOP_WORDS: Final = {
    "max_deletes": "--max-deletes reached",
    "signal": "a signal (SIGTERM or SIGINT)",
    "credentials": "the API refused the credentials",
}
