"""`--report FILE`: the run's report, in the format its extension names.

- `.csv`: one row per call selected for deletion, written as the call is decided (dry
  run) or as its outcome is known (`--execute`), so memory stays flat.
- `.json` / `.md`: totals (by policy, agent and region; kept, skipped, failed), written
  once at the end from the run's counters.
Nothing personal reaches a report: ids, agent names, regions, statuses and times only.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any, Final, Literal

from retention import markdown
from retention.api.models import Call
from retention.audit.events import Outcome, RunMode
from retention.durable import replace_text, temp_path
from retention.errors import UserError
from retention.policy.describe import ANNOTATION_WORDS, overridden_words
from retention.policy.model import Kind, Policy
from retention.run.context import RunContext
from retention.run.forecast import FORECAST_NOTE, forecast_rows
from retention.run.html_report import render_run_html
from retention.run.stats import DEAD_HOLD, RunStats
from retention.run.sweeps import account_rows, sweep_accounts
from retention.timestamps import rfc3339, rfc3339_unix

ReportFormat = Literal["csv", "json", "md", "html"]
CSV_HEADER: Final = (
    "call_id",
    "agent_id",
    "agent_name",
    "region",
    "status",
    "start_time",
    "age_days",
    "policy",
    "outcome",
)
_FORMATS: Final[Mapping[str, ReportFormat]] = {
    ".csv": "csv",
    ".json": "json",
    ".md": "md",
    ".html": "html",
    ".htm": "html",
}
OUTCOME_ORDER: Final = tuple(Outcome)


class ReportError(UserError):
    """A report path the run cannot write, or an unknown format (exit 2)."""


def report_format(path: Path) -> ReportFormat:
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ReportError(
            f"unknown report format {path.suffix or '(no extension)'!r}; "
            "use .csv, .json, .md or .html",
            where="--report",
        )
    return fmt


class Report:
    """Opened before the run (so a bad path fails early), closed after it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.format = report_format(path)
        self._csv_file: IO[str] | None = None
        self._csv: Any = None
        self.rows = 0
        self._failure: str | None = None  # why the CSV could not be written, if it failed

    def open(self) -> None:
        target = self.path if self.format == "csv" else temp_path(self.path)
        try:
            handle = target.open("w", encoding="utf-8", newline="")
        except OSError as err:
            raise ReportError(
                f"cannot write {self.path}: {err.strerror or err}", where="--report"
            ) from None
        if self.format == "csv":
            self._csv_file = handle
            self._csv = csv.writer(handle, lineterminator="\n")
            self._csv.writerow(CSV_HEADER)
        else:  # probed only; the totals are written at the end
            handle.close()
            target.unlink(missing_ok=True)

    def row(self, call: Call, agent_name: str, policy: str, outcome: str, now: datetime) -> None:
        if self._csv is None:
            return
        origin = call.age_origin
        age = f"{(now - origin).total_seconds() / 86400:.1f}" if origin is not None else ""
        start = rfc3339(call.start_time) if call.start_time else ""
        try:
            self._csv.writerow(
                (
                    call.id,
                    call.agent_id,
                    agent_name,
                    call.deployment_region or "",
                    call.status,
                    start,
                    age,
                    policy,
                    outcome,
                )
            )
        except OSError as err:
            # A report that cannot be written must not stop the run: reported by finish().
            self._fail(err)
            self.close()
            return
        self.rows += 1

    def finish(self, stats: RunStats, context: RunContext) -> None:
        """Close the CSV, or write the JSON/Markdown totals (atomically, via a rename)."""
        if self.format == "csv":
            self.close()
            if self._failure is not None:
                raise ReportError(f"cannot write {self.path}: {self._failure}", where="--report")
            return
        text = render(self.format, stats, context)
        try:
            replace_text(self.path, text)
        except OSError as err:
            raise ReportError(
                f"cannot write {self.path}: {err.strerror or err}", where="--report"
            ) from None

    def close(self) -> None:
        handle, self._csv_file, self._csv = self._csv_file, None, None
        if handle is not None:
            try:
                handle.close()
            except OSError as err:  # the last buffered rows could not be flushed
                self._fail(err)

    def _fail(self, err: OSError) -> None:
        if self._failure is None:
            self._failure = err.strerror or type(err).__name__


