"""The audit log on disk: the run's lock, the start-up scan, and crash-safe appends.

- The log has one identity, whatever path names it. The path is resolved first
  (`os.path.realpath`: symlinked directories, `.` and `..`), and a run holds two
  exclusive `flock`s for its whole life: on the sidecar `<resolved-log>.lock` (taken
  before the log is opened, so it also guards a log not created yet, and excludes
  older versions, which lock that same sidecar) and on the log file itself, so a hard
  link or any other name for the same inode is excluded too. A second run on the
  same file, by any name, is refused (exit 6). A lock is waited for briefly
  (`LOCK_PATIENCE`), only so that `audit verify`'s momentary probe never fails a run.
- The log must be the real file: a symlink as the last component is refused (exit 2;
  a symlink can be swapped under a running job). An existing log that group or others
  may read or write is tightened to 0600 on its open descriptor, with a warning; when
  that is not allowed (another user's file), exit 2 naming the fix.
- At start the chain continues from the last line's `seq` and `hash`, and
  `delete_requested` lines with no outcome (a killed run) are collected for recovery.
  That set is bounded by the killed run's work in flight. When the resume sidecar
  (`retention/audit/resume.py`) agrees with the file, only the bytes after the point
  it records are read; otherwise (or without one) the whole file is streamed once,
  through the locked descriptor, line by line. A run records a new resume point at
  its end.
- A torn last line (no trailing newline: the process died inside a write) is moved to
  `<resolved-log>.torn` and cut off, with a warning, so the chain stays verifiable. Since
  an intent is fsync'd before its DELETE is sent, a torn intent was never acted on,
  and a torn outcome leaves its intent open, which recovery then resolves.
- Each line is written with one `os.write` of the whole line, and a batch of lines is
  made durable with one `fsync` (group commit). The file is created with mode 0600.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from retention.audit.chain import GENESIS_HASH, encode_line, seal
from retention.audit.events import EVENT_KEYS, OUTCOME_EVENTS, Event, OpenIntent
from retention.audit.history import HISTORY_RUNS, deleted_count
from retention.audit.reader import LineFormatError, iter_lines, parse_line
from retention.audit.resume import (
    MAX_AGENTS,
    ResumeIntent,
    ResumeMismatch,
    ResumePoint,
    check_against,
    last_line,
    read_resume,
    resume_path,
    write_resume,
)
from retention.audit.rotation import finish_pending, settle
from retention.audit.segments import CarriedIntent, RotationState, read_state, state_path
from retention.durable import fsync_dir, write_all
from retention.errors import AuditLogLocked, UserError
from retention.log import get_logger

_log = get_logger(__name__)

FILE_MODE: Final = 0o600
# How long a run waits for a lock someone holds before exit 6. A run holds its lock
# for its whole life; `audit verify` holds one for microseconds (see `run_holds_lock`).
LOCK_PATIENCE: Final = 0.5
_LOCK_POLL: Final = 0.02
_LOCK_BUSY: Final = (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)


class AuditLogError(UserError):
    """The audit log cannot be opened, or its content cannot be continued (exit 2)."""


class AuditWriteError(Exception):
    """Writing or syncing the audit log failed mid-run: no deletion may go on without it."""


@dataclass
class ScanResult:
    """What the start-up scan learnt: where the chain goes on, and what is unresolved."""

    lines: int = 0
    last_seq: int = 0
    last_hash: str = GENESIS_HASH
    open_intents: dict[str, OpenIntent] = field(default_factory=dict)
    last_event: str = ""
    signed: bool = False  # the log holds a checkpoint: a rotation must end on one
    # The safety belts' history: `deleted` of the latest execute runs' run_finished
    # lines, oldest first (bounded: HISTORY_RUNS).
    history: deque[int] = field(default_factory=lambda: deque(maxlen=HISTORY_RUNS))


def _account(
    result: ScanResult, number: int, seq: int, digest: str, event: str, record: Mapping[str, Any]
) -> None:
    """Line `number` (chained as `seq`, `digest`) is now the last: what it changes."""
    result.lines, result.last_seq, result.last_hash = number, seq, digest
    result.last_event = event
    result.signed = result.signed or event == Event.CHECKPOINT
    call_id = record.get("call_id")
    if event == Event.DELETE_REQUESTED and isinstance(call_id, str):
        result.open_intents[call_id] = OpenIntent(
            call_id,
            str(record.get("agent_id", "")),
            str(record.get("policy", "")),
            str(record.get("run_id", "")),
            number,
            str(record.get("ts", "")),
            seq,
        )
    elif event in OUTCOME_EVENTS and isinstance(call_id, str):
        result.open_intents.pop(call_id, None)
    elif event == Event.RUN_FINISHED and record.get("dry_run") is False:
        result.history.append(deleted_count(record))


def resolve_log(path: Path) -> Path:
    """The one name of the file `path` reaches: symlinks, `.` and `..` resolved."""
    return Path(os.path.realpath(path))


def lock_path(path: Path) -> Path:
    """The lock sidecar of the log `path` names: `<resolved log>.lock`."""
    resolved = resolve_log(path)
    return resolved.with_name(resolved.name + ".lock")


def torn_path(path: Path) -> Path:
    """Where a torn last line of the log `path` names is kept: `<resolved log>.torn`."""
    resolved = resolve_log(path)
    return resolved.with_name(resolved.name + ".torn")


def run_holds_lock(path: Path) -> bool:
    """Whether a run holds the lock of the log `path` names, right now.

    A probe: a shared `flock` taken and released at once on the log and on its sidecar
    (a run's exclusive lock refuses it). A run starting in that instant waits for it
    (`LOCK_PATIENCE`) instead of failing. Nothing is created.
    """
    resolved = resolve_log(path)
    for target in (resolved, lock_path(resolved)):
        try:
            fd = os.open(target, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno in _LOCK_BUSY:
                return True
        finally:
            os.close(fd)  # releases the probe's lock
    return False


def _flock_patiently(fd: int, deadline: float) -> bool:
    """An exclusive `flock` on `fd`; False when someone still holds it at `deadline`."""
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in _LOCK_BUSY or time.monotonic() >= deadline:
                if err.errno in _LOCK_BUSY:
                    return False
                raise
            time.sleep(_LOCK_POLL)
        else:
            return True


def _reason(err: OSError) -> str:
    return os.strerror(err.errno) if err.errno else type(err).__name__


class AuditLog:
    """An audit log opened for appending, under its lock. Use as a context manager."""

    def __init__(self, path: Path, *, patience: float = LOCK_PATIENCE) -> None:
        self.path = path
        self.patience = patience  # seconds to wait for a held lock before exit 6
        self.resolved = resolve_log(path)  # the file itself, whatever `path` spells
        self._lock_fd: int | None = None
        self._fd: int | None = None
        self.scan = ScanResult()
        self.state = RotationState()  # where the last rotation left the chain
        self.created = False
        self.resumed = False  # the start-up scan read only the tail after the resume point
        # Calls listed per agent by the latest runs (from the resume sidecar; a run adds
        # its own with `note_agent_calls`): the sizes an even sharding assigns by.
        self.agent_calls: dict[str, int] = {}
        self._scanned = False  # the scan is in memory: a resume point may be written
        self._write_failed = False

    @property
    def fd(self) -> int | None:
        """The open, locked descriptor of the live file (rotation reads and truncates it)."""
        return self._fd

    # -- opening -----------------------------------------------------------------

    def __enter__(self) -> AuditLog:
        self.open()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def open(self) -> ScanResult:
        """Take the locks, check the file, repair a torn tail, scan the log, open it."""
        try:
            self.resolved = resolve_log(self.path)
            self._refuse_symlink()
            deadline = time.monotonic() + self.patience
            self._acquire_lock(deadline)
            self._open_file(deadline)
            self._settle_rotation()
        except BaseException:
            self.close()
            raise
        return self.scan

    def _settle_rotation(self) -> None:
        """Continue from the last rotation; complete one a crash interrupted; then scan."""

        assert self._fd is not None
        self.state = read_state(state_path(self.resolved)) or RotationState()
        pending = settle(self.resolved, self._fd, self.state)
        self.scan = self._resume_or_scan()
        self._scanned = True
        if pending is not None:
            finish_pending(self, pending)

    def rescan(self) -> ScanResult:
        """Read the live file again (a rotation carries the intents open at its end)."""
        self.scan = self._scan()
        return self.scan

    def carried_intents(self) -> tuple[CarriedIntent, ...]:
        """The open intents, as the rotation state carries them to the next file."""
        return tuple(
            CarriedIntent(i.call_id, i.agent_id, i.policy, i.run_id, i.seq, i.ts)
            for i in self.scan.open_intents.values()
        )

    def rotated(self, state: RotationState) -> None:
        """The live file was closed as a segment and emptied: the chain goes on from `state`."""
        self.state = state
        self.scan = self._from_state()  # what a scan of the empty live file finds

    def note_agent_calls(self, counts: Mapping[str, int]) -> None:
        """This run's calls listed per agent, kept in the resume sidecar for sharding."""
        self.agent_calls.update(counts)
        while len(self.agent_calls) > MAX_AGENTS:  # the oldest entries go first
            del self.agent_calls[next(iter(self.agent_calls))]

    def _locked(self, what: Path) -> AuditLogLocked:
        return AuditLogLocked(
            f"another run holds the lock {what}; wait for it to finish "
            "(two runs must never append to one audit log at once)",
            where=str(self.path),
        )

    def _acquire_lock(self, deadline: float) -> None:
        sidecar = lock_path(self.resolved)
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(sidecar, flags, FILE_MODE)
        except OSError as err:
            raise AuditLogError(
                f"cannot open the lock file {sidecar} ({_reason(err)})", where="--audit-log"
            ) from None
        try:
            taken = _flock_patiently(fd, deadline)
        except OSError as err:
            os.close(fd)
            raise AuditLogError(
                f"cannot lock {sidecar} ({_reason(err)})", where="--audit-log"
            ) from None
        if not taken:
            os.close(fd)
            raise self._locked(sidecar)
        self._lock_fd = fd

    def _refuse_symlink(self) -> None:
        """A symlink is never used, nor locked; if a run holds its file, say that (exit 6)."""
        if not os.path.islink(self.path):
            return
        if run_holds_lock(self.resolved):  # a momentary probe a run's patience absorbs
            raise self._locked(self.resolved)
        raise AuditLogError(
            f"is a symlink (to {self.resolved}); point --audit-log at the real file: "
            "a link can be swapped under a running job",
            where=str(self.path),
        )

    def _open_file(self, deadline: float) -> None:
        # The resolved name, never following a link: one swapped in since is refused.
        path = self.resolved
        flags = os.O_RDWR | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            try:
                fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, FILE_MODE)
                self.created = True
            except FileExistsError:
                fd = os.open(path, flags)
        except IsADirectoryError:
            raise AuditLogError("is a directory, not an audit log", where=str(self.path)) from None
        except OSError as err:
            if err.errno == errno.ELOOP:
                raise AuditLogError(
                    f"{path} is a symlink; point --audit-log at the real file",
                    where=str(self.path),
                ) from None
            raise AuditLogError(
                f"cannot open the audit log for appending ({_reason(err)})", where=str(self.path)
            ) from None
        self._fd = fd
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise AuditLogError("is not a regular file", where=str(self.path))
        # The file's own lock: a hard link (another name, same inode) is excluded too.
        try:
            taken = _flock_patiently(fd, deadline)
        except OSError as err:
            raise AuditLogError(
                f"cannot lock the audit log ({_reason(err)})", where=str(self.path)
            ) from None
        if not taken:
            raise self._locked(path)
        if self.created:
            fsync_dir(path.parent)
        elif info.st_mode & 0o077:
            self._tighten(fd, stat.S_IMODE(info.st_mode))

    def _tighten(self, fd: int, mode: int) -> None:
        """Group or others may read the log: make it 0600, or refuse when not ours to."""
        try:
            os.fchmod(fd, FILE_MODE)
        except OSError as err:
            raise AuditLogError(
                f"group or others may read it (mode {mode:o}) and it cannot be tightened "
                f"({_reason(err)}); run `chmod 600 {self.resolved}` as its owner",
                where=str(self.path),
            ) from None
        _log.warning(
            "audit.permissions_tightened",
            path=str(self.path),
            mode_was=oct(mode),
            mode=oct(FILE_MODE),
            hint="the audit log was readable by group or others; it is now owner-only",
        )

    def _from_state(self) -> ScanResult:
        """Where the chain stands before the live file's first line: the rotation state."""
        state = self.state
        result = ScanResult(last_seq=state.last_seq, last_hash=state.last_hash, signed=state.signed)
        for carried in state.open_intents:
            result.open_intents[carried.call_id] = OpenIntent(
                carried.call_id,
                carried.agent_id,
                carried.policy,
                carried.run_id,
                0,
                carried.ts,
                carried.seq,
            )
        return result

    def _resume_or_scan(self) -> ScanResult:
        """From the resume point when it agrees with the file; else the full scan."""
        assert self._fd is not None
        sidecar = resume_path(self.resolved)
        try:
            point = read_resume(sidecar)
            if point is None:
                return self._scan()
            check_against(point, self._fd, self.state.segment, self.state.last_seq)
        except ResumeMismatch as err:
            _log.warning(
                "audit.resume_mismatch",
                path=str(sidecar),
                reason=str(err),
                hint="the whole audit log is read instead; the next run records a new point",
            )
            return self._scan()
        result = ScanResult(
            lines=point.lines,
            last_seq=point.last_seq,
            last_hash=point.last_hash,
            last_event=point.last_event,
            signed=point.signed,
        )
        result.history.extend(point.history)
        for i in point.open_intents:
            result.open_intents[i.call_id] = OpenIntent(
                i.call_id, i.agent_id, i.policy, i.run_id, i.line, i.ts, i.seq
            )
        self.agent_calls = dict(point.agent_calls)
        self.resumed = True
        return self._scan(result, point.offset)

    def _scan(self, result: ScanResult | None = None, start: int = 0) -> ScanResult:
        """Stream the file from byte `start` (`result`: what lies before it): last
        seq/hash, open intents, a torn tail."""
        assert self._fd is not None
        if result is None:
            result, start = self._from_state(), 0
        offset = start  # byte offset of the line being read
        first = result.lines  # lines before `start`
        # Read through the locked descriptor (a duplicate, from `start`): the same file.
        duplicate = os.dup(self._fd)
        os.lseek(duplicate, start, os.SEEK_SET)
        with os.fdopen(duplicate, "rb", buffering=1 << 20) as stream:
            for raw in iter_lines(stream):
                number = first + raw.number
                if raw.too_long:
                    raise self._damaged(number, "a line far too long to be an audit record")
                if not raw.complete:
                    self._cut_torn_tail(offset, raw.data, number)
                    break
                offset += len(raw.data)
                try:
                    record = parse_line(raw.data)
                except LineFormatError as err:
                    raise self._damaged(number, str(err)) from None
                self._take(result, number, record)
        return result

    def _take(self, result: ScanResult, number: int, record: Mapping[str, Any]) -> None:
        seq, digest, event = record.get("seq"), record.get("hash"), record.get("event")
        if type(seq) is not int or not isinstance(digest, str) or not isinstance(event, str):
            raise self._damaged(number, "the line has no valid `seq`, `hash` or `event`")
        if seq != result.last_seq + 1:
            raise self._damaged(number, f"seq {seq} does not follow {result.last_seq}")
        _account(result, number, seq, digest, event, record)

    def _damaged(self, number: int, detail: str) -> AuditLogError:
        return AuditLogError(
            f"line {number} cannot be continued: {detail}; "
            f"check it with `retention audit verify {self.path}`",
            where=str(self.path),
        )

    def _cut_torn_tail(self, offset: int, data: bytes, number: int) -> None:
        """Keep the torn fragment aside for forensics, then cut it off the log."""
        assert self._fd is not None
        aside = torn_path(self.resolved)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(aside, flags, FILE_MODE)
            try:
                write_all(fd, data + b"\n")
                os.fsync(fd)
            finally:
                os.close(fd)
            os.ftruncate(self._fd, offset)
            os.fsync(self._fd)
        except OSError as err:
            raise AuditLogError(
                f"line {number} is torn and could not be moved aside ({_reason(err)})",
                where=str(self.path),
            ) from None
        _log.warning(
            "audit.torn_line_moved",
            path=str(self.path),
            line=number,
            bytes=len(data),
            moved_to=str(aside),
            hint="a run died inside a write; the fragment was never a complete record",
        )

    # -- appending ---------------------------------------------------------------

    def seal_records(self, records: Iterable[Mapping[str, Any]]) -> list[bytes]:
        """Chain records onto the log (in memory): add `seq` and `hash`, encode the lines.

        The scan in memory follows, exactly as a scan of the written file would (open
        intents, history): the resume point written at the end is that scan.
        """
        lines: list[bytes] = []
        scan = self.scan
        for record in records:
            event = record.get("event")
            missing = [key for key in EVENT_KEYS.get(str(event), ()) if key not in record]
            if event not in EVENT_KEYS or missing:
                raise ValueError(f"bad audit record {event!r}: missing {missing}")
            sealed = seal(scan.last_hash, scan.last_seq + 1, record)
            _account(scan, scan.lines + 1, sealed["seq"], sealed["hash"], str(event), sealed)
            lines.append(encode_line(sealed))
        return lines

    def write_lines(self, lines: Iterable[bytes]) -> None:
        """Write each line with one `os.write`, then fsync once. Blocking: run in a thread."""
        if self._fd is None:
            raise AuditWriteError("the audit log is closed")
        try:
            for line in lines:
                write_all(self._fd, line)
            os.fsync(self._fd)
        except OSError as err:
            self._write_failed = True  # the file may hold less than was sealed
            raise AuditWriteError(f"cannot write {self.path}: {_reason(err)}") from None

    def append(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Seal and durably write records now (used outside the async writer)."""
        self.write_lines(self.seal_records(records))

    def save_resume_point(self) -> bool:
        """Record where the next start-up scan may pick up (under the lock).

        Only when the file's last line is the chain's last line in memory: a line sealed
        but never written (a failed or cancelled write) means no new point, and the old
        one, still a true description of a prefix, stays. Never fails the run: a point
        not written only costs the next run a full scan.
        """
        if self._fd is None or not self._scanned or self._write_failed:
            return False
        scan = self.scan
        try:
            info = os.fstat(self._fd)
            if info.st_size:
                tail = parse_line(last_line(self._fd, info.st_size))
                if (tail.get("seq"), tail.get("hash")) != (scan.last_seq, scan.last_hash):
                    return False
            elif scan.lines or scan.last_seq != self.state.last_seq:
                return False
            point = ResumePoint(
                device=info.st_dev,
                inode=info.st_ino,
                offset=info.st_size,
                mtime_ns=info.st_mtime_ns,
                segment=self.state.segment,
                lines=scan.lines,
                last_seq=scan.last_seq,
                last_hash=scan.last_hash,
                last_event=scan.last_event,
                signed=scan.signed,
                open_intents=tuple(
                    ResumeIntent(i.call_id, i.agent_id, i.policy, i.run_id, i.line, i.ts, i.seq)
                    for i in scan.open_intents.values()
                ),
                history=tuple(scan.history),
                agent_calls=self.agent_calls,
            )
            write_resume(resume_path(self.resolved), point)
        except (OSError, ResumeMismatch, LineFormatError) as err:
            _log.warning(
                "audit.resume_not_saved",
                path=str(resume_path(self.resolved)),
                error=str(err) if isinstance(err, ResumeMismatch) else type(err).__name__,
                hint="the next run reads the whole audit log instead",
            )
            return False
        return True

    def close(self) -> None:
        self.save_resume_point()
        for name in ("_fd", "_lock_fd"):  # the lock goes last
            fd = getattr(self, name)
            if fd is not None:
                setattr(self, name, None)
                os.close(fd)
