"""What an erasure certificate says about one sweep policy, gathered from a verified log.

`retention audit certificate` first verifies the log (verify.py); a broken log gives no
certificate. A second streaming pass, read here, gathers what the log says about the
policy: the runs that applied it, each erased call (spooled row by row to a temporary
file, never held in memory), each run's counts for it (calls due, outcomes, calls held
by a retention rule), intents still open at the end, and the first checkpoint after the
policy's last line. Kept is bounded by runs and policies, never by calls, except the
open intents, which are bounded by a run's work in flight.

The log holds no line for a call a retention rule kept, only the run's counts (by
deletion policy and retention policy): held calls are counted, never listed.
"""

from __future__ import annotations

import difflib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

from retention.audit.events import OUTCOME_EVENTS, REDACTION_EVENTS, Event, Outcome
from retention.audit.reader import LineFormatError, parse_line
from retention.audit.segments import iter_log_lines
from retention.errors import UserError

# Far more than any policy set; only a damaged log could name more (bounded memory).
MAX_NAMES: Final = 10_000
OPEN_INTENTS_LISTED: Final = 100

# Why a due call of an execute run was not erased: its outcome, or never sent.
UNSETTLED: Final = (Outcome.FAILED, Outcome.UNCONFIRMED)
NOT_ATTEMPTED: Final = "not_attempted"


class UnknownPolicy(UserError):
    """The log never names the policy asked for (exit 2)."""


@dataclass(slots=True)
class SweepRun:
    """One run that applied the policy: from its run_started, its lines and run_finished."""

    run_id: str
    seq: int  # its first line
    started_at: str | None = None
    finished_at: str | None = None
    dry_run: bool | None = None
    exit_code: int | None = None
    stopped_by: str | None = None
    policy_files: list[dict[str, str]] = field(default_factory=list)  # path, sha256
    names_recorded: bool = False  # run_started says which file holds which policy
    applied: bool = False
    counts: dict[str, int] | None = None  # run_finished: due and outcomes for the policy
    held_by: dict[str, int] | None = None  # run_finished: retention policy -> calls held
    logged: Counter[str] = field(default_factory=Counter)  # outcome lines it wrote

    def pending(self) -> dict[str, int] | None:
        """Due calls this run did not erase, by why; None without its counts."""
        if self.counts is None or self.dry_run:
            return None
        counts = self.counts
        due = counts.get("due", 0)
        outcomes = sum(value for key, value in counts.items() if key != "due")
        return {
            **{outcome.value: counts.get(outcome, 0) for outcome in UNSETTLED},
            NOT_ATTEMPTED: max(0, due - outcomes),
        }


@dataclass(frozen=True, slots=True)
class CoveringCheckpoint:
    seq: int
    covers_seq: int
    covers_hash: str
    key: str
    run_id: str
    ts: str


@dataclass(slots=True)
class SweepFacts:
    """Everything the certificate states, but the erased rows (in `spool`)."""

    policy: str
    runs: list[SweepRun] = field(default_factory=list)
    erased: int = 0
    erased_by_event: Counter[str] = field(default_factory=Counter)
    first_redacted_at: str | None = None
    last_redacted_at: str | None = None
    not_found: int = 0
    open_intents: dict[str, int] = field(default_factory=dict)  # call id -> its seq
    last_line_seq: int = 0  # the last line about the policy
    covering: CoveringCheckpoint | None = None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _names_in_files(record: dict[str, Any]) -> tuple[list[dict[str, Any]], bool]:
    files = record.get("policies")
    if not isinstance(files, list):
        return [], False
    entries = [entry for entry in files if isinstance(entry, dict)]
    return entries, bool(entries) and all(isinstance(e.get("names"), list) for e in entries)


