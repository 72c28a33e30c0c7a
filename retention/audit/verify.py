"""`retention audit verify`: prove an audit log intact, streaming it in flat memory.

One pass over the file recomputes the hash chain and checks every line. What is
kept while streaming is bounded by the work in flight, not by the file: counters,
one summary per run, and the `delete_requested` lines still waiting for an outcome.

Rules, in the order a line is checked:
1. it ends with a newline (else the file was truncated) and parses as one JSON object;
2. it carries `seq` and `hash`, `seq` is the previous line's plus one (a gap is a
   missing line; a repeat or step back is a reordered or inserted line), and `hash`
   chains from the previous line;
3. it carries `ts` (RFC 3339, UTC), `run_id`, a known `event` and that event's keys;
4. each `delete_requested` gets exactly one outcome: the next outcome line for the
   same call, in whatever run. A run killed between the two leaves the intent open
   and the next run writes the outcome under its own `run_id` at its start; that
   closes the intent. An outcome with no open intent (a second outcome, or a forged
   one), an outcome whose agent or policy differs from its intent's, and an intent
   still open at the end of the file are errors.
5. a `checkpoint` line covers the line before it (`covers_seq`, `covers_hash`) and,
   given public keys, is signed by one of them over its signed form (signing.py); a
   checkpoint by an unknown key, or whose signature does not hold, is an error;
6. given a witness, every witnessed `seq` is in the log with the witnessed `hash`;
   the first one missing (a log cut short) or different (a rebuilt log) is named.
A break in 1 or 2 stops the chain check (nothing after it can be trusted); the
file is still read to the end for its digest and line count. Errors of 3 and 4
leave the chain intact, so checking goes on and the earliest line is reported.

While a run holds the log's lock (probed before and, if the end of the file needs
it, after reading), the end of the file is still being written: intents still open
there are being settled by that run and a last line without its newline is being
written. Both are reported as in flight, never as a break.
"""

from __future__ import annotations

import bisect
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

from retention.audit.chain import GENESIS_HASH, chain_hash
from retention.audit.events import (
    EVENT_KEYS,
    OUTCOME_EVENTS,
    REDACTION_EVENTS,
    Event,
    OpenIntent,
)
from retention.audit.reader import (
    AuditFileError,
    LineFormatError,
    RawLine,
    iter_lines,
    parse_line,
)
from retention.audit.segments import (
    GZIP_ERRORS,
    LogFile,
    RotationState,
    drain,
    log_files,
    open_lines,
    read_state,
    state_path,
)
from retention.audit.signing import PublicKey, check_signature
from retention.audit.witness import Witnessed, read_witness
from retention.timestamps import as_utc

ProblemKind = Literal[
    "truncated",
    "bad_json",
    "missing_key",
    "bad_value",
    "seq",
    "hash",
    "unresolved_intent",
    "orphan_outcome",
    "intent_mismatch",
    "checkpoint",
    "witness",
    "segment",
]
_HEX64: Final = re.compile(r"[0-9a-f]{64}")
_ID_KEYS: Final = frozenset({"call_id", "agent_id", "policy"})


@dataclass(frozen=True, slots=True)
class Problem:
    line: int  # in `file` when one is named, else in the log
    kind: ProblemKind
    detail: str
    file: str = ""  # the segment or live file, when the log has segments
    at: int = 0  # the line's number through the whole log (orders problems)

    def __str__(self) -> str:
        where = f"{self.file} line {self.line}" if self.file else f"line {self.line}"
        return f"{where}: {self.detail}"


@dataclass(frozen=True, slots=True)
class FileSummary:
    """One file of a rotated log, as read: name, digest and size as stored, its lines."""

    path: Path
    segment: int | None
    sha256: str
    size: int
    lines: int


@dataclass(slots=True)
class RunSummary:
    run_id: str
    started_at: datetime | None = None
    finished_at: datetime | None = None
    dry_run: bool | None = None
    outcomes: Counter[str] = field(default_factory=Counter)


