"""Self-contained HTML: escaped by construction, inline CSS, bar charts as inline SVG.

Every text goes through `h()`, which escapes it unless it is `Markup` built by `h()`
itself, so a value from the API (an agent name such as `<img src=x onerror=...>`)
can only ever render as text. Inline SVG written here is simpler than a chart
library: a horizontal bar chart is a few rectangles and labels, needs no
JavaScript, prints, and keeps the page free of any URL to fetch.

Every chart is drawn from the rows of the table printed under it, so every number
in a chart is also in a table.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from html import escape
from typing import Final

CHART_WIDTH: Final = 720
BAR_HEIGHT: Final = 22
LABEL_WIDTH: Final = 300
VALUE_WIDTH: Final = 80
# Dark fills, one per chart: readable in grey, with the count printed beside each bar.
INK: Final = {"due": "#9c2f23", "kept": "#1f5f8b", "neutral": "#3d4a57", "warn": "#8a5a00"}

CSS: Final = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
 margin:2rem auto;max-width:62rem;padding:0 1rem;color:#1b1f24;background:#fff;line-height:1.4}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.2rem;margin-top:2rem;
 border-bottom:2px solid #1b1f24;padding-bottom:.2rem}h3{font-size:1rem;margin-bottom:.3rem}
.sub{color:#444;margin-top:0}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem}
dl.facts dt{font-weight:600}dl.facts dd{margin:0}
table{border-collapse:collapse;margin:.5rem 0 1rem;font-size:.92rem}
th,td{border:1px solid #888;padding:.25rem .6rem;text-align:left;vertical-align:top}
th{background:#e8e8e8}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
tr.total td{font-weight:700;border-top:2px solid #1b1f24}
tr.dead td{background:#fff3cd;font-weight:600}
.tiles{display:flex;flex-wrap:wrap;gap:.6rem;margin:1rem 0}
.tile{border:2px solid #1b1f24;border-radius:4px;padding:.4rem .8rem;min-width:7rem}
.tile b{display:block;font-size:1.4rem}
.none{color:#555;font-style:italic}
svg text{font-family:inherit;font-size:12px;fill:#1b1f24}
code{font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:.85rem;word-break:break-all}
@media print{body{margin:0;max-width:none}h2{break-after:avoid}section{break-inside:avoid}}
"""


class Markup(str):
    """Text already escaped (built by `h`): inserted as is."""

    __slots__ = ()


Child = str | int | Markup | None | Sequence["Child"]


def h(tag: str, *children: Child, **attrs: str | int | None) -> Markup:
    """An element; str children and attribute values are escaped, Markup is not.
    `class_` stands for `class`; an attribute set to None is left out."""
    parts = [tag]
    for key, value in attrs.items():
        if value is not None:
            name = key.rstrip("_").replace("_", "-")
            parts.append(f'{name}="{escape(str(value), quote=True)}"')
    body = "".join(_render(child) for child in children)
    return Markup(f"<{' '.join(parts)}>{body}</{tag}>")


def _render(child: Child) -> str:
    if child is None:
        return ""
    if isinstance(child, Markup):
        return child
    if isinstance(child, str | int):
        return escape(str(child), quote=True)
    return "".join(_render(c) for c in child)


def page(title: str, *body: Child) -> str:
    """A whole document: no script, no link, no URL to fetch."""
    head = h(
        "head",
        Markup('<meta charset="utf-8">'),
        Markup('<meta name="viewport" content="width=device-width, initial-scale=1">'),
        h("title", title),
        h("style", Markup(CSS)),
    )
    return "<!DOCTYPE html>\n" + h("html", head, h("body", *body), lang="en") + "\n"


@dataclass(frozen=True, slots=True)
class Column:
    title: str
    numeric: bool = False


def table(
    columns: Sequence[Column],
    rows: Iterable[Sequence[str | int | Markup]],
    *,
    name: str,
    total: Sequence[str | int] | None = None,
    row_classes: Sequence[str | None] = (),
) -> Markup:
    """A table; `name` (data-table) lets tests find it. Numbers are right-aligned."""
    head = h(
        "thead", h("tr", [h("th", c.title, class_="n" if c.numeric else None) for c in columns])
    )
    body = []
    for i, row in enumerate(rows):
        cells = [
            h("td", cell, class_="n" if col.numeric else None)
            for col, cell in zip(columns, row, strict=True)
        ]
        body.append(h("tr", cells, class_=row_classes[i] if i < len(row_classes) else None))
    if total is not None:
        cells = [
            h("td", cell, class_="n" if col.numeric else None)
            for col, cell in zip(columns, total, strict=True)
        ]
        body.append(h("tr", cells, class_="total"))
    if not body:
        return h("p", "None.", class_="none", data_table=name)
    return h("table", head, h("tbody", body), data_table=name)


def bar_chart(
    bars: Sequence[tuple[str, int]], *, name: str, title: str, ink: str = "neutral"
) -> Markup:
    """Horizontal bars, each with its label and count; nothing drawn when all are zero."""
    if not bars or not any(value for _, value in bars):
        return Markup("")
    peak = max(value for _, value in bars)
    span = CHART_WIDTH - LABEL_WIDTH - VALUE_WIDTH
    height = BAR_HEIGHT * len(bars) + 8
    items = []
    for i, (label, value) in enumerate(bars):
        y = 4 + i * BAR_HEIGHT
        width = 0 if peak == 0 else max(1, round(span * value / peak)) if value else 0
        shown = label if len(label) <= 40 else label[:39] + "…"  # the table has it whole
        items.append(
            h(
                "g",
                h("title", f"{label}: {value}"),
                h("text", shown, x=LABEL_WIDTH - 6, y=y + 15, text_anchor="end"),
                h(
                    "rect",
                    x=LABEL_WIDTH,
                    y=y + 3,
                    width=width,
                    height=BAR_HEIGHT - 6,
                    fill=INK[ink],
                ),
                h("text", value, x=LABEL_WIDTH + width + 6, y=y + 15, class_="value"),
                data_label=label,
                data_value=value,
            )
        )
    svg = h(
        "svg",
        h("title", title),
        items,
        width=CHART_WIDTH,
        height=height,
        viewBox=f"0 0 {CHART_WIDTH} {height}",
        role="img",
        aria_label=title,
        data_chart=name,
    )
    return h("figure", svg, style="margin:0")


def facts(items: Sequence[tuple[str, Child]]) -> Markup:
    return h("dl", [(h("dt", k), h("dd", v)) for k, v in items], class_="facts")


def tiles(items: Sequence[tuple[str, int]]) -> Markup:
    return h(
        "div",
        [h("div", h("b", value), label, class_="tile", data_tile=label) for label, value in items],
        class_="tiles",
    )
