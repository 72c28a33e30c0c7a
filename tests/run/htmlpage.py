"""Reads an HTML report back: its tables (by `data-table`), its charts' bars (by
`data-chart`: each bar's label, its value and the count printed beside it), every
element and attribute. Python's HTML parser tokenises as browsers do; the browser
test (tests/run/test_html_browser.py) checks the same page with Chromium's parser."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from html.parser import HTMLParser


@dataclass
class Table:
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)  # every body row, the total row too
    total: list[str] | None = None

    def column(self, title: str) -> dict[str, int]:
        """First cell -> the number in the column `title`, for the rows above the total."""
        at = self.header.index(title)
        body = self.rows if self.total is None else self.rows[:-1]
        return {row[0]: int(row[at]) for row in body}


@dataclass
class Bar:
    label: str
    value: int
    printed: str  # the count written beside the bar


class Page(HTMLParser):
    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: dict[str, Table] = {}
        self.charts: dict[str, list[Bar]] = {}
        self.tags: Counter[str] = Counter()
        self.attributes: list[tuple[str, str]] = []
        self.text_parts: list[str] = []
        self._table: Table | None = None
        self._row: list[str] | None = None
        self._row_total = False
        self._cell: list[str] | None = None
        self._in_head_row = False
        self._chart: str | None = None
        self._bar: Bar | None = None
        self._value_text: list[str] | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] += 1
        found = {k: v or "" for k, v in attrs}
        self.attributes.extend(found.items())
        if tag == "table":
            self._table = self.tables.setdefault(found.get("data-table", ""), Table())
        elif tag == "thead":
            self._in_head_row = True
        elif tag == "tr" and self._table is not None:
            self._row, self._row_total = [], found.get("class") == "total"
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
        elif tag == "svg":
            self._chart = found.get("data-chart")
            self.charts.setdefault(self._chart or "", [])
        elif tag == "g" and self._chart is not None:
            self._bar = Bar(found["data-label"], int(found["data-value"]), "")
        elif tag == "text" and self._bar is not None and found.get("class") == "value":
            self._value_text = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None and self._table is not None:
            if self._in_head_row:
                self._table.header = self._row
            else:
                self._table.rows.append(self._row)
                if self._row_total:
                    self._table.total = self._row
            self._row = None
        elif tag == "thead":
            self._in_head_row = False
        elif tag == "table":
            self._table = None
        elif tag == "text" and self._value_text is not None and self._bar is not None:
            self._bar.printed = "".join(self._value_text)
            self._value_text = None
        elif tag == "g" and self._bar is not None and self._chart is not None:
            self.charts[self._chart].append(self._bar)
            self._bar = None
        elif tag == "svg":
            self._chart = None

    def handle_data(self, data: str) -> None:
        self.text_parts.append(data)
        if self._cell is not None:
            self._cell.append(data)
        if self._value_text is not None:
            self._value_text.append(data)

    @property
    def text(self) -> str:
        return "".join(self.text_parts)

    def chart(self, name: str) -> dict[str, int]:
        """A chart's bars as label -> value, after checking each bar prints its value."""
        bars = self.charts.get(name, [])
        assert all(bar.printed == str(bar.value) for bar in bars), name
        return {bar.label: bar.value for bar in bars}
