"""`retention audit report LOG --html FILE`: everything the audit log holds, for people.

One pass over the log (its segments, then the live file) through the same reader as
`audit verify`, a line read, counted and dropped, into bounded tallies: the last
`MAX_RUNS` runs one by one (older ones added up in one row), deletions per day by
policy for the last `MAX_DAYS` days (older days added up in one row), outcomes by
policy (at most `MAX_POLICIES` policies, then "other policies"), failures by cause
(at most `MAX_CAUSES`, then "other"). So a log of millions of lines costs the memory
of one, and its page stays the same size however long the log grows.

The page reads the log; it does not prove it. `retention audit verify` does that.
The page is rendered by templates/audit_log_report.html with autoescaping on
(retention/html.py), so every value from the log renders as text; call ids,
agent ids and the API's URL never reach the page.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from retention import __version__
from retention.audit.events import (
    LOGGED_OUTCOMES,
    MAX_CAUSES,
    OTHER_CAUSE,
    OUTCOME_EVENTS,
    Event,
    RunMode,
)
from retention.audit.paths import check_outputs
from retention.audit.reader import LineFormatError, parse_line
from retention.audit.segments import iter_log_lines, log_files
from retention.audit.writer import run_holds_lock
from retention.errors import UserError
from retention.html import STOP_WORDS, Cell, Code, Column, Figure, Table, bar_chart, render
from retention.timestamps import rfc3339

MAX_RUNS: Final = 200  # runs listed one per row; earlier ones share one row
MAX_DAYS: Final = 366  # days listed one per row; earlier ones share one row
MAX_POLICIES: Final = 50  # policies named; any further one counts as OTHER_POLICIES
MAX_POLICY_FILES: Final = 50  # (file, digest) pairs listed
CHART_RUNS: Final = 31  # the runs chart shows the last ones (the table has them all)
CHART_DAYS: Final = 31
EARLIER: Final = "earlier"
OTHER_POLICIES: Final = "other policies"
UNFINISHED: Final = "no run_finished line (killed, or still running)"
OUTCOMES: Final = tuple(str(event) for event in LOGGED_OUTCOMES)
MODES: Final = frozenset(RunMode)
HTML_SUFFIXES: Final = (".html", ".htm")


class ReportPathError(UserError):
    """`--html` cannot be written (exit 2)."""


@dataclass(slots=True)
class RunRow:
    """One run as the log tells it."""

    run_id: str
    started: str | None = None  # the run_started line's ts
    finished: str | None = None  # the run_finished line's ts
    mode: str = "unknown"
    shard: str | None = None
    exit_code: int | None = None
    stopped_by: str | None = None
    deleted: int = 0
    failed: int = 0

    @property
    def stopped_early(self) -> bool:
        return self.stopped_by is not None or self.finished is None


@dataclass(slots=True)
class EarlierRuns:
    """The runs that left the window, added up."""

    runs: int = 0
    deleted: int = 0
    failed: int = 0


@dataclass(slots=True)
class PolicyFile:
    runs: int = 0
    first: str = ""
    last: str = ""


@dataclass(slots=True)
class LogTally:
    """Everything the page shows, in memory bounded by the MAX_* constants."""

    lines: int = 0
    unreadable: int = 0  # not one JSON object with a text `event` (`audit verify` says why)
    first_ts: str | None = None
    last_ts: str | None = None
    events: Counter[str] = field(default_factory=Counter)
    runs: dict[str, RunRow] = field(default_factory=dict)  # the last MAX_RUNS, in log order
    earlier: EarlierRuns = field(default_factory=EarlierRuns)
    all_runs: int = 0
    modes: Counter[str] = field(default_factory=Counter)
    stops: Counter[str] = field(default_factory=Counter)  # stopped_by (or UNFINISHED) -> runs
    days: dict[str, Counter[str]] = field(default_factory=dict)  # day -> policy -> deleted
    earlier_days: Counter[str] = field(default_factory=Counter)
    earlier_day_count: int = 0
    by_policy: dict[str, Counter[str]] = field(default_factory=dict)  # policy -> outcome
    failures: Counter[str] = field(default_factory=Counter)  # cause -> failed lines
    policy_files: dict[tuple[str, str], PolicyFile] = field(default_factory=dict)

    def take(self, record: dict[str, Any]) -> None:
        event, run_id, ts = record.get("event"), record.get("run_id"), record.get("ts")
        if not isinstance(event, str) or not isinstance(run_id, str) or not isinstance(ts, str):
            self.unreadable += 1
            return
        day = _day(ts)
        if day is None:
            self.unreadable += 1
            return
        self.first_ts = self.first_ts or ts
        self.last_ts = ts
        self.events[event] += 1
        run = self._run(run_id)
        if event == Event.RUN_STARTED:
            self._started(run, record, ts)
        elif event == Event.RUN_FINISHED:
            self._finished(run, record, ts)
        elif event in OUTCOME_EVENTS:
            policy = self._policy(record.get("policy"))
            self.by_policy.setdefault(policy, Counter())[event] += 1
            if event == Event.DELETED:
                run.deleted += 1
                self._deleted_on(day, policy)
            elif event == Event.FAILED:
                run.failed += 1
                self._failure(record.get("error"))

    def _run(self, run_id: str) -> RunRow:
        run = self.runs.get(run_id)
        if run is None:
            run = self.runs[run_id] = RunRow(run_id)
            self.all_runs += 1
            if len(self.runs) > MAX_RUNS:
                self._retire(self.runs.pop(next(iter(self.runs))))
        return run

    def _retire(self, run: RunRow) -> None:
        self.earlier.runs += 1
        self.earlier.deleted += run.deleted
        self.earlier.failed += run.failed
        if run.finished is None:
            self.stops[UNFINISHED] += 1

    def _started(self, run: RunRow, record: dict[str, Any], ts: str) -> None:
        run.started = ts
        mode = record.get("mode")
        if isinstance(mode, str) and mode in MODES:
            run.mode = mode
        elif isinstance(record.get("dry_run"), bool):
            run.mode = RunMode.of(record["dry_run"]).value
        self.modes[run.mode] += 1
        shard = record.get("shard")
        run.shard = shard if isinstance(shard, str) else None
        sources = record.get("policies")
        for source in sources if isinstance(sources, list) else ():
            if not isinstance(source, dict):
                continue
            path, digest = source.get("path"), source.get("sha256")
            if not isinstance(path, str) or not isinstance(digest, str):
                continue
            known = self.policy_files.get((path, digest))
            if known is None:
                if len(self.policy_files) >= MAX_POLICY_FILES:
                    continue
                known = self.policy_files[(path, digest)] = PolicyFile(first=ts)
            known.runs += 1
            known.last = ts

    def _finished(self, run: RunRow, record: dict[str, Any], ts: str) -> None:
        run.finished = ts
        code = record.get("exit_code")
        run.exit_code = code if isinstance(code, int) and not isinstance(code, bool) else None
        stopped = record.get("stopped_by")
        if isinstance(stopped, str) and stopped:
            if stopped not in self.stops and len(self.stops) >= MAX_CAUSES:
                stopped = OTHER_CAUSE
            run.stopped_by = stopped
            self.stops[stopped] += 1

    def _policy(self, name: object) -> str:
        policy = name if isinstance(name, str) and name else "unknown"
        if policy not in self.by_policy and len(self.by_policy) >= MAX_POLICIES:
            return OTHER_POLICIES
        return policy

    def _deleted_on(self, day: str, policy: str) -> None:
        counts = self.days.get(day)
        if counts is None:
            if len(self.days) >= MAX_DAYS and day < min(self.days):
                self.earlier_days[policy] += 1  # an older day than every one kept
                return
            counts = self.days[day] = Counter()
            if len(self.days) > MAX_DAYS:
                self.earlier_days.update(self.days.pop(min(self.days)))
                self.earlier_day_count += 1
        counts[policy] += 1

    def _failure(self, error: object) -> None:
        cause = error if isinstance(error, str) and error else "no cause recorded"
        if cause not in self.failures and len(self.failures) >= MAX_CAUSES:
            cause = OTHER_CAUSE
        self.failures[cause] += 1

    def close(self) -> None:
        """At the log's end: the runs still without a run_finished line."""
        for run in self.runs.values():
            if run.finished is None:
                self.stops[UNFINISHED] += 1