class SweepReader:
    """Feed it the verified log's records in order; rows of erased calls go to `spool`."""

    def __init__(self, policy: str, spool: IO[str]) -> None:
        self.facts = SweepFacts(policy)
        self._spool = spool
        self._runs: dict[str, SweepRun] = {}
        self.known: set[str] = set()  # every policy name the log mentions, for did-you-mean

    def _know(self, names: Any) -> None:
        for name in names:
            if isinstance(name, str) and len(self.known) < MAX_NAMES:
                self.known.add(name)

    def _run(self, run_id: str, seq: int) -> SweepRun:
        run = self._runs.get(run_id)
        if run is None:
            run = self._runs[run_id] = SweepRun(run_id, seq)
        return run

    def _touch(self, run: SweepRun, seq: int) -> None:
        """A line about the policy: its run applied it, and no checkpoint covers it yet."""
        if not run.applied:
            run.applied = True
            self.facts.runs.append(run)
        self.facts.last_line_seq = seq
        self.facts.covering = None

    def feed(self, record: dict[str, Any]) -> None:
        event, seq, run_id = record.get("event"), record.get("seq"), record.get("run_id")
        if not isinstance(seq, int) or not isinstance(run_id, str):
            return  # the verifier has already judged the line
        if event == Event.RUN_STARTED:
            self._started(self._run(run_id, seq), seq, record)
        elif event == Event.RUN_FINISHED:
            self._finished(self._run(run_id, seq), seq, record)
        elif event == Event.CHECKPOINT:
            self._checkpoint(seq, record)
        elif event == Event.DELETE_REQUESTED or event in OUTCOME_EVENTS:
            self._call_line(self._run(run_id, seq), str(event), seq, record)

    def _started(self, run: SweepRun, seq: int, record: dict[str, Any]) -> None:
        entries, named = _names_in_files(record)
        run.started_at = _text(record.get("ts"))
        dry_run = record.get("dry_run")
        run.dry_run = dry_run if isinstance(dry_run, bool) else None
        run.names_recorded = named
        policy = self.facts.policy
        for entry in entries:
            names = entry.get("names") if named else None
            if isinstance(names, list):
                self._know(names)
            if names is None or policy in names:
                path, digest = entry.get("path"), entry.get("sha256")
                run.policy_files.append({"path": str(path), "sha256": str(digest)})
        if named and run.policy_files:
            self._touch(run, seq)

    def _finished(self, run: SweepRun, seq: int, record: dict[str, Any]) -> None:
        run.finished_at = _text(record.get("ts"))
        code = record.get("exit_code")
        run.exit_code = code if type(code) is int else None
        run.stopped_by = _text(record.get("stopped_by"))
        counts = record.get("counts")
        if not isinstance(counts, dict):
            return
        by_policy, held = counts.get("by_policy"), counts.get("held_by")
        policy = self.facts.policy
        if isinstance(by_policy, dict):
            self._know(by_policy)
            mine = by_policy.get(policy)
            if isinstance(mine, dict):
                run.counts = {k: v for k, v in mine.items() if type(v) is int}
        if isinstance(held, dict):
            self._know(held)
            for holders in held.values():
                if isinstance(holders, dict):
                    self._know(holders)
            mine = held.get(policy)
            if isinstance(mine, dict):
                run.held_by = {k: v for k, v in sorted(mine.items()) if type(v) is int}
        if run.applied or run.counts is not None or run.held_by is not None:
            self._touch(run, seq)

    def _checkpoint(self, seq: int, record: dict[str, Any]) -> None:
        facts = self.facts
        if facts.covering is not None or not facts.last_line_seq:
            return
        covers = record.get("covers_seq")
        if type(covers) is int and covers >= facts.last_line_seq:
            facts.covering = CoveringCheckpoint(
                seq,
                covers,
                str(record.get("covers_hash")),
                str(record.get("key")),
                str(record.get("run_id")),
                str(record.get("ts")),
            )

    def _call_line(self, run: SweepRun, event: str, seq: int, record: dict[str, Any]) -> None:
        policy = record.get("policy")
        if isinstance(policy, str) and len(self.known) < MAX_NAMES:
            self.known.add(policy)
        if policy != self.facts.policy:
            return
        facts = self.facts
        self._touch(run, seq)
        call_id = str(record.get("call_id"))
        if event == Event.DELETE_REQUESTED:
            facts.open_intents[call_id] = seq
            return
        facts.open_intents.pop(call_id, None)
        run.logged[event] += 1
        if event == Event.NOT_FOUND:
            facts.not_found += 1
        elif event in REDACTION_EVENTS:
            self._erased(run, event, seq, call_id, record)

    def _erased(
        self, run: SweepRun, event: str, seq: int, call_id: str, record: dict[str, Any]
    ) -> None:
        facts = self.facts
        redacted_at = str(record.get("redacted_at"))
        facts.erased += 1
        facts.erased_by_event[event] += 1
        if facts.first_redacted_at is None or redacted_at < facts.first_redacted_at:
            facts.first_redacted_at = redacted_at
        if facts.last_redacted_at is None or redacted_at > facts.last_redacted_at:
            facts.last_redacted_at = redacted_at
        row = {
            "seq": seq,
            "call_id": call_id,
            "agent_id": str(record.get("agent_id")),
            "event": event,
            "redacted_at": redacted_at,
            "run_id": run.run_id,
        }
        self._spool.write(json.dumps(row, separators=(",", ":")) + "\n")


def read_sweep(path: Path, policy: str, *, max_lines: int, spool: IO[str]) -> SweepFacts:
    """Stream the first `max_lines` lines of the (verified) log; UnknownPolicy when the
    log never names `policy`."""
    reader = SweepReader(policy, spool)
    # The log's segments too, numbered through the whole log as verify numbered them.
    for raw in iter_log_lines(path):
        if raw.number > max_lines:
            break  # lines a live run appended after the verified pass
        if not raw.complete:
            continue
        try:
            reader.feed(parse_line(raw.data))
        except LineFormatError:
            continue
    if policy not in reader.known:
        raise UnknownPolicy(_unknown(policy, reader.known), where=f"--policy {policy}")
    spool.flush()
    return reader.facts


def _unknown(policy: str, known: set[str]) -> str:
    close = difflib.get_close_matches(policy, sorted(known), n=1)
    if close:
        return f"the audit log never names this policy; did you mean {close[0]!r}?"
    if not known:
        return "the audit log names no policy at all"
    listed = ", ".join(sorted(known)[:8])
    more = f" and {len(known) - 8} more" if len(known) > 8 else ""
    return f"the audit log never names this policy; it names {listed}{more}"