@dataclass(slots=True)
class KeyUse:
    """What one key signed: checkpoints from `first_seq` to `last_seq` (their own seq)."""

    key_id: str
    path: Path | None  # the --public-key file; None when not given (signature unchecked)
    checkpoints: int = 0
    first_seq: int = 0
    last_seq: int = 0


@dataclass(slots=True)
class LogSummary:
    """What one pass learnt about the file; `problem` is the earliest broken line."""

    path: Path
    sha256: str = ""
    size: int = 0
    lines: int = 0
    last_seq: int = 0
    last_hash: str = GENESIS_HASH
    runs: dict[str, RunSummary] = field(default_factory=dict)
    events: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    by_policy: dict[str, Counter[str]] = field(default_factory=dict)
    first_redacted_at: datetime | None = None
    last_redacted_at: datetime | None = None
    problem: Problem | None = None
    problems: int = 0
    run_holds_lock: bool = False  # a live run was appending while the file was read
    in_flight: int = 0  # intents open at the end that the live run is still settling
    writing_line: bool = False  # the last line was still being written by the live run
    checkpoints: int = 0
    signatures_checked: bool = False  # public keys were given
    signed_by: dict[str, KeyUse] = field(default_factory=dict)
    last_checkpoint_seq: int = 0  # seq of the last checkpoint line that held
    witness: Path | None = None
    witnessed: int = 0  # checkpoints in the witness
    witness_found: int = 0  # of them, found in the log with their hash
    files: list[FileSummary] = field(default_factory=list)  # with segments: each file read

    @property
    def uncovered(self) -> int:
        """Lines after the last checkpoint: no signature covers them yet."""
        return self.last_seq - self.last_checkpoint_seq

    @property
    def intact(self) -> bool:
        return self.problem is None

    @property
    def redactions(self) -> int:
        return sum(self.outcomes[event] for event in REDACTION_EVENTS)


def parse_instant(value: object) -> datetime | None:
    """An RFC 3339 timestamp as an aware UTC datetime (no offset: UTC, as the API's
    own offset-less values are read everywhere else); else None."""
    if not isinstance(value, str) or "T" not in value.upper():
        return None
    try:
        instant = datetime.fromisoformat(value)
    except ValueError:
        return None
    # `redacted_at` is logged verbatim from the API; the proof reads it the same way.
    return as_utc(instant).astimezone(UTC)


def _utc_instant(value: object) -> datetime | None:
    """`value` as an instant if it is RFC 3339 with a zero offset (the log's `ts`)."""
    instant = parse_instant(value)
    if instant is None or not str(value).upper().endswith(("Z", "+00:00")):
        return None
    return instant


def _dry_run_flag(line: dict[str, Any]) -> bool | None:
    # The flag may sit at the top level or among the recorded options.
    for holder in (line, line.get("options")):
        if isinstance(holder, dict):
            flag = holder.get("dry_run")
            if isinstance(flag, bool):
                return flag
            execute = holder.get("execute")
            if isinstance(execute, bool):
                return not execute
    return None


