"""A rotated audit log on disk: numbered gzip segments, the live file, the state sidecar.

`retention audit rotate` (or `run --rotate-bytes N`) closes the live file
`audit.jsonl` as `audit.jsonl.000001.gz`, then `.000002.gz`, and so on, beside it. The
chain goes on across them: a segment's first line chains from the previous one's
last `hash`, and `seq` never restarts. `audit.jsonl.state` records where the chain
stands after the last rotation (segment number, last `seq` and `hash`, the intents
still open, the surge guard's history), so a run continues from it without reading
the segments.

This module names and finds those files and reads them line by line in flat memory
(a segment is streamed through gzip); writing them is `retention/run/rotation.py`.
"""

from __future__ import annotations

import filecmp
import gzip
import hashlib
import io
import itertools
import json
import os
import re
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Final

from retention.audit.chain import GENESIS_HASH
from retention.audit.reader import DigestingReader, LineSource, RawLine, iter_lines, open_log
from retention.errors import UserError

SEGMENT_DIGITS: Final = 6
STATE_VERSION: Final = 1
_SEGMENT: Final = re.compile(r"(?P<base>.+)\.(?P<number>\d{6,})\.gz")
_HEX64: Final = re.compile(r"[0-9a-f]{64}")
_CHUNK: Final = 1 << 20
# What reading a damaged gzip stream raises: bad header or CRC, bad deflate data, cut short.
GZIP_ERRORS: Final = (gzip.BadGzipFile, zlib.error, EOFError)


class SegmentsError(UserError):
    """The files named do not form one audit log (exit 2)."""


class StateError(UserError):
    """The state sidecar cannot be read as one (exit 2)."""


def segment_name(log_name: str, number: int) -> str:
    return f"{log_name}.{number:0{SEGMENT_DIGITS}d}.gz"


def segment_path(live: Path, number: int) -> Path:
    """Segment `number` of the live log `live` (a resolved path), beside it."""
    return live.with_name(segment_name(live.name, number))


def state_path(live: Path) -> Path:
    """The state sidecar of the live log `live` (a resolved path)."""
    return live.with_name(live.name + ".state")


def parse_segment_name(name: str) -> tuple[str, int] | None:
    """(base log name, number) of a segment file name; None for any other name."""
    match = _SEGMENT.fullmatch(name)
    if match is None or int(match.group("number")) < 1:
        return None
    return match.group("base"), int(match.group("number"))


@dataclass(frozen=True, slots=True)
class LogFile:
    """One file of a log: a segment (`number` ≥ 1, gzip) or the live file (`number` None)."""

    path: Path
    number: int | None = None

    @property
    def is_segment(self) -> bool:
        return self.number is not None

    @property
    def label(self) -> str:
        return self.path.name


def segments_beside(live: Path) -> list[LogFile]:
    """The segments of the live log `live` found in its directory, by number."""
    found: list[LogFile] = []
    try:
        names = os.listdir(live.parent)
    except OSError:
        return []
    for name in names:
        parsed = parse_segment_name(name)
        if parsed is not None and parsed[0] == live.name:
            found.append(LogFile(live.parent / name, parsed[1]))
    found.sort(key=lambda item: item.number or 0)
    return found


def _in_directory(directory: Path) -> list[LogFile]:
    """A directory holds one log's segments, and its live file when it is there."""
    try:
        names = sorted(os.listdir(directory))
    except OSError as err:
        reason = os.strerror(err.errno) if err.errno else type(err).__name__
        raise SegmentsError(f"cannot list it ({reason})", where=str(directory)) from None
    bases = {parsed[0] for name in names if (parsed := parse_segment_name(name))}
    if len(bases) > 1:
        raise SegmentsError(
            f"holds the segments of {len(bases)} logs ({', '.join(sorted(bases))}); "
            "name the files of one log",
            where=str(directory),
        )
    if not bases:
        raise SegmentsError(
            "holds no audit log segment (NAME.000001.gz); name the log file itself",
            where=str(directory),
        )
    [base] = bases
    files = segments_beside(directory / base)
    live = directory / base
    if live.is_file():
        files.append(LogFile(live))
    return files


def log_files(paths: Sequence[Path]) -> list[LogFile]:
    """The files `audit verify` reads, in chain order: segments by number, the live file last.

    A directory stands for the segments in it (and its live file); a live file brings
    the segments beside it along, so `audit verify audit.jsonl` checks the whole log.
    """
    chosen: dict[str, LogFile] = {}  # by resolved path: a file named twice is read once
    for path in paths:
        if path.is_dir():
            candidates = _in_directory(path)
        else:
            parsed = parse_segment_name(path.name)
            if parsed is not None:
                candidates = [LogFile(path, parsed[1])]
            else:
                candidates = [*segments_beside(path), LogFile(path)]
        for candidate in candidates:
            chosen.setdefault(os.path.realpath(candidate.path), candidate)
    files = list(chosen.values())
    live = [item for item in files if not item.is_segment]
    if len(live) > 1:
        names = ", ".join(str(item.path) for item in live)
        raise SegmentsError(f"two live log files given ({names}); give one", where="FILE")
    segments = sorted((item for item in files if item.is_segment), key=lambda i: i.number or 0)
    bases = {parse_segment_name(item.path.name)[0] for item in segments}  # type: ignore[index]
    if len(bases) > 1:
        raise SegmentsError(
            f"the segments belong to {len(bases)} logs ({', '.join(sorted(bases))})", where="FILE"
        )
    unique: list[LogFile] = []
    for before, after in itertools.pairwise(segments):
        if before.number != after.number:
            unique.append(before)
        elif not filecmp.cmp(before.path, after.path, shallow=False):
            raise SegmentsError(
                f"segment {before.number} given twice, with different content "
                f"({before.path}, {after.path})",
                where="FILE",
            )
    if segments:
        unique.append(segments[-1])  # an archived copy of a segment kept beside the log: once
    return [*unique, *live]


