"""Progress while a run goes on, and its final summary.

On a terminal: a live `rich` line on stderr (scanned, due, deleted, failed, rate, 429s)
and a summary table at the end. Elsewhere (cron, Kubernetes): one structured log line
every `interval` seconds, and one summary log line at the end.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TextIO

import anyio
from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from retention.audit.events import Outcome
from retention.log import get_logger
from retention.run.forecast import forecast_rows
from retention.run.stats import DEAD_HOLD, RunStats

_log = get_logger(__name__)


def snapshot(stats: RunStats) -> dict[str, Any]:
    """The counters a progress line shows (bounded, no call ids)."""
    done = stats.outcomes
    return {
        "agents": stats.agents,
        "scanned": stats.scanned,
        "due": stats.due,
        **{outcome.value: done[outcome] for outcome in Outcome},
        "deletions_per_second": round(stats.deletions_per_second, 1),
        "requests": stats.requests,
        "retries": stats.retries,
        "throttled": stats.throttled,
        "elapsed_seconds": round(stats.elapsed, 1),
    }


def _status_line(stats: RunStats) -> Text:
    s = snapshot(stats)
    acted = f"would delete {s['would_delete']}" if stats.dry_run else f"deleted {s['deleted']}"
    return Text(
        f"scanned {s['scanned']}  due {s['due']}  {acted}  failed {s['failed']}  "
        f"{s['deletions_per_second']}/s  429s {s['throttled']}  retries {s['retries']}  "
        f"{s['elapsed_seconds']}s"
    )


async def show_progress(
    stats: RunStats,
    refresh: Callable[[], None],
    *,
    interval: float,
    stream: TextIO | None = None,
) -> None:
    """Runs until cancelled. `refresh` pulls the API client's counters into `stats`."""
    out = stream if stream is not None else sys.stderr
    if out.isatty():
        console = Console(file=out)
        with Live(_status_line(stats), console=console, transient=True, auto_refresh=False) as live:
            while True:
                await anyio.sleep(0.5)
                refresh()
                live.update(_status_line(stats), refresh=True)
    while True:
        await anyio.sleep(interval)
        refresh()
        _log.info("run.progress", **snapshot(stats))


def _applied(stats: RunStats) -> bool:
    """Whether the run had a plan to account for (only `apply` drops or leaves calls)."""
    return bool(
        stats.dropped or stats.outcomes[Outcome.DROPPED] or stats.outcomes[Outcome.NOT_IN_PLAN]
    )


def _plan_fields(stats: RunStats) -> dict[str, Any]:
    """`apply`: `dropped` by reason (the snapshot has its total, and `not_in_plan`)."""
    return {Outcome.DROPPED.value: dict(sorted(stats.dropped.items()))}


def warn_dead_holds(stats: RunStats) -> None:
    """A warning line per retention rule that matched no call in a run that scanned calls."""
    for name in stats.dead_holds():
        _log.warning("run.dead_hold", policy=name, message=DEAD_HOLD.format(name=name))


def print_summary(stats: RunStats, *, stream: TextIO | None = None) -> None:
    """The final summary: a table on a terminal, else one structured log line."""
    out = stream if stream is not None else sys.stderr
    fields = snapshot(stats)
    by_policy = {name: dict(sorted(c.items())) for name, c in sorted(stats.by_policy.items())}
    if not out.isatty():
        _log.info(
            "run.summary",
            dry_run=stats.dry_run,
            exit_code=stats.exit_code,
            stopped_by=stats.stop_reason,
            skipped=dict(stats.skipped),
            kept=dict(stats.kept),
            by_policy=by_policy,
            matched_by_policy=stats.matched_by_policy(),
            dead_holds=stats.dead_holds(),
            forecast=stats.upcoming.summary(),
            **{**fields, **(_plan_fields(stats) if _applied(stats) else {})},
        )
        return
    console = Console(file=out)
    table = Table(title="dry run: nothing deleted" if stats.dry_run else "retention run")
    table.add_column("")
    table.add_column("calls", justify="right")
    for key in ("agents", "scanned", "due"):
        table.add_row(key, str(fields[key]))
    for outcome, count in sorted(stats.outcomes.items()):
        table.add_row(outcome, str(count))
    for reason, count in sorted(stats.kept.items()):
        table.add_row(f"kept: {reason}", str(count))
    for reason, count in sorted(stats.skipped.items()):
        table.add_row(f"skipped: {reason}", str(count))
    # `apply`: why planned calls were not deleted (their total is the `dropped` row).
    for reason, count in sorted(stats.dropped.items()):
        table.add_row(f"dropped: {reason}", str(count))
    console.print(table)
    if by_policy:
        policies = Table(title="by policy")
        outcomes = sorted({o for c in by_policy.values() for o in c})
        policies.add_column("policy")
        for outcome in outcomes:
            policies.add_column(outcome, justify="right")
        for name, counts in by_policy.items():
            policies.add_row(name, *(str(counts.get(o, 0)) for o in outcomes))
        console.print(policies)
    matched = stats.matched_by_policy()
    if matched:
        table = Table(title="calls matched, by policy")
        table.add_column("policy")
        table.add_column("calls matched", justify="right")
        for name, count in matched.items():
            table.add_row(name, str(count))
        console.print(table)
    for name in stats.dead_holds():
        console.print(f"warning: {DEAD_HOLD.format(name=name)}")
    header, rows = forecast_rows(stats.upcoming.summary())
    if rows:
        table = Table(title=f"becoming due, next {stats.upcoming.horizon_days} days")
        table.add_column(header[0])
        for name in header[1:]:
            table.add_column(name, justify="right")
        for row in rows:
            table.add_row(*row)
        console.print(table)
    console.print(
        f"{fields['deletions_per_second']} deletions/s over {fields['elapsed_seconds']} s; "
        f"{fields['requests']} requests, {fields['retries']} retries, "
        f"{fields['throttled']} answered 429; exit {stats.exit_code}"
        + (f" (stopped by {stats.stop_reason})" if stats.stop_reason else "")
    )
