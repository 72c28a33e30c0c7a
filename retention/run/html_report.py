"""`--report FILE.html`: a run's report as one self-contained page, for people.

A function of the run's counters (`RunStats`) and its context (`RunContext`) only,
so `run`, `plan` and `apply` share it: `render_run_html(stats, context)`. Its size
is bounded whatever the run's size: every section is a fixed set of buckets, the
policies, or the top agents and regions followed by "the rest". What each section
shows is computed here; templates/run_report.html lays it out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from retention.audit.events import Outcome, RunMode
from retention.html import STOP_WORDS, Cell, Chart, Code, Column, Figure, Table, bar_chart, render
from retention.policy.describe import ANNOTATION_WORDS, overridden_words
from retention.policy.model import Kind, Policy
from retention.run.context import RunContext
from retention.run.forecast import FORECAST_NOTE, forecast_rows
from retention.run.stats import AGE_BUCKETS, DEAD_HOLD, FORECAST_BUCKETS, RunStats
from retention.run.sweeps import account_rows, sweep_accounts
from retention.timestamps import rfc3339, rfc3339_unix

TOP_AGENTS: Final = 15
TOP_REGIONS: Final = 15
THE_REST: Final = "the rest"


@dataclass(frozen=True, slots=True)
class Ages:
    due: Chart | None
    kept: Chart | None
    table: Table


@dataclass(frozen=True, slots=True)
class Sweep:
    """One sweep's erasure account: what it selected, what became of it, what held."""

    name: str
    annotations: str
    table: Table
    overrides: Sequence[str]  # a sentence per retention rule that held some of its calls


def render_run_html(stats: RunStats, context: RunContext) -> str:
    mode = context.mode_name
    return render(
        "run_report.html",
        title=f"Retention {mode}: run {context.run_id}",
        mode=mode,
        lede=_lede(stats, context),
        facts=_header(stats, context),
        policy_files=Table(
            "policy-files",
            (Column("policy file"), Column("sha256")),
            [(path, Code(digest)) for path, digest in context.policy_sources],
        ),
        tiles=_tiles(stats),
        api=(stats.requests, stats.retries, stats.throttled),
        by_policy=_grouped("Outcomes by policy", "policy", "policy", _sorted(stats.by_policy)),
        by_region=_grouped(
            "Outcomes by region", "region", "region", _top(stats.by_region, TOP_REGIONS)
        ),
        by_agent=_agents(stats),
        ages=_ages(stats),
        held=_counts(
            "Held calls by retention rule",
            "held",
            ("retention rule", "calls held"),
            stats.held_by,
            "kept",
        ),
        policies=_policies(stats, context),
        skipped=_counts("Skipped calls by reason", "skipped", ("reason", "calls"), stats.skipped),
        failures=_counts(
            "Failures by cause", "failures", ("cause", "failures"), stats.failures, "warn"
        ),
        forecast=_forecast(stats),
        upcoming=_upcoming(stats),
        upcoming_note=FORECAST_NOTE,
        sweeps=_sweeps(stats, context),
        plan_applied=_plan_applied(stats, context),
    )


def _lede(stats: RunStats, context: RunContext) -> str:
    if context.dry_run:
        return "A dry run: nothing was deleted. 'would delete' counts what --execute would erase."
    return "Calls were deleted; every deletion is in the audit log."


def _when(unix: float | None) -> str:
    if unix is None:
        return "not finished"
    return rfc3339_unix(unix)