def render(fmt: ReportFormat, stats: RunStats, context: RunContext) -> str:
    """The report's text at the run's end (not the CSV, written as the run goes)."""
    if fmt == "html":
        return render_run_html(stats, context)
    totals = summarise(stats, context)
    if fmt == "json":
        return json.dumps(totals, indent=2, sort_keys=False) + "\n"
    return render_markdown(totals)


def _iso(unix: float | None) -> str | None:
    return None if unix is None else rfc3339_unix(unix)


def _counts(counter: Mapping[str, int]) -> dict[str, int]:
    return {key: counter[key] for key in sorted(counter) if counter[key]}


def summarise(stats: RunStats, context: RunContext) -> dict[str, Any]:
    """The report's totals as plain data (the JSON report is exactly this)."""
    selected = sum(stats.outcomes.values())
    by_agent = [
        {
            "agent_id": agent_id,
            "agent_name": stats.agent_names.get(agent_id, ""),
            "total": sum(outcomes.values()),
            "outcomes": _counts(outcomes),
            "deleted_agent": agent_id in stats.deleted_agents,
        }
        for agent_id, outcomes in sorted(stats.by_agent.items())
    ]
    return {
        "run_id": context.run_id,
        "dry_run": context.dry_run,
        "now": rfc3339(context.now),
        "shard": context.shard,
        "mode": context.mode_name.value,
        "version": context.version,
        "started": _iso(stats.started_unix),
        "finished": _iso(stats.finished_unix),
        "duration_seconds": (
            round(stats.finished_unix - stats.started_unix, 3)
            if stats.finished_unix is not None
            else None
        ),
        "policy_files": [{"path": p, "sha256": d} for p, d in context.policy_sources],
        "exit_code": stats.exit_code,
        "stopped_by": stats.stop_reason,
        "totals": {
            "agents": stats.agents,
            "agents_failed": stats.agents_failed,
            "scanned": stats.scanned,
            "selected": selected,
            "kept": sum(stats.kept.values()),
            "skipped": sum(stats.skipped.values()),
            "failed": stats.outcomes[Outcome.FAILED],
            "outcomes": _counts(stats.outcomes),
        },
        "selected_by_policy": {
            policy: {"total": sum(c.values()), "outcomes": _counts(c)}
            for policy, c in sorted(stats.by_policy.items())
        },
        "selected_by_agent": by_agent,
        "selected_by_region": {
            region: {"total": sum(c.values()), "outcomes": _counts(c)}
            for region, c in sorted(stats.by_region.items())
        },
        "kept": {
            "by_reason": _counts(stats.kept),
            "by_retention_policy": _counts(stats.held_by),
        },
        "skipped": _counts(stats.skipped),
        "api": {"requests": stats.requests, "retries": stats.retries, "throttled": stats.throttled},
        "policies": [_policy_entry(p, stats, context.policies) for p in context.policies],
        # Calls each policy matched (all its conditions held), whatever the decision.
        "matched_by_policy": stats.matched_by_policy(),
        "dead_holds": stats.dead_holds(),
        # Kept calls becoming due within 7 and 30 days and the horizon, by policy.
        "forecast": stats.upcoming.summary(),
        # Each sweep's erasure account: matched, erased, held, and why the rest was not.
        "sweeps": sweep_accounts(stats, context.policies, tuple(Outcome)),
        **({"plan": plan_account(stats, context)} if context.mode_name == RunMode.APPLY else {}),
    }


def plan_account(stats: RunStats, context: RunContext) -> dict[str, Any]:
    """`apply`: the plan applied, its calls not deleted (`dropped`, by reason) and the
    calls due now that it did not hold (`not_in_plan`)."""
    return {
        "sha256": context.plan_sha256,
        "dropped": stats.outcomes[Outcome.DROPPED],
        "dropped_by_reason": _counts(stats.dropped),
        "not_in_plan": stats.outcomes[Outcome.NOT_IN_PLAN],
    }