class Verifier:
    """Feed it the file's lines in order, then call `finish()`."""

    def __init__(
        self,
        path: Path,
        *,
        keys: Mapping[str, PublicKey] | None = None,
        witness: Sequence[Witnessed] = (),
        witness_dir: Path | None = None,
    ) -> None:
        self.summary = LogSummary(path=path, signatures_checked=keys is not None)
        self.summary.witness = witness_dir
        self.summary.witnessed = len(witness)
        self._keys = keys
        self._witness = witness
        self._next_witnessed = 0  # index of the next witnessed checkpoint to meet
        self._hash_before = GENESIS_HASH  # the hash the last linked line chained from
        self._previous_hash = GENESIS_HASH
        self._halted = False
        self._open: dict[str, OpenIntent] = {}  # call_id -> intent; bounded by work in flight
        self._unfinished_line: int | None = None  # a last line without its newline
        # Files of a rotated log: (lines before it, its name), one entry per file.
        self._starts: list[tuple[int, str]] = []
        self._segmented = False
        self._file_first_line = 1
        self._previous_segment: int | None = None
        self._expected_state: RotationState | None = None

    def expect_state(self, state: RotationState) -> None:
        """The chain must pass through the rotation state's last `seq` and `hash`."""
        self._expected_state = state

    def begin_file(self, item: LogFile, lines_before: int, *, segmented: bool) -> None:
        """The next file of the log starts after `lines_before` lines."""
        self._segmented = segmented
        self._starts.append((lines_before, item.label))
        self._file_first_line = lines_before + 1
        number, before = item.number, self._previous_segment
        if number is not None and before is not None and number != before + 1:
            missing = item.path.name.replace(f".{number:06d}.gz", f".{before + 1:06d}.gz")
            self._halt(
                lines_before + 1,
                "segment",
                f"segment {missing} is missing: segment {before:06d} is followed by {number:06d}",
            )
        if number is not None:
            self._previous_segment = number

    def damaged_file(self, item: LogFile, lines_read: int, error: BaseException) -> None:
        """A segment's compressed stream cannot be read (altered, or cut short)."""
        reason = str(error) or type(error).__name__
        self._halt(
            lines_read + 1,
            "segment",
            f"the compressed segment is damaged ({reason}): it was altered or cut short",
        )

    def _where(self, line: int) -> tuple[str, int]:
        """(file name, line in it) of a line numbered through the whole log."""
        if not self._segmented or not self._starts:
            return "", line
        index = bisect.bisect_right(self._starts, line, key=lambda start: start[0] + 1) - 1
        before, name = self._starts[max(index, 0)]
        return name, line - before

    @property
    def open_intents(self) -> int:
        return len(self._open)

    @property
    def tail_pending(self) -> bool:
        """Whether the end of the file reads differently if a run is still writing it."""
        return self._unfinished_line is not None or (not self._halted and bool(self._open))

    def _report(self, line: int, kind: ProblemKind, detail: str) -> None:
        summary = self.summary
        summary.problems += 1
        if summary.problem is None or line < summary.problem.at:
            name, local = self._where(line)
            summary.problem = Problem(local, kind, detail, name, line)

    def _halt(self, line: int, kind: ProblemKind, detail: str) -> None:
        self._report(line, kind, detail)
        self._halted = True

    def feed(self, raw: RawLine) -> None:
        self.summary.lines = raw.number
        if self._halted:
            return
        if raw.too_long:
            self._halt(raw.number, "bad_json", "line too long to be an audit record")
            return
        if not raw.complete:  # always the last line; `finish` decides what it means
            self._unfinished_line = raw.number
            self._halted = True
            return
        try:
            record = parse_line(raw.data)
        except LineFormatError as err:
            self._halt(raw.number, "bad_json", str(err))
            return
        if self._link(raw.number, record):
            self._check_record(raw.number, record)

    def _link(self, number: int, record: dict[str, Any]) -> bool:
        """Check `seq` and `hash` against the previous line; False when the chain breaks."""
        seq, recorded = record.get("seq"), record.get("hash")
        if seq is None or recorded is None:
            missing = "seq" if seq is None else "hash"
            self._halt(number, "missing_key", f"missing key {missing!r}")
            return False
        if type(seq) is not int or not isinstance(recorded, str) or not _HEX64.fullmatch(recorded):
            self._halt(number, "bad_value", "`seq` must be an integer and `hash` 64 hex digits")
            return False
        expected = self.summary.last_seq + 1
        boundary = self._segmented and number == self._file_first_line
        if seq != expected and boundary:
            name, _ = self._where(number)
            self._halt(
                number,
                "segment",
                f"{name} starts at seq {seq}, but the chain expects seq {expected}: "
                "a segment is missing or out of order",
            )
            return False
        if seq != expected:
            if seq > expected:
                gone = seq - expected
                what = "a line is missing" if gone == 1 else f"{gone} lines are missing"
                detail = f"seq gap: expected {expected}, found {seq} ({what})"
            else:
                detail = (
                    f"seq out of order: expected {expected}, found {seq} "
                    "(a reordered or inserted line)"
                )
            self._halt(number, "seq", detail)
            return False
        if chain_hash(self._previous_hash, record) != recorded:
            detail = "hash mismatch: the line was altered, or the one before it"
            if boundary and number > 1:
                detail = (
                    "hash mismatch: the file's first line does not chain from the previous "
                    "file's last line (a segment replaced, or this line altered)"
                )
            self._halt(number, "hash", detail)
            return False
        state = self._expected_state
        if state is not None and seq == state.last_seq and recorded != state.last_hash:
            self._halt(
                number,
                "segment",
                f"seq {seq} has another hash than the rotation state records for the end "
                f"of segment {state.segment:06d}: a segment was replaced",
            )
            return False
        self._hash_before = self._previous_hash
        self._previous_hash = recorded
        self._meet_witness(number, seq, recorded)
        self.summary.last_seq = seq
        self.summary.last_hash = recorded
        return True

    def _check_record(self, number: int, record: dict[str, Any]) -> None:
        for key in ("ts", "run_id", "event"):
            if key not in record:
                self._report(number, "missing_key", f"missing key {key!r}")
                return
        event, run_id, ts = record["event"], record["run_id"], record["ts"]
        if not isinstance(event, str) or event not in EVENT_KEYS:
            self._report(number, "bad_value", "`event` is not one of the audit events")
            return
        if not isinstance(run_id, str) or not run_id:
            self._report(number, "bad_value", "`run_id` must be a non-empty string")
            return
        instant = _utc_instant(ts)
        if instant is None:
            self._report(number, "bad_value", "`ts` is not an RFC 3339 UTC timestamp")
            return
        missing = [key for key in EVENT_KEYS[event] if key not in record]
        if missing:
            self._report(number, "missing_key", f"{event} line is missing key {missing[0]!r}")
            if not _ID_KEYS.isdisjoint(missing):
                return  # without its ids the line cannot answer an intent
        self.summary.events[event] += 1
        run = self.summary.runs.get(run_id)
        if run is None:
            run = self.summary.runs[run_id] = RunSummary(run_id)
        if event == Event.RUN_STARTED:
            run.started_at = instant
            run.dry_run = _dry_run_flag(record)
        elif event == Event.RUN_FINISHED:
            run.finished_at = instant
        elif event == Event.DELETE_REQUESTED:
            self._intent(number, record)
        elif event in OUTCOME_EVENTS:
            self._outcome(number, event, record, run)
        elif event == Event.CHECKPOINT and not missing:
            self._checkpoint(number, record)

    def _checkpoint(self, number: int, record: dict[str, Any]) -> None:
        summary = self.summary
        seq, key_id = record["seq"], record["key"]
        if (record["covers_seq"], record["covers_hash"]) != (seq - 1, self._hash_before):
            self._report(number, "checkpoint", "checkpoint does not cover the line before it")
            return
        if not isinstance(key_id, str):
            self._report(number, "checkpoint", "checkpoint `key` is not a fingerprint")
            return
        known: PublicKey | None = None
        if self._keys is not None:
            known = self._keys.get(key_id)
            if known is None:
                self._report(
                    number,
                    "checkpoint",
                    f"checkpoint signed by an unknown key {key_id[:16]}… "
                    "(not one of the --public-key files)",
                )
                return
            if not check_signature(record, known.key):
                self._report(
                    number,
                    "checkpoint",
                    f"forged checkpoint: its signature is not key {key_id[:16]}…'s "
                    "over this line (the line, or the chain before it, was rewritten)",
                )
                return
        use = summary.signed_by.get(key_id)
        if use is None:
            use = summary.signed_by[key_id] = KeyUse(key_id, known.path if known else None)
            use.first_seq = seq
        use.checkpoints += 1
        use.last_seq = seq
        summary.checkpoints += 1
        summary.last_checkpoint_seq = seq

    def _meet_witness(self, number: int, seq: int, recorded: str) -> None:
        """Compare a linked line with the witnessed checkpoint of its seq, if any."""
        witness = self._witness
        index = self._next_witnessed
        while index < len(witness) and witness[index].seq < seq:
            index += 1  # cannot happen in one file whose seq starts at 1; kept safe
        self._next_witnessed = index
        if index < len(witness) and witness[index].seq == seq:
            self._next_witnessed += 1
            if witness[index].hash == recorded:
                self.summary.witness_found += 1
            else:
                self._halt(
                    number,
                    "witness",
                    f"witnessed checkpoint seq {seq} ({witness[index].path.name}) has another "
                    "hash here: the log was rebuilt after an edit",
                )

    def _ids(self, number: int, record: dict[str, Any]) -> tuple[str, str, str] | None:
        ids = record["call_id"], record["agent_id"], record["policy"]
        if not all(isinstance(value, str) and value for value in ids):
            self._report(number, "bad_value", "`call_id`, `agent_id` and `policy` must be text")
            return None
        return ids

    def _intent(self, number: int, record: dict[str, Any]) -> None:
        ids = self._ids(number, record)
        if ids is None:
            return
        call_id, agent_id, policy = ids
        earlier = self._open.pop(call_id, None)
        if earlier is not None:
            self._report(
                earlier.line,
                "unresolved_intent",
                f"delete_requested for call {call_id} has no outcome before the next "
                f"delete_requested for it at line {number}",
            )
        self._open[call_id] = OpenIntent(
            call_id, agent_id, policy, str(record.get("run_id", "")), number
        )

    def _outcome(self, number: int, event: str, record: dict[str, Any], run: RunSummary) -> None:
        ids = self._ids(number, record)
        if ids is None:
            return
        call_id, agent_id, policy = ids
        intent = self._open.pop(call_id, None)
        if intent is None:
            self._report(
                number,
                "orphan_outcome",
                f"{event} for call {call_id} answers no open delete_requested "
                "(a second outcome, or a line not written by a run)",
            )
            return
        if (intent.agent_id, intent.policy) != (agent_id, policy):
            self._report(
                number,
                "intent_mismatch",
                f"{event} for call {call_id} names another agent or policy than its "
                f"delete_requested at line {intent.line}",
            )
        if event in REDACTION_EVENTS and "redacted_at" in record:
            redacted_at = parse_instant(record["redacted_at"])
            if redacted_at is None:
                self._report(number, "bad_value", "`redacted_at` is not an RFC 3339 timestamp")
                return
            summary = self.summary
            if summary.first_redacted_at is None or redacted_at < summary.first_redacted_at:
                summary.first_redacted_at = redacted_at
            if summary.last_redacted_at is None or redacted_at > summary.last_redacted_at:
                summary.last_redacted_at = redacted_at
        elif event == Event.FAILED and not isinstance(record.get("error", ""), str):
            self._report(number, "bad_value", "`error` must be text")
        self.summary.outcomes[event] += 1
        self.summary.by_policy.setdefault(policy, Counter())[event] += 1
        run.outcomes[event] += 1

    def finish(self, *, sha256: str, size: int, run_holds_lock: bool = False) -> LogSummary:
        """End of file. With `run_holds_lock`, its end is in flight, not broken."""
        summary = self.summary
        summary.sha256, summary.size = sha256, size
        summary.run_holds_lock = run_holds_lock
        if self._unfinished_line is not None:
            if run_holds_lock:
                summary.writing_line = True
            else:
                self._report(
                    self._unfinished_line, "truncated", "truncated: the last line has no newline"
                )
        if run_holds_lock:
            # Open intents at the end: the live run writes their outcomes (or, for a
            # killed run's intents, its recovery does). Any break before stays a break.
            summary.in_flight = len(self._open) if self._unfinished_line is None else 0
            return summary
        state = self._expected_state
        if not self._halted and state is not None and summary.last_seq < state.last_seq:
            self._report(
                summary.lines + 1,
                "segment",
                f"the rotation state records segment {state.segment:06d} ending at seq "
                f"{state.last_seq}, but the files end at seq {summary.last_seq}: "
                "a segment is missing",
            )
        if not self._halted and self._next_witnessed < len(self._witness):
            missing = self._witness[self._next_witnessed]
            self._report(
                summary.lines + 1,
                "witness",
                f"witnessed checkpoint seq {missing.seq} ({missing.path.name}) is missing: "
                f"the log ends at seq {summary.last_seq}, it was cut short",
            )
        # After a chain break the rest is unread, so open intents prove nothing.
        if not self._halted and self._open:
            call_id, first = next(iter(self._open.items()))
            others = len(self._open) - 1
            more = f" ({others} more open intents)" if others else ""
            self._report(
                first.line,
                "unresolved_intent",
                f"unresolved intent: delete_requested for call {call_id} has no outcome{more}; "
                "if its run was stopped, the next `retention run` asks the API and records it",
            )
            self.summary.problems += others
        return self.summary