def duration_words(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    return (
        f"{hours} h {rest // 60} min {rest % 60} s" if hours else f"{rest // 60} min {rest % 60} s"
    )


def _header(stats: RunStats, context: RunContext) -> list[tuple[str, Cell]]:
    finished = stats.finished_unix
    took = duration_words(finished - stats.started_unix) if finished is not None else "—"
    stopped = (
        STOP_WORDS.get(stats.stop_reason or "", stats.stop_reason) or "nothing (ran to the end)"
    )
    now = rfc3339(context.now)
    return [
        ("Run id", Code(context.run_id)),
        ("Mode", context.mode_name),
        ("Started", _when(stats.started_unix)),
        ("Finished", _when(finished)),
        ("Duration", took),
        ("Exit code", str(stats.exit_code) if stats.exit_code is not None else "—"),
        ("Stopped by", stopped),
        ("Ages measured from", now),
        ("Shard", context.shard or "all agents"),
        ("Tool version", f"cartesia-retention {context.version}"),
    ]


def _tiles(stats: RunStats) -> list[tuple[str, int]]:
    selected = sum(stats.outcomes.values())
    items = [
        ("agents", stats.agents),
        ("calls scanned", stats.scanned),
        ("selected for deletion", selected),
        ("kept", sum(stats.kept.values())),
        ("skipped", sum(stats.skipped.values())),
    ]
    items += [(_outcome_words(o), stats.outcomes[o]) for o in tuple(Outcome) if stats.outcomes[o]]
    if stats.agents_failed:
        items.append(("agents not fully listed", stats.agents_failed))
    return items


def _outcome_words(outcome: str) -> str:
    return outcome.replace("_", " ")


def _sorted(groups: Mapping[str, Counter[str]]) -> list[tuple[str, Counter[str]]]:
    """Most calls first, then by name."""
    return sorted(groups.items(), key=lambda item: (-item[1].total(), item[0]))


def _top(groups: Mapping[str, Counter[str]], limit: int) -> list[tuple[str, Counter[str]]]:
    """The `limit` largest groups, then one row adding up the rest (if any)."""
    ranked = _sorted(groups)
    if len(ranked) <= limit:
        return ranked
    rest: Counter[str] = Counter()
    for _, counts in ranked[limit:]:
        rest.update(counts)
    return [*ranked[:limit], (f"{THE_REST} ({len(ranked) - limit})", rest)]


def _outcome_columns(groups: Sequence[tuple[str, Counter[str]]]) -> list[str]:
    """Only the outcomes some group reached: no all-zero column."""
    return [o for o in tuple(Outcome) if any(c[o] for _, c in groups)] + sorted(
        {o for _, c in groups for o in c if c[o] and o not in tuple(Outcome)}
    )


def _grouped(
    title: str,
    name: str,
    key: str,
    groups: Sequence[tuple[str, Counter[str]]],
    labels: Mapping[str, str] | None = None,
) -> Figure:
    """A chart of the calls selected per group, and the table of their outcomes."""
    outcomes = _outcome_columns(groups)
    columns = [Column(key), Column("selected", True)] + [
        Column(_outcome_words(o), True) for o in outcomes
    ]
    rows: list[tuple[Cell, ...]] = [
        (labels.get(group, group) if labels else group, c.total(), *(c[o] for o in outcomes))
        for group, c in groups
    ]
    total: Counter[str] = Counter()
    for _, counts in groups:
        total.update(counts)
    chart = bar_chart(
        [(labels.get(group, group) if labels else group, c.total()) for group, c in groups],
        name=name,
        title=f"{title}: calls selected",
    )
    return Figure(
        chart,
        Table(
            name,
            columns,
            rows,
            total=("all", total.total(), *(total[o] for o in outcomes)) if groups else None,
        ),
    )


def _agents(stats: RunStats) -> Figure:
    groups = _top(stats.by_agent, TOP_AGENTS)
    labels = {agent_id: agent_label(stats, agent_id) for agent_id, _ in groups}
    return _grouped("Outcomes by agent", "agent", "agent", groups, labels)


def agent_label(stats: RunStats, agent_id: str) -> str:
    """`name (id)`, marked when the agent is deleted; the rest's row keeps its words."""
    if agent_id not in stats.by_agent:
        return agent_id
    name = stats.agent_names.get(agent_id, "")
    label = f"{name} ({agent_id})" if name else agent_id
    return f"{label}, deleted agent" if agent_id in stats.deleted_agents else label


def _counts(
    title: str, name: str, header: tuple[str, str], counts: Mapping[str, int], ink: str = "neutral"
) -> Figure:
    """A count by key, largest first; zero counts left out."""
    rows = sorted(((k, n) for k, n in counts.items() if n), key=lambda r: (-r[1], r[0]))
    return Figure(
        bar_chart(rows, name=name, title=title, ink=ink),
        Table(name, (Column(header[0]), Column(header[1], True)), rows),
    )


def _ages(stats: RunStats) -> Ages:
    labels = [label for _, label in AGE_BUCKETS]
    due = [(label, stats.age_due[label]) for label in labels]
    kept = [(label, stats.age_kept[label]) for label in labels]
    rows = [(label, stats.age_due[label], stats.age_kept[label]) for label in labels]
    return Ages(
        bar_chart(due, name="age-due", title="Ages of due calls", ink="due"),
        bar_chart(kept, name="age-kept", title="Ages of kept calls", ink="kept"),
        Table(
            "ages",
            (Column("age"), Column("due", True), Column("kept", True)),
            rows,
            total=("all", stats.age_due.total(), stats.age_kept.total()),
        ),
    )


def _policies(stats: RunStats, context: RunContext) -> Figure:
    """Every policy with the calls it matched (all its conditions held, whatever the
    decision) and the calls whose decision cited it; a rule that matched no call is dead."""
    matched = stats.matched_by_policy()
    ordered = sorted(context.policies, key=lambda p: (-matched.get(p.name, 0), p.name))
    rows: list[tuple[Cell, ...]] = []
    classes: list[str | None] = []
    for policy in ordered:
        count = matched.get(policy.name, 0)
        dead = ""
        if count == 0 and stats.scanned:
            dead = (
                DEAD_HOLD.format(name=policy.name)
                if policy.kind == Kind.RETAIN
                else "dead: matched no call"
            )
        rows.append(
            (
                policy.name,
                f"{policy.kind.value}: {policy.duration_text}",
                count,
                stats.cited[policy.name],
                dead,
                Code(policy.where),
                _annotations(policy),
            )
        )
        classes.append("dead" if dead else None)
    columns = (
        Column("policy"),
        Column("rule"),
        Column("calls matched", True),
        Column("calls citing it", True),
        Column("note"),
        Column("file"),
        Column("annotations"),
    )
    chart = bar_chart(
        [(p.name, matched.get(p.name, 0)) for p in ordered],
        name="matched",
        title="Calls matched per policy",
    )
    return Figure(chart, Table("policies", columns, rows, row_classes=classes))


def _annotations(policy: Policy) -> str:
    return "; ".join(
        f"{ANNOTATION_WORDS[key]}: {text}"
        for key, text in policy.annotations
        if key in ANNOTATION_WORDS
    )


def _forecast(stats: RunStats) -> Figure:
    labels = [label for _, label in FORECAST_BUCKETS]
    ranked = sorted(stats.forecast.items(), key=lambda item: (-item[1].total(), item[0]))
    rows: list[tuple[Cell, ...]] = [
        (policy, *(c[label] for label in labels), c.total()) for policy, c in ranked
    ]
    per_bucket: Counter[str] = Counter()
    for _, counts in ranked:
        per_bucket.update(counts)
    columns = (
        [Column("policy")] + [Column(label, True) for label in labels] + [Column("total", True)]
    )
    return Figure(
        bar_chart(
            [(label, per_bucket[label]) for label in labels],
            name="forecast",
            title="Calls becoming due, all policies",
            ink="due",
        ),
        Table(
            "forecast",
            columns,
            rows,
            total=("all policies", *(per_bucket[label] for label in labels), per_bucket.total())
            if rows
            else None,
        ),
    )


def _upcoming(stats: RunStats) -> Table:
    """Kept calls becoming due within 7 and 30 days and the horizon, by policy."""
    header, rows = forecast_rows(stats.upcoming.summary())
    columns = [Column(header[0]), *(Column(name, True) for name in header[1:])]
    cells: list[tuple[Cell, ...]] = [(row[0], *(int(n) for n in row[1:])) for row in rows]
    return Table("upcoming", columns, cells[:-1], total=cells[-1] if cells else None)


def _sweeps(stats: RunStats, context: RunContext) -> list[Sweep]:
    """Each sweep (`delete_after: 0d`): what it matched, what became of it, what held."""
    by_name = {p.name: p for p in context.policies}
    accounts = []
    for account in sweep_accounts(stats, context.policies, tuple(Outcome)):
        sweep = by_name[account["policy"]]
        rows: list[tuple[Cell, ...]] = list(account_rows(account))
        accounts.append(
            Sweep(
                sweep.name,
                _annotations(sweep),
                Table(f"sweep-{sweep.name}", (Column("calls"), Column("count", True)), rows),
                [
                    overridden_words(sweep, by_name[hold], n)
                    for hold, n in account["held_by"].items()
                    if hold in by_name
                ],
            )
        )
    return accounts


@dataclass(frozen=True, slots=True)
class PlanApplied:
    """`apply`: the plan's digest, and what of it was not deleted."""

    sha256: str
    table: Table


def _plan_applied(stats: RunStats, context: RunContext) -> PlanApplied | None:
    """`apply`: the planned calls not deleted (by reason) and the due calls not planned."""
    if context.mode_name != RunMode.APPLY:
        return None
    rows: list[tuple[Cell, ...]] = [
        (f"dropped: {reason}", n)
        for reason, n in sorted(stats.dropped.items(), key=lambda i: (-i[1], i[0]))
        if n
    ]
    rows += [
        ("dropped (all reasons)", stats.outcomes[Outcome.DROPPED]),
        ("due now, not in the plan", stats.outcomes[Outcome.NOT_IN_PLAN]),
    ]
    table = Table("plan-applied", (Column("calls"), Column("count", True)), rows)
    return PlanApplied(context.plan_sha256 or "—", table)