def _day(ts: str) -> str | None:
    try:
        instant = datetime.fromisoformat(ts)
    except ValueError:
        return None
    if instant.tzinfo is None:
        return None
    return instant.astimezone(UTC).date().isoformat()


def tally_log(path: Path) -> LogTally:
    """Read the log once (its segments, then the live file) into bounded tallies."""
    tally = LogTally()
    for raw in iter_log_lines(path):
        tally.lines += 1
        if raw.too_long or not raw.complete:
            tally.unreadable += 1
            continue
        try:
            record = parse_line(raw.data)
        except LineFormatError:
            tally.unreadable += 1
            continue
        tally.take(record)
    tally.close()
    return tally


# -- the page ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LogFacts:
    path: Path
    files: int  # segments and the live file
    made_at: datetime
    live_run: bool  # a run holds the log's lock: its last lines may still come


def render_log_html(tally: LogTally, about: LogFacts) -> str:
    """The page (templates/audit_log_report.html lays out what is computed here)."""
    return render(
        "audit_log_report.html",
        title=f"Retention audit log report: {about.path.name}",
        facts=_header(tally, about),
        tiles=_tiles(tally),
        runs=_runs(tally),
        days=_days(tally),
        outcomes=_outcomes(tally),
        failures=_counts(
            "Failures by cause", "failures", ("cause", "failed calls"), tally.failures
        ),
        stops=_stops(tally),
        stopped_runs=_stopped_runs(tally),
        policy_files=_policy_files(tally),
        max_runs=MAX_RUNS,
        chart_runs=CHART_RUNS,
        max_days=MAX_DAYS,
        chart_days=CHART_DAYS,
    )