def _no_run(_path: Path) -> bool:
    """No run is appending: the file is read as final."""
    return False


def verify_log(
    paths: Path | Sequence[Path],
    *,
    lock_probe: Callable[[Path], bool] = _no_run,
    keys: Mapping[str, PublicKey] | None = None,
    witness_dir: Path | None = None,
) -> LogSummary:
    """Stream the log and return what it proves (raises AuditFileError if unreadable).

    `paths` is the live file (its segments beside it come along), or any mix of
    directories, segments and the live file (`segments.log_files`): they are read in
    chain order as one log. `lock_probe(path)` tells whether a run holds the live
    file's lock (the command passes `retention.audit.writer.run_holds_lock`); it is asked
    before reading, and after if the end of the file needs it. The default says no run
    ever does. A rotation while the files are read changes the list of files: then
    they are read again.
    """
    given = [paths] if isinstance(paths, Path) else list(paths)
    # The witness first: a run writes a checkpoint to the log before the witness.
    witness = read_witness(witness_dir) if witness_dir is not None else []
    summary: LogSummary | None = None
    for _attempt in range(ROTATION_RETRIES):
        files = log_files(given)
        summary = _verify_files(files, lock_probe, keys, witness, witness_dir)
        if log_files(given) == files:
            break
    assert summary is not None
    return summary