class _HashingReader:
    """A raw file read through, hashing every byte (the segment's digest as stored)."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.digest = hashlib.sha256()
        self.size = 0

    def read(self, size: int = -1, /) -> bytes:
        data = self._raw.read(size)
        self.digest.update(data)
        self.size += len(data)
        return data

    def readable(self) -> bool:
        return True

    def seek(self, _offset: int, /) -> object:
        raise io.UnsupportedOperation("a segment is read once, in order")


@dataclass
class OpenedFile:
    """A log file open for line reads; `digest()` and `size()` are of the bytes as stored."""

    lines: LineSource
    _hashing: Any

    def digest(self) -> str:
        return str(self._hashing.digest.hexdigest())

    def size(self) -> int:
        return int(self._hashing.size)


@contextmanager
def open_lines(item: LogFile) -> Iterator[OpenedFile]:
    """Open a log file for `iter_lines`; a segment is decompressed as it is read."""
    stream = open_log(item.path)
    try:
        if not item.is_segment:
            reader = DigestingReader(stream)
            yield OpenedFile(reader, reader)
            return
        hashing = _HashingReader(stream)
        with gzip.GzipFile(fileobj=hashing, mode="rb") as unzipped:
            # GzipFile.readline reads ahead in its own buffer: flat memory, line by line.
            yield OpenedFile(unzipped, hashing)
    finally:
        stream.close()


def drain(opened: OpenedFile) -> None:
    """Read what is left of a file (after a damaged stream: count its stored bytes)."""
    hashing = opened._hashing
    if isinstance(hashing, _HashingReader):
        while hashing.read(_CHUNK):
            pass


# -- the state sidecar ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CarriedIntent:
    """An intent still open when its file was rotated away: recovery settles it."""

    call_id: str
    agent_id: str
    policy: str
    run_id: str
    seq: int
    ts: str


@dataclass(frozen=True, slots=True)
class RotationState:
    """Where the chain stands after the last rotation (`NAME.state`)."""

    segment: int = 0  # the last segment written; 0: the log was never rotated
    first_seq: int = 1  # that segment's first seq
    last_seq: int = 0
    last_hash: str = GENESIS_HASH
    segment_sha256: str = ""
    segment_bytes: int = 0
    signed: bool = False  # the log held a checkpoint: every segment must end on one
    open_intents: tuple[CarriedIntent, ...] = ()
    # The surge guard's history up to the rotation: the latest execute runs' `deleted`
    # counts, oldest first (None: a state written before it was recorded).
    history: tuple[int, ...] | None = None

    def to_json(self) -> bytes:
        body = {
            "version": STATE_VERSION,
            "segment": self.segment,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "last_hash": self.last_hash,
            "segment_sha256": self.segment_sha256,
            "segment_bytes": self.segment_bytes,
            "signed": self.signed,
            "open_intents": [
                {
                    "call_id": i.call_id,
                    "agent_id": i.agent_id,
                    "policy": i.policy,
                    "run_id": i.run_id,
                    "seq": i.seq,
                    "ts": i.ts,
                }
                for i in self.open_intents
            ],
        }
        if self.history is not None:
            body["history"] = list(self.history)
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode("ascii") + b"\n"


def read_state(path: Path) -> RotationState | None:
    """The state sidecar at `path`; None when there is none (the log was never rotated)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as err:
        reason = os.strerror(err.errno) if err.errno else type(err).__name__
        raise StateError(f"cannot read the rotation state ({reason})", where=str(path)) from None
    try:
        body = json.loads(raw)
        intents = tuple(
            CarriedIntent(
                str(i["call_id"]),
                str(i["agent_id"]),
                str(i["policy"]),
                str(i["run_id"]),
                int(i["seq"]),
                str(i["ts"]),
            )
            for i in body["open_intents"]
        )
        history = body.get("history")
        if history is not None and (
            not isinstance(history, list) or any(type(n) is not int or n < 0 for n in history)
        ):
            raise TypeError("history")
        state = RotationState(
            segment=int(body["segment"]),
            first_seq=int(body["first_seq"]),
            last_seq=int(body["last_seq"]),
            last_hash=str(body["last_hash"]),
            segment_sha256=str(body["segment_sha256"]),
            segment_bytes=int(body["segment_bytes"]),
            signed=bool(body["signed"]),
            open_intents=intents,
            history=tuple(history) if history is not None else None,
        )
    except (ValueError, KeyError, TypeError):
        raise StateError(
            "is not a rotation state file (damaged?); the segments and the log still hold "
            "every line: check them with `retention audit verify`",
            where=str(path),
        ) from None
    if body.get("version") != STATE_VERSION or not _HEX64.fullmatch(state.last_hash):
        raise StateError("is not a rotation state file this version reads", where=str(path))
    return state


def iter_log_lines(paths: Path | Sequence[Path]) -> Iterator[RawLine]:
    """Every line of a log, its segments then its live file, numbered through the whole log.

    For readers that come after `verify` (the API proof, the certificate): a damaged
    segment ends the iteration there, as verify has already reported it.
    """
    files = log_files([paths] if isinstance(paths, Path) else paths)
    base = 0
    for item in files:
        with open_lines(item) as opened:
            number = 0
            try:
                for raw in iter_lines(opened.lines):
                    number = raw.number
                    yield RawLine(base + raw.number, raw.data, raw.too_long)
            except GZIP_ERRORS:
                return
            base += number