def _header(tally: LogTally, about: LogFacts) -> list[tuple[str, Cell]]:
    rows: list[tuple[str, Cell]] = [
        ("Audit log", Code(str(about.path))),
        ("Files read", f"{about.files} (numbered gzip segments, then the live file)"),
        ("Lines", str(tally.lines)),
        ("First line", tally.first_ts or "—"),
        ("Last line", tally.last_ts or "—"),
        ("Report made", rfc3339(about.made_at, "seconds")),
        ("Tool version", f"cartesia-retention {__version__}"),
    ]
    if tally.unreadable:
        rows.append(
            ("Unreadable lines", f"{tally.unreadable} (not counted; audit verify says why)")
        )
    if about.live_run:
        rows.append(("Note", "a run holds the log's lock: its last lines may still be coming"))
    return rows


def _tiles(tally: LogTally) -> list[tuple[str, int]]:
    return [
        ("runs", tally.all_runs),
        *((f"runs: {mode}", n) for mode, n in sorted(tally.modes.items())),
        *((o.replace("_", " "), tally.events[o]) for o in OUTCOMES if tally.events[o]),
        ("runs stopped early", tally.stops.total()),
    ]


def _clock(ts: str | None) -> str:
    """`2026-05-01 02:00:03` (UTC) from a line's ts, to the second."""
    return "—" if ts is None else ts[:19].replace("T", " ")


def run_label(run: RunRow) -> str:
    """A run's name in the runs chart: its start and the head of its id."""
    return f"{_clock(run.started)} {run.run_id[:8]}"


def _stop_words(run: RunRow) -> str:
    if run.stopped_by is not None:
        return STOP_WORDS.get(run.stopped_by, run.stopped_by)
    return "no run_finished line" if run.finished is None else ""


def _runs(tally: LogTally) -> Figure:
    runs = list(tally.runs.values())
    columns = (
        Column("started (UTC)"),
        Column("run id"),
        Column("mode"),
        Column("shard"),
        Column("finished (UTC)"),
        Column("exit code", True),
        Column("stopped by"),
        Column(Event.DELETED, True),
        Column(Event.FAILED, True),
    )
    rows: list[Sequence[Cell]] = []
    if tally.earlier.runs:
        rows.append(
            (
                f"{EARLIER} ({tally.earlier.runs} runs)",
                "",
                "",
                "",
                "",
                "",
                "",
                tally.earlier.deleted,
                tally.earlier.failed,
            )
        )
    rows += [
        (
            _clock(run.started),
            Code(run.run_id),
            run.mode,
            run.shard or "",
            _clock(run.finished),
            "" if run.exit_code is None else run.exit_code,
            _stop_words(run),
            run.deleted,
            run.failed,
        )
        for run in runs
    ]
    deleted = tally.earlier.deleted + sum(r.deleted for r in runs)
    failed = tally.earlier.failed + sum(r.failed for r in runs)
    shown = runs[-CHART_RUNS:]
    return Figure(
        bar_chart(
            [(run_label(r), r.deleted) for r in shown],
            name="runs",
            title="Calls deleted per run",
            ink="due",
        ),
        Table(
            "runs",
            columns,
            rows,
            total=(f"all {tally.all_runs} runs", "", "", "", "", "", "", deleted, failed)
            if rows
            else None,
        ),
    )


def _days(tally: LogTally) -> Figure:
    days = sorted(tally.days, reverse=True)
    totals: Counter[str] = Counter(tally.earlier_days)
    for counts in tally.days.values():
        totals.update(counts)
    policies = sorted(totals, key=lambda p: (-totals[p], p))
    columns = [Column("day (UTC)")] + [Column(p, True) for p in policies] + [Column("total", True)]
    rows: list[Sequence[Cell]] = [
        (day, *(tally.days[day][p] for p in policies), tally.days[day].total()) for day in days
    ]
    if tally.earlier_day_count:
        rows.append(
            (
                f"{EARLIER} ({tally.earlier_day_count} days)",
                *(tally.earlier_days[p] for p in policies),
                tally.earlier_days.total(),
            )
        )
    recent = sorted(days[:CHART_DAYS])
    return Figure(
        bar_chart(
            [(day, tally.days[day].total()) for day in recent],
            name="days",
            title="Calls deleted per day",
            ink="due",
        ),
        Table(
            "days",
            columns,
            rows,
            total=("all days", *(totals[p] for p in policies), totals.total()) if rows else None,
        ),
    )