ROTATION_RETRIES: Final = 3


def _verify_files(
    files: Sequence[LogFile],
    lock_probe: Callable[[Path], bool],
    keys: Mapping[str, PublicKey] | None,
    witness: Sequence[Witnessed],
    witness_dir: Path | None,
) -> LogSummary:
    live = next((item.path for item in files if not item.is_segment), None)
    path = live if live is not None else files[-1].path
    segmented = any(item.is_segment for item in files)
    running = live is not None and lock_probe(live)
    verifier = Verifier(path, keys=keys, witness=witness, witness_dir=witness_dir)
    state = read_state(state_path(live)) if live is not None else None
    if state is not None and state.segment > 0:
        verifier.expect_state(state)
    lines_before = 0
    sha256, size = "", 0
    for item in files:
        verifier.begin_file(item, lines_before, segmented=segmented)
        with open_lines(item) as opened:
            number = 0
            try:
                for raw in iter_lines(opened.lines):
                    number = raw.number
                    verifier.feed(RawLine(lines_before + number, raw.data, raw.too_long))
            except GZIP_ERRORS as err:
                verifier.damaged_file(item, lines_before + number, err)
                drain(opened)
            except OSError as err:
                raise AuditFileError(
                    f"read failed after line {number} ({type(err).__name__})",
                    where=str(item.path),
                ) from None
            lines_before += number
            sha256, size = opened.digest(), opened.size()
            if segmented:
                verifier.summary.files.append(
                    FileSummary(item.path, item.number, sha256, size, number)
                )
    # A run that started while the file was read: its tail is in flight too.
    running = running or (live is not None and verifier.tail_pending and lock_probe(live))
    return verifier.finish(sha256=sha256, size=size, run_holds_lock=running)
