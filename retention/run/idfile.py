"""The ids `retention explain --ids FILE` reads, one line at a time (memory stays flat).

FILE (or `-` for stdin) holds one call id per line, or is a CSV whose first line is a
header with a `call_id` column. Which of the two is decided by the first line that is
not blank nor a `#` comment: if one of its comma-separated cells is `call_id`, the
file is a CSV and that line its header; otherwise one id per line, where a comma is
an error (exit 2, before any request). Blank lines are skipped, and `#` comments in
a list of ids. Each id is checked as every id this tool sends is (`api.ids`); an id
that is not usable (or a line over MAX_LINE characters) is yielded with the reason,
never sent, and named by its line number only.
"""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from retention.api.ids import id_problem
from retention.errors import UserError

MAX_LINE: Final = 4096  # characters; a longer line is read past, never held whole
COLUMN: Final = "call_id"


@dataclass(frozen=True, slots=True)
class IdLine:
    """One id from the file: `call_id` when usable, else `problem` says why not."""

    line: int
    call_id: str | None
    problem: str | None = None

    @property
    def shown(self) -> str:
        """How the id appears in output: itself, or its line for one that is not usable."""
        return self.call_id if self.call_id is not None else f"(line {self.line})"


def _checked(line: int, value: str) -> IdLine:
    problem = id_problem(value)
    return IdLine(line, None, problem) if problem is not None else IdLine(line, value)


def _cells(text: str) -> list[str]:
    """The cells of one CSV line (an id never holds a line break)."""
    return next(csv.reader([text]), [])


class IdFile:
    """Opened, and its first line read, before any request: a bad file is exit 2 first."""

    def __init__(self, path: Path) -> None:
        self.stdin = str(path) == "-"
        self.where = f"--ids {path}"
        try:
            self._handle: io.TextIOWrapper = (
                io.TextIOWrapper(
                    sys.stdin.buffer, encoding="utf-8", errors="surrogateescape", newline=""
                )
                if self.stdin
                else path.open(encoding="utf-8", errors="surrogateescape", newline="")
            )
        except OSError as err:
            raise UserError(f"cannot read: {err.strerror or err}", where=self.where) from None
        self._raw = self._raw_lines()
        self.column: int | None = None  # the call_id column of a CSV
        self._first: tuple[int, str | None] | None = None
        try:
            self._sniff()
        except BaseException:
            self.close()
            raise

    def _sniff(self) -> None:
        for number, text in self._raw:
            if text is not None and (not text or text.startswith("#")):
                continue
            if text is not None:
                try:
                    cells = [cell.strip() for cell in _cells(text)]
                except csv.Error:
                    cells = []
                if COLUMN in cells:
                    self.column = cells.index(COLUMN)
                    return
                if "," in text:
                    raise UserError(
                        f"line {number} looks like CSV, but no column is named `{COLUMN}` "
                        "(give a CSV with a call_id header, or one id per line)",
                        where=self.where,
                    )
            self._first = (number, text)
            return
        raise UserError(
            f"no call ids (give one per line, or a CSV with a `{COLUMN}` column)", where=self.where
        )

    def _raw_lines(self) -> Iterator[tuple[int, str | None]]:
        """(line number, stripped text), text None for a line over MAX_LINE characters."""
        handle = self._handle
        number = 0
        while True:
            try:
                text = handle.readline(MAX_LINE + 1)
                if not text:
                    return
                number += 1
                if len(text) > MAX_LINE and text[-1] not in "\r\n":
                    while text and text[-1] not in "\r\n":
                        text = handle.readline(MAX_LINE)
                    yield number, None
                    continue
            except OSError as err:
                raise UserError(
                    f"cannot read line {number + 1}: {err.strerror or err}", where=self.where
                ) from None
            yield number, text.strip()

    def __iter__(self) -> Iterator[IdLine]:
        if self._first is not None:
            first, self._first = self._first, None
            yield self._line(*first)
        for number, text in self._raw:
            if text is not None and (not text or (self.column is None and text[0] == "#")):
                continue
            yield self._line(number, text)

    def _line(self, number: int, text: str | None) -> IdLine:
        if text is None:
            return IdLine(number, None, f"the line is longer than {MAX_LINE} characters")
        if self.column is None:
            return _checked(number, text)
        try:
            cells = _cells(text)
        except csv.Error:
            return IdLine(number, None, "the row is not valid CSV")
        if len(cells) <= self.column:
            return IdLine(number, None, f"the row has no `{COLUMN}` cell")
        return _checked(number, cells[self.column].strip())

    def close(self) -> None:
        if self.stdin:
            self._handle.detach()  # leave stdin itself open
        else:
            self._handle.close()