def _policy_entry(policy: Policy, stats: RunStats, policies: Sequence[Policy]) -> dict[str, Any]:
    """A policy with its annotations; a sweep (`delete_after: 0d`) also with the holds
    that actually kept calls it would have erased, most calls first."""
    entry: dict[str, Any] = {
        "name": policy.name,
        "rule": policy.kind.value,
        "duration": policy.duration_text,
        "where": policy.where,
        **dict(policy.annotations),
    }
    if policy.kind == Kind.DELETE and policy.duration == timedelta(0):
        held = stats.held_from.get(policy.name, Counter[str]())
        holds = sorted(
            (p for p in policies if p.kind == Kind.RETAIN and held[p.name]),
            key=lambda p: (-held[p.name], p.name),
        )
        entry["overridden_by"] = [
            {
                "policy": hold.name,
                "calls": held[hold.name],
                "note": overridden_words(policy, hold, held[hold.name]),
            }
            for hold in holds
        ]
    return entry


def _table(title: str, rows: Sequence[tuple[str, ...]], header: tuple[str, ...]) -> list[str]:
    lines = [f"## {title}", ""]
    if not rows:
        return [*lines, "None.", ""]
    return [*lines, *markdown.table(header, rows), ""]


def _by_count(groups: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, Mapping[str, Any]]]:
    """Most calls first, then by name."""
    return sorted(groups.items(), key=lambda item: (-item[1]["total"], item[0]))


def _outcome_columns(groups: Sequence[Mapping[str, Any]]) -> list[str]:
    """Only the outcomes some row reached: no all-zero column."""
    return [o for o in OUTCOME_ORDER if any(g["outcomes"].get(o) for g in groups)]


def _outcome_table(
    title: str, key: tuple[str, ...], rows: Sequence[tuple[tuple[str, ...], Mapping[str, Any]]]
) -> list[str]:
    outcomes = _outcome_columns([v for _, v in rows])
    return _table(
        title,
        [
            (*names, str(v["total"]), *(str(v["outcomes"].get(o, 0)) for o in outcomes))
            for names, v in rows
        ],
        (*key, "total", *outcomes),
    )


def render_markdown(totals: Mapping[str, Any]) -> str:
    t = totals["totals"]
    mode = totals.get("mode") or RunMode.of(totals["dry_run"])
    if mode == RunMode.DRY_RUN:
        mode = "dry run (nothing deleted)"
    duration = totals.get("duration_seconds")
    lines = [
        f"# Retention run {totals['run_id']}",
        "",
        f"- Mode: {mode}",
        f"- Started: {totals.get('started') or '-'}; finished: {totals.get('finished') or '-'}"
        + (f"; duration: {duration:.1f} s" if duration is not None else ""),
        f"- Ages measured from: {totals['now']}",
        f"- Shard: {totals['shard'] or 'all agents'}",
        f"- Exit code: {totals['exit_code']}"
        + (f" (stopped by {totals['stopped_by']})" if totals["stopped_by"] else ""),
        f"- Agents: {t['agents']} ({t['agents_failed']} could not be listed)",
        f"- Calls scanned: {t['scanned']}; selected for deletion: {t['selected']}; "
        f"kept: {t['kept']}; skipped: {t['skipped']}; failed: {t['failed']}",
        f"- Tool version: {totals.get('version', '-')}",
        "",
    ]
    lines += _table(
        "Policy files",
        [(f["path"], f"`{f['sha256']}`") for f in totals["policy_files"]],
        ("file", "sha256"),
    )
    lines += _outcome_table(
        "Selected for deletion, by policy",
        ("policy",),
        [((name,), v) for name, v in _by_count(totals["selected_by_policy"])],
    )
    agents = sorted(totals["selected_by_agent"], key=lambda a: (-a["total"], a["agent_id"]))
    lines += _outcome_table(
        "Selected for deletion, by agent",
        ("agent_id", "agent_name"),
        [
            (
                (
                    a["agent_id"],
                    a["agent_name"] + (" (deleted agent)" if a.get("deleted_agent") else ""),
                ),
                a,
            )
            for a in agents
        ],
    )
    lines += _outcome_table(
        "Selected for deletion, by region",
        ("region",),
        [((region,), v) for region, v in _by_count(totals["selected_by_region"])],
    )
    kept = totals["kept"]
    lines += _table("Kept", _count_rows(kept["by_reason"]), ("reason", "calls"))
    lines += _table(
        "Kept by a retention rule",
        _count_rows(kept["by_retention_policy"]),
        ("retention policy", "calls"),
    )
    lines += _table("Skipped", _count_rows(totals["skipped"]), ("reason", "calls"))
    failed: list[tuple[str, ...]] = (
        [(Outcome.FAILED.value, str(t["failed"]))] if t["failed"] else []
    )
    lines += _table("Failed", failed, ("", "calls"))
    lines += _matched_section(totals.get("matched_by_policy", {}), totals.get("dead_holds", []))
    lines += _forecast_section(totals.get("forecast"))
    for account in totals.get("sweeps", []):
        rows: list[tuple[str, ...]] = [(what, str(n)) for what, n in account_rows(account)]
        lines += _table(f"Sweep {account['policy']}: erasure account", rows, ("calls", "count"))
    lines += _policies_section(totals.get("policies", []))
    lines += _plan_section(totals.get("plan"))
    return "\n".join(lines).rstrip("\n") + "\n"


