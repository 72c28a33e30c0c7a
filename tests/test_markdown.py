"""Any text is one Markdown table cell: no pipe or line break can split or end a row."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from retention.markdown import cell, table

_PARSER = MarkdownIt("commonmark").enable("table")
texts = st.text(st.characters(exclude_characters="\x00"), max_size=40)


def _parsed(lines: list[str]) -> list[list[str]]:
    """The table's rows as the parser sees them: the raw text of each cell."""
    rows: list[list[str]] = []
    for token in _PARSER.parse("\n".join(lines) + "\n"):
        if token.type == "tr_open":
            rows.append([])
        elif token.type == "inline" and rows:
            rows[-1].append(token.content.strip())  # edges: the parser trims its own set
    return rows


def _as_shown(text: str) -> str:
    """What a cell holds: its line breaks as spaces, its edges trimmed."""
    return " ".join(text.splitlines()).strip()


@given(st.lists(st.tuples(texts, texts), min_size=1, max_size=4))
def test_every_cell_text_round_trips_as_one_cell(rows: list[tuple[str, str]]) -> None:
    rendered = table(("policy", "note"), rows)
    assert len(rendered) == len(rows) + 2  # one line per row: no break escaped the cell
    parsed = _parsed(rendered)
    assert parsed[0] == ["policy", "note"]
    assert parsed[1:] == [[_as_shown(a), _as_shown(b)] for a, b in rows]


def test_a_pipe_and_a_newline_stay_inside_the_cell() -> None:
    assert cell("a|b\nc") == "a\\|b c"
    assert cell(None) == "—"
