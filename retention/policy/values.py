"""Value lists read from files: `{file: PATH}` anywhere a policy accepts a list.

One value per line; surrounding blanks are trimmed; empty lines and lines whose
first non-blank character is `#` are skipped (there are no trailing comments: a
`#` inside a value is part of it). Every value is text, as if quoted in YAML. A
relative PATH is read from the policy file's directory. A file that is missing,
unreadable, not UTF-8 text, larger than `MAX_VALUE_FILE_BYTES` or without a single
value is a problem (exit 2), never an empty list. The file's SHA-256 is kept, to
be shown by `validate` and recorded in `run_started` with the policy files.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from retention.durable import SmallFileError, read_small_file

MAX_VALUE_FILE_BYTES: Final = 64 << 20


@dataclass(frozen=True, slots=True)
class ValueFile:
    """A value file as read: where it is, its SHA-256 (hex) and how many values it holds."""

    path: str
    sha256: str
    count: int

    def words(self) -> str:
        """How a description names the list, without its values."""
        plural = "" if self.count == 1 else "s"
        return f"one of the {self.count} value{plural} in {self.path} (sha256:{self.sha256[:16]})"


class ValueFileError(Exception):
    """Why a value file cannot be used; `line` when one line is at fault."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


def resolve(written: str, policy_file: str) -> Path:
    """A value file's path: as written when absolute, else next to the policy file."""
    path = Path(written).expanduser()
    if path.is_absolute() or policy_file.startswith("<"):
        return path
    return Path(policy_file).parent / path


def read_values(path: Path) -> tuple[ValueFile, list[tuple[str, int]]]:
    """The file's description and its values in order, each with its 1-based line;
    ValueFileError when unusable."""
    data = _read_bytes(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueFileError("not UTF-8 text", data.count(b"\n", 0, err.start) + 1) from None
    if "\x00" in text:
        raise ValueFileError("a NUL character", text.count("\n", 0, text.index("\x00")) + 1)
    lines = [
        (value, number)
        for number, value in enumerate(map(str.strip, text.splitlines()), start=1)
        if value and value[0] != "#"
    ]
    if not lines:
        raise ValueFileError(
            "holds no values (only blank lines or # comments), which would match no call"
        )
    return ValueFile(str(path), hashlib.sha256(data).hexdigest(), len(lines)), lines


def _read_bytes(path: Path) -> bytes:
    try:
        return read_small_file(
            path, MAX_VALUE_FILE_BYTES, directory="a directory, not a file of values"
        )
    except SmallFileError as err:
        raise ValueFileError(str(err)) from None