def _count_rows(counts: Mapping[str, int]) -> list[tuple[str, ...]]:
    return [(k, str(n)) for k, n in sorted(counts.items(), key=lambda item: (-item[1], item[0]))]


def _matched_section(matched: Mapping[str, int], dead_holds: Sequence[str]) -> list[str]:
    """Calls each policy matched; a retention rule that matched none is called out."""
    rows: list[tuple[str, ...]] = [
        (name, str(calls), DEAD_HOLD.format(name=name) if name in dead_holds else "")
        for name, calls in sorted(matched.items(), key=lambda item: (-item[1], item[0]))
    ]
    return _table("Calls matched, by policy", rows, ("policy", "calls matched", "note"))


def _forecast_section(forecast: Mapping[str, Any] | None) -> list[str]:
    """Kept calls becoming due within each window, by policy."""
    if forecast is None:
        return []
    header, rows = forecast_rows(forecast)
    lines = _table(f"Becoming due (next {forecast['horizon_days']} days)", rows, tuple(header))
    return [*lines[:2], FORECAST_NOTE, "", *lines[2:]]


def _policies_section(policies: Sequence[Mapping[str, Any]]) -> list[str]:
    """Each policy with its annotations; then what holds overrode of each sweep."""
    if not policies:
        return []
    rows: list[tuple[str, ...]] = [
        (str(p["name"]), f"{p['rule']}: {p['duration']}", str(p["where"]), _annotation_cell(p))
        for p in policies
    ]
    lines = _table("Policies", rows, ("policy", "rule", "file", "annotations"))
    notes = [o["note"] for p in policies for o in p.get("overridden_by", [])]
    if notes:
        lines += ["## Sweeps overridden by retention rules", ""]
        lines += [f"- {markdown.cell(note)}" for note in notes]
        lines.append("")
    return lines


def _plan_section(plan: Mapping[str, Any] | None) -> list[str]:
    """`apply`: the plan applied and what of it was not deleted, and why."""
    if plan is None:
        return []
    lines = [
        "## Plan applied",
        "",
        f"- Plan sha256: `{plan['sha256'] or '-'}`",
        f"- Planned calls not deleted because no longer due (dropped): {plan['dropped']}",
        f"- Calls due now but not in the plan, not deleted (not_in_plan): {plan['not_in_plan']}",
        "",
    ]
    return lines + _table(
        "Dropped, by reason", _count_rows(plan["dropped_by_reason"]), ("reason", "calls")
    )


def _annotation_cell(entry: Mapping[str, Any]) -> str:
    shown = [(words, entry.get(key)) for key, words in ANNOTATION_WORDS.items()]
    return "; ".join(f"{words}: {text}" for words, text in shown if text)
