"""The resume sidecar `<resolved log>.resume`: where the start-up scan may pick up.

Without it a run reads the whole live file at start (last `seq`/`hash`, open intents,
the surge guard's history): a cost that grows every night. At the end of a run, under
the log's lock, the writer records what that scan would find in the file as it stands:

- the file's identity (device, inode), its size (`offset`: every byte covered) and
  modification time, the rotation segment it follows, how many lines it holds;
- the chain's last `seq`, `hash` and event, and whether a checkpoint was seen;
- the intents still open, the latest execute runs' deletion counts (bounded:
  `HISTORY_RUNS`), and the calls listed per agent (bounded by agents; for sharding).

It is a cache, never evidence, and carries a SHA-256 of its own content, so damage
to it is seen rather than believed. It is trusted only when it agrees with the file: same
identity and segment; size at least `offset`; the line ending at `offset` carries the
recorded `seq` and `hash`; an unchanged modification time when nothing was appended.
Only the bytes after `offset` are then read (lines a killed run appended, a torn
tail). Any disagreement, or a sidecar that cannot be read, means the full scan, with
the warning `audit.resume_mismatch`. It is written atomically (tmp, fsync, rename,
directory fsync), mode 0600, never through a symlink, and only when the file's last
line is the chain's last line in memory, so it never claims more than the log holds.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from retention.audit.reader import MAX_LINE_BYTES, LineFormatError, parse_line
from retention.durable import fsync_dir, write_all

RESUME_VERSION: Final = 1
FILE_MODE: Final = 0o600
MAX_AGENTS: Final = 100_000  # per-agent sizes kept: bounded whatever the account's churn
_HEX64: Final = re.compile(r"[0-9a-f]{64}")
_WINDOW: Final = 1 << 16


def resume_path(live: Path) -> Path:
    """The resume sidecar of the live log `live` (a resolved path)."""
    return live.with_name(live.name + ".resume")


class ResumeMismatch(Exception):
    """The sidecar cannot be used: the message says why (no secret, no personal data)."""


@dataclass(frozen=True, slots=True)
class ResumeIntent:
    call_id: str
    agent_id: str
    policy: str
    run_id: str
    line: int
    ts: str
    seq: int


@dataclass(frozen=True, slots=True)
class ResumePoint:
    """What the start-up scan of the file's first `offset` bytes finds."""

    device: int
    inode: int
    offset: int
    mtime_ns: int
    segment: int
    lines: int
    last_seq: int
    last_hash: str
    last_event: str
    signed: bool
    open_intents: tuple[ResumeIntent, ...] = ()
    history: tuple[int, ...] = ()
    agent_calls: Mapping[str, int] = field(default_factory=dict)

    def to_json(self) -> bytes:
        body: dict[str, Any] = {
            "version": RESUME_VERSION,
            "device": self.device,
            "inode": self.inode,
            "offset": self.offset,
            "mtime_ns": self.mtime_ns,
            "segment": self.segment,
            "lines": self.lines,
            "last_seq": self.last_seq,
            "last_hash": self.last_hash,
            "last_event": self.last_event,
            "signed": self.signed,
            "open_intents": [
                [i.call_id, i.agent_id, i.policy, i.run_id, i.line, i.ts, i.seq]
                for i in self.open_intents
            ],
            "history": list(self.history),
            "agent_calls": dict(sorted(self.agent_calls.items())),
        }
        body["digest"] = _digest(body)
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode("ascii") + b"\n"


def _digest(body: Mapping[str, Any]) -> str:
    """SHA-256 over the body's canonical JSON without `digest`: damage shows, never misleads."""
    canonical = {key: value for key, value in body.items() if key != "digest"}
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def _int(body: Mapping[str, Any], key: str) -> int:
    value = body.get(key)
    if type(value) is not int or value < 0:
        raise ResumeMismatch(f"`{key}` is not a non-negative integer")
    return value