def _outcomes(tally: LogTally) -> Figure:
    ranked = sorted(tally.by_policy.items(), key=lambda item: (-item[1][Event.DELETED], item[0]))
    outcomes = [o for o in OUTCOMES if any(c[o] for _, c in ranked)]
    total: Counter[str] = Counter()
    for _, counts in ranked:
        total.update(counts)
    columns = [Column("policy")] + [Column(o.replace("_", " "), True) for o in outcomes]
    return Figure(
        bar_chart(
            [(policy, c[Event.DELETED]) for policy, c in ranked],
            name="policy",
            title="Calls deleted per policy",
            ink="due",
        ),
        Table(
            "policy",
            columns,
            [(policy, *(c[o] for o in outcomes)) for policy, c in ranked],
            total=("all", *(total[o] for o in outcomes)) if ranked else None,
        ),
    )


def _counts(
    title: str, name: str, header: tuple[str, str], counts: Counter[str], ink: str = "warn"
) -> Figure:
    """A count by key, largest first; zero counts left out."""
    rows = sorted(((k, n) for k, n in counts.items() if n), key=lambda r: (-r[1], r[0]))
    return Figure(
        bar_chart(rows, name=name, title=title, ink=ink),
        Table(name, (Column(header[0]), Column(header[1], True)), rows),
    )


def _stops(tally: LogTally) -> Figure:
    reasons = sorted(tally.stops.items(), key=lambda r: (-r[1], r[0]))
    rows = [(STOP_WORDS.get(reason, reason), n) for reason, n in reasons]
    return Figure(
        bar_chart(rows, name="stops", title="Runs stopped early, by cause", ink="warn"),
        Table("stops", (Column("stopped by"), Column("runs", True)), rows),
    )


def _stopped_runs(tally: LogTally) -> Table:
    early = [run for run in tally.runs.values() if run.stopped_early]
    return Table(
        "stopped-runs",
        (
            Column("started"),
            Column("run id"),
            Column("mode"),
            Column("stopped by"),
            Column("exit code", True),
            Column(Event.DELETED, True),
        ),
        [
            (
                _clock(run.started),
                Code(run.run_id),
                run.mode,
                _stop_words(run),
                "" if run.exit_code is None else run.exit_code,
                run.deleted,
            )
            for run in early
        ],
    )


def _policy_files(tally: LogTally) -> Table:
    ranked = sorted(tally.policy_files.items(), key=lambda item: (item[1].first, item[0]))
    return Table(
        "policy-files",
        (
            Column("policy file"),
            Column("sha256"),
            Column("runs", True),
            Column("first run"),
            Column("last run"),
        ),
        [
            (path, Code(digest), seen.runs, _clock(seen.first), _clock(seen.last))
            for (path, digest), seen in ranked
        ],
    )


# -- the command ------------------------------------------------------------------


def check_html_path(log: Path, out: Path) -> None:
    """Refuse before reading the log: a name that is not .html, a missing directory,
    or a file the log is made of (the log, its segments, lock, torn or state file)."""
    where = f"--html {out}"
    segments = [item.path for item in log_files([log]) if item.is_segment]
    check_outputs(log, {"--html": out}, keep=[(f"the segment {s}", s) for s in segments])
    if out.suffix.lower() not in HTML_SUFFIXES:
        raise ReportPathError("the report must end in .html", where=where)
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise ReportPathError("its directory does not exist", where=where)
    if out.is_dir():
        raise ReportPathError("is a directory", where=where)


def write_page(out: Path, text: str) -> None:
    temp = out.with_name(f".{out.name}.tmp")
    try:
        temp.write_text(text, encoding="utf-8")
        os.replace(temp, out)
    except OSError as err:
        temp.unlink(missing_ok=True)
        raise ReportPathError(
            f"cannot write the report ({err.strerror or type(err).__name__})",
            where=f"--html {out}",
        ) from None


def report_command(log: Path, out: Path) -> LogTally:
    """Check the output path, read the log once, write the page; returns the tallies."""
    check_html_path(log, out)
    files = len(log_files([log]))
    tally = tally_log(log)
    about = LogFacts(path=log, files=files, made_at=datetime.now(UTC), live_run=run_holds_lock(log))
    write_page(out, render_log_html(tally, about))
    return tally
