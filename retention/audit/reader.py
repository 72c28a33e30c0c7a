"""Reading an audit log one line at a time, in flat memory.

The verifier and the `--api` proof both stream the file through here: a line is
read, parsed and dropped, so a log of millions of lines costs the memory of one.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Final, Protocol

from retention.errors import UserError

# No writer ever produces a line near this long; a longer one is damage, not data.
MAX_LINE_BYTES: Final = 1 << 20
_CHUNK: Final = 1 << 20


class AuditFileError(UserError):
    """The audit log is missing or cannot be read (exit 2)."""


@dataclass(frozen=True, slots=True)
class RawLine:
    number: int  # 1-based
    data: bytes  # with its trailing newline, if it had one
    too_long: bool = False

    @property
    def complete(self) -> bool:
        return self.data.endswith(b"\n")


class LineFormatError(ValueError):
    """A line that is not one JSON object (the message names what is wrong)."""


def open_log(path: Path) -> BinaryIO:
    """Open the log for reading, turning every OS failure into one clear line."""
    try:
        if path.is_dir():
            raise AuditFileError("is a directory, not an audit log", where=str(path))
        return path.open("rb", buffering=_CHUNK)
    except FileNotFoundError:
        raise AuditFileError("no such audit log", where=str(path)) from None
    except PermissionError:
        raise AuditFileError("permission denied reading the audit log", where=str(path)) from None
    except OSError as err:
        reason = os.strerror(err.errno) if err.errno else type(err).__name__
        raise AuditFileError(f"cannot read the audit log ({reason})", where=str(path)) from None


class LineSource(Protocol):
    def readline(self, size: int = -1, /) -> bytes: ...


class DigestingReader:
    """Passes reads through, hashing every byte: the file's digest in the same pass."""

    def __init__(self, stream: LineSource) -> None:
        self._stream = stream
        self.digest = hashlib.sha256()
        self.size = 0

    def readline(self, size: int = -1, /) -> bytes:
        data = self._stream.readline(size)
        self.digest.update(data)
        self.size += len(data)
        return data


def iter_lines(stream: LineSource) -> Iterator[RawLine]:
    """Yield the file's lines in order; an over-long line is cut and flagged, never kept whole."""
    number = 0
    while True:
        data = stream.readline(MAX_LINE_BYTES + 1)
        if not data:
            return
        number += 1
        if len(data) > MAX_LINE_BYTES and not data.endswith(b"\n"):
            # Skip the rest of the monster line without holding it.
            while data and not data.endswith(b"\n"):
                data = stream.readline(_CHUNK)
            yield RawLine(number, b"", too_long=True)
            continue
        yield RawLine(number, data)


def _reject_constant(name: str) -> Any:
    raise LineFormatError(f"not JSON: {name} is not a JSON value")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # A repeated key would let a reader and the hash disagree on what a line says.
    record: dict[str, Any] = {}
    for key, value in pairs:
        if key in record:
            raise LineFormatError(f"not one JSON object: key {key!r} appears twice")
        record[key] = value
    return record


_DECODER: Final = json.JSONDecoder(object_pairs_hook=_unique_keys, parse_constant=_reject_constant)


def parse_line(data: bytes) -> dict[str, Any]:
    """Parse one line as a JSON object, strictly (no NaN, no duplicate keys)."""
    try:
        value = _DECODER.decode(data.decode("utf-8"))
    except LineFormatError:
        raise
    except UnicodeDecodeError:
        raise LineFormatError("bad JSON: not UTF-8 text") from None
    except json.JSONDecodeError as err:
        raise LineFormatError(f"bad JSON ({err.msg} at column {err.colno})") from None
    except RecursionError:  # a damaged or hostile line of nested brackets
        raise LineFormatError("bad JSON: nested too deeply") from None
    if not isinstance(value, dict):
        raise LineFormatError("bad JSON: the line is not a JSON object")
    return value