def _str(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise ResumeMismatch(f"{what} is not a string")
    return value


def parse_resume(raw: bytes) -> ResumePoint:
    """The sidecar's content, every field checked for type and range."""
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise ResumeMismatch("not JSON") from None
    if not isinstance(body, dict) or body.get("version") != RESUME_VERSION:
        raise ResumeMismatch("not a resume file this version reads")
    if body.get("digest") != _digest(body):
        raise ResumeMismatch("its digest does not match its content (damaged)")
    if json.dumps(body, sort_keys=True, separators=(",", ":")).encode("ascii") + b"\n" != raw:
        # The same content in other bytes (a lost newline, added spaces): not as written,
        # so not trusted either; the writer's bytes are the only form it accepts.
        raise ResumeMismatch("not the bytes it was written as (damaged)")
    intents: list[ResumeIntent] = []
    raw_intents = body.get("open_intents")
    if not isinstance(raw_intents, list):
        raise ResumeMismatch("`open_intents` is not a list")
    for item in raw_intents:
        if not isinstance(item, list) or len(item) != 7:
            raise ResumeMismatch("an open intent is malformed")
        strings = [_str(value, "an open intent") for value in (*item[:4], item[5])]
        line, seq = item[4], item[6]
        if type(line) is not int or type(seq) is not int or line < 0 or seq < 1:
            raise ResumeMismatch("an open intent has a bad line or seq")
        call_id, agent_id, policy, run_id, ts = strings
        intents.append(ResumeIntent(call_id, agent_id, policy, run_id, line, ts, seq))
    history = body.get("history")
    if not isinstance(history, list) or any(type(n) is not int or n < 0 for n in history):
        raise ResumeMismatch("`history` is not a list of counts")
    agents = body.get("agent_calls")
    if not isinstance(agents, dict) or any(type(n) is not int or n < 0 for n in agents.values()):
        raise ResumeMismatch("`agent_calls` is not a map of counts")
    last_hash = _str(body.get("last_hash"), "`last_hash`")
    if not _HEX64.fullmatch(last_hash):
        raise ResumeMismatch("`last_hash` is not a SHA-256")
    signed = body.get("signed")
    if not isinstance(signed, bool):
        raise ResumeMismatch("`signed` is not a boolean")
    return ResumePoint(
        device=_int(body, "device"),
        inode=_int(body, "inode"),
        offset=_int(body, "offset"),
        mtime_ns=_int(body, "mtime_ns"),
        segment=_int(body, "segment"),
        lines=_int(body, "lines"),
        last_seq=_int(body, "last_seq"),
        last_hash=last_hash,
        last_event=_str(body.get("last_event"), "`last_event`"),
        signed=signed,
        open_intents=tuple(intents),
        history=tuple(history),
        agent_calls=dict(agents),
    )


def read_resume(path: Path) -> ResumePoint | None:
    """The sidecar at `path` (None: there is none). Raises ResumeMismatch when unusable."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as err:
        raise ResumeMismatch(f"cannot open it ({os.strerror(err.errno or 0)})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > 64 * MAX_LINE_BYTES:
            raise ResumeMismatch("not a regular file of a sane size")
        if info.st_mode & 0o077:
            raise ResumeMismatch("group or others may read or write it")
        chunks: list[bytes] = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return parse_resume(b"".join(chunks))


def last_line(fd: int, offset: int) -> bytes:
    """The complete line of the file `fd` that ends exactly at byte `offset`."""
    window = min(offset, _WINDOW)
    while True:
        data = os.pread(fd, window, offset - window)
        if len(data) != window or not data.endswith(b"\n"):
            raise ResumeMismatch("the recorded offset is not the end of a line")
        start = data.rfind(b"\n", 0, len(data) - 1)
        if start >= 0:
            return data[start + 1 :]
        if window == offset:
            return data  # the file's first line
        if window > MAX_LINE_BYTES:
            raise ResumeMismatch("no line ends at the recorded offset")
        window = min(offset, window * 4)


def check_against(point: ResumePoint, fd: int, segment: int, base_seq: int) -> None:
    """Raise ResumeMismatch unless `point` describes the first `offset` bytes of `fd`.

    `segment` and `base_seq` are the rotation state's: the live file's first line
    follows `base_seq`, so its `lines` lines end at `base_seq + lines`.
    """
    info = os.fstat(fd)
    if (info.st_dev, info.st_ino) != (point.device, point.inode):
        raise ResumeMismatch("it describes another file (device or inode differs)")
    if point.segment != segment:
        raise ResumeMismatch("the log was rotated since it was written")
    if info.st_size < point.offset:
        raise ResumeMismatch("the log is shorter than the recorded offset")
    if info.st_size == point.offset and info.st_mtime_ns != point.mtime_ns:
        raise ResumeMismatch("the log was modified since it was written")
    if point.last_seq != base_seq + point.lines:
        raise ResumeMismatch("its line count does not match its last seq")
    if any(intent.seq > point.last_seq for intent in point.open_intents):
        raise ResumeMismatch("an open intent is after the last line")
    if point.offset == 0:
        if point.lines != 0:
            raise ResumeMismatch("lines recorded in an empty file")
        return
    try:
        record = parse_line(last_line(fd, point.offset))
    except LineFormatError:
        raise ResumeMismatch("the line at the recorded offset is not a record") from None
    if record.get("seq") != point.last_seq or record.get("hash") != point.last_hash:
        raise ResumeMismatch("the line at the recorded offset is not the recorded last line")


def write_resume(path: Path, point: ResumePoint) -> None:
    """Replace the sidecar atomically: tmp (0600, never through a link), fsync, rename."""
    temporary = path.with_name(path.name + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temporary)  # a leftover of a crash, or anything planted there
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(temporary, flags, FILE_MODE)
    try:
        write_all(fd, point.to_json())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(temporary, path)
    fsync_dir(path.parent)
