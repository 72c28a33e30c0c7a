"""`--report FILE.html`: a run's report as one self-contained page, for people.

A function of the run's counters (`RunStats`) and its context (`RunContext`) only,
so `run`, `plan` and `apply` share it: `render_run_html(stats, context)`. Its size
is bounded whatever the run's size: every section is a fixed set of buckets, the
policies, or the top agents and regions followed by "the rest".
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Final

from retention.policy.describe import ANNOTATION_WORDS, overridden_words
from retention.policy.model import Kind, Policy
from retention.run.html import Column, Markup, bar_chart, facts, h, page, table, tiles
from retention.run.report import OUTCOME_ORDER, RunContext
from retention.run.stats import AGE_BUCKETS, FORECAST_BUCKETS, RunStats

TOP_AGENTS: Final = 15
TOP_REGIONS: Final = 15
THE_REST: Final = "the rest"
STOP_WORDS: Final = {
    "max_deletes": "--max-deletes reached",
    "signal": "a signal (SIGTERM or SIGINT)",
    "credentials": "the API refused the credentials",
}


def render_run_html(stats: RunStats, context: RunContext) -> str:
    mode = context.mode_name
    title = f"Retention {mode}: run {context.run_id}"
    return page(
        title,
        h("h1", f"Retention run: {mode}"),
        h("p", _lede(stats, context), class_="sub"),
        _header(stats, context),
        _summary(stats),
        _grouped("Outcomes by policy", "policy", "policy", _sorted(stats.by_policy)),
        _grouped("Outcomes by region", "region", "region", _top(stats.by_region, TOP_REGIONS)),
        _agents(stats),
        _ages(stats),
        _counts_section(
            "Held calls by retention rule",
            "held",
            ("retention rule", "calls held"),
            stats.held_by,
            "kept",
            note="A call held by several rules counts under each of them.",
        ),
        _policies(stats, context),
        _counts_section("Skipped calls by reason", "skipped", ("reason", "calls"), stats.skipped),
        _counts_section(
            "Failures by cause", "failures", ("cause", "failures"), stats.failures, "warn"
        ),
        _forecast(stats),
        _sweeps(stats, context),
        _plan_applied(stats, context),
    )


def _lede(stats: RunStats, context: RunContext) -> str:
    if context.dry_run:
        return "A dry run: nothing was deleted. 'would delete' counts what --execute would erase."
    return "Calls were deleted; every deletion is in the audit log."


def _when(unix: float | None) -> str:
    if unix is None:
        return "not finished"
    return datetime.fromtimestamp(unix, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def duration_words(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    return (
        f"{hours} h {rest // 60} min {rest % 60} s" if hours else f"{rest // 60} min {rest % 60} s"
    )


def _header(stats: RunStats, context: RunContext) -> Markup:
    finished = stats.finished_unix
    took = duration_words(finished - stats.started_unix) if finished is not None else "—"
    stopped = (
        STOP_WORDS.get(stats.stop_reason or "", stats.stop_reason) or "nothing (ran to the end)"
    )
    now = context.now.isoformat().replace("+00:00", "Z")
    rows: list[tuple[str, str | Markup]] = [
        ("Run id", h("code", context.run_id)),
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
    files = table(
        (Column("policy file"), Column("sha256")),
        [(path, h("code", digest)) for path, digest in context.policy_sources],
        name="policy-files",
    )
    return h("section", h("h2", "Run"), facts(rows), h("h3", "Policy files"), files)


def _summary(stats: RunStats) -> Markup:
    selected = sum(stats.outcomes.values())
    items = [
        ("agents", stats.agents),
        ("calls scanned", stats.scanned),
        ("selected for deletion", selected),
        ("kept", sum(stats.kept.values())),
        ("skipped", sum(stats.skipped.values())),
    ]
    items += [(_outcome_words(o), stats.outcomes[o]) for o in OUTCOME_ORDER if stats.outcomes[o]]
    if stats.agents_failed:
        items.append(("agents not fully listed", stats.agents_failed))
    api = (
        f"API: {stats.requests} requests, {stats.retries} retries, {stats.throttled} answered 429."
    )
    return h("section", h("h2", "Summary"), tiles(items), h("p", api))


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
    return [o for o in OUTCOME_ORDER if any(c[o] for _, c in groups)] + sorted(
        {o for _, c in groups for o in c if c[o] and o not in OUTCOME_ORDER}
    )


def _grouped(
    title: str,
    name: str,
    key: str,
    groups: Sequence[tuple[str, Counter[str]]],
    labels: Mapping[str, str] | None = None,
) -> Markup:
    """A chart of the calls selected per group, and the table of their outcomes."""
    outcomes = _outcome_columns(groups)
    columns = [Column(key), Column("selected", True)] + [
        Column(_outcome_words(o), True) for o in outcomes
    ]
    rows: list[tuple[str | int, ...]] = [
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
    return h(
        "section",
        h("h2", title),
        chart,
        table(
            columns,
            rows,
            name=name,
            total=("all", total.total(), *(total[o] for o in outcomes)) if groups else None,
        ),
    )


def _agents(stats: RunStats) -> Markup:
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


def _counts_section(
    title: str,
    name: str,
    header: tuple[str, str],
    counts: Mapping[str, int],
    ink: str = "neutral",
    note: str | None = None,
) -> Markup:
    rows = sorted(((k, n) for k, n in counts.items() if n), key=lambda r: (-r[1], r[0]))
    return h(
        "section",
        h("h2", title),
        h("p", note) if note and rows else None,
        bar_chart(rows, name=name, title=title, ink=ink),
        table((Column(header[0]), Column(header[1], True)), rows, name=name),
    )


def _ages(stats: RunStats) -> Markup:
    labels = [label for _, label in AGE_BUCKETS]
    due = [(label, stats.age_due[label]) for label in labels]
    kept = [(label, stats.age_kept[label]) for label in labels]
    rows = [(label, stats.age_due[label], stats.age_kept[label]) for label in labels]
    return h(
        "section",
        h("h2", "Ages of due and kept calls"),
        h("p", "A call's age runs from its start (else its end) to the run's reference time."),
        h("h3", "Due (selected for deletion)"),
        bar_chart(due, name="age-due", title="Ages of due calls", ink="due"),
        h("h3", "Kept"),
        bar_chart(kept, name="age-kept", title="Ages of kept calls", ink="kept"),
        table(
            (Column("age"), Column("due", True), Column("kept", True)),
            rows,
            name="ages",
            total=("all", stats.age_due.total(), stats.age_kept.total()),
        ),
    )


def _policies(stats: RunStats, context: RunContext) -> Markup:
    """Every policy with the calls whose decision cited it; a rule no call cited is dead."""
    ordered = sorted(context.policies, key=lambda p: (-stats.cited[p.name], p.name))
    rows = []
    classes: list[str | None] = []
    for policy in ordered:
        cited = stats.cited[policy.name]
        rows.append(
            (
                policy.name,
                f"{policy.kind.value}: {policy.duration_text}",
                cited,
                "dead: no call cited it" if cited == 0 else "",
                h("code", policy.where),
                _annotations(policy),
            )
        )
        classes.append("dead" if cited == 0 else None)
    columns = (
        Column("policy"),
        Column("rule"),
        Column("calls citing it", True),
        Column("note"),
        Column("file"),
        Column("annotations"),
    )
    chart = bar_chart(
        [(p.name, stats.cited[p.name]) for p in ordered], name="cited", title="Calls per policy"
    )
    note = (
        "Calls whose decision cites the policy: the deletion rule it was credited to "
        "(due, held or not yet due), or a retention rule holding it. A highlighted rule "
        "decided no call this run: check its match."
    )
    return h(
        "section",
        h("h2", "Policies: match counts"),
        h("p", note),
        chart,
        table(columns, rows, name="policies", row_classes=classes),
    )


def _annotations(policy: Policy) -> str:
    return "; ".join(
        f"{ANNOTATION_WORDS[key]}: {text}"
        for key, text in policy.annotations
        if key in ANNOTATION_WORDS
    )


def _forecast(stats: RunStats) -> Markup:
    labels = [label for _, label in FORECAST_BUCKETS]
    ranked = sorted(stats.forecast.items(), key=lambda item: (-item[1].total(), item[0]))
    rows: list[tuple[str | int, ...]] = [
        (policy, *(c[label] for label in labels), c.total()) for policy, c in ranked
    ]
    per_bucket: Counter[str] = Counter()
    for _, counts in ranked:
        per_bucket.update(counts)
    columns = (
        [Column("policy")] + [Column(label, True) for label in labels] + [Column("total", True)]
    )
    return h(
        "section",
        h("h2", "Forecast: kept calls becoming due"),
        h("p", "Calls kept as not yet due, by the rule due first and when it will be."),
        bar_chart(
            [(label, per_bucket[label]) for label in labels],
            name="forecast",
            title="Calls becoming due, all policies",
            ink="due",
        ),
        table(
            columns,
            rows,
            name="forecast",
            total=("all policies", *(per_bucket[label] for label in labels), per_bucket.total())
            if rows
            else None,
        ),
    )


def _sweeps(stats: RunStats, context: RunContext) -> Markup | None:
    """Each sweep (`delete_after: 0d`): what it selected, what became of it, what held."""
    sweeps = [p for p in context.policies if p.kind == Kind.DELETE and p.duration == timedelta(0)]
    if not sweeps:
        return None
    parts: list[Markup | None] = [h("h2", "Sweeps: erasure account")]
    for sweep in sweeps:
        outcomes = stats.by_policy.get(sweep.name, Counter[str]())
        held = stats.held_from.get(sweep.name, Counter[str]())
        rows: list[tuple[str, int]] = [("due", stats.due_by_policy[sweep.name])]
        rows += [(_outcome_words(o), outcomes[o]) for o in OUTCOME_ORDER if outcomes[o]]
        rows += [(f"held by {hold}", n) for hold, n in sorted(held.items(), key=lambda i: -i[1])]
        holds = [p for p in context.policies if p.kind == Kind.RETAIN and held[p.name]]
        parts += [
            h("h3", f"{sweep.name} ({_annotations(sweep) or 'no annotations'})"),
            table((Column("calls"), Column("count", True)), rows, name=f"sweep-{sweep.name}"),
            h("ul", [h("li", overridden_words(sweep, hold, held[hold.name])) for hold in holds])
            if holds
            else None,
        ]
    return h("section", parts)


def _plan_applied(stats: RunStats, context: RunContext) -> Markup | None:
    """`apply`: the planned calls not deleted (by reason) and the due calls not planned."""
    if context.mode_name != "apply":
        return None
    rows: list[tuple[str, int]] = [
        (f"dropped: {reason}", n)
        for reason, n in sorted(stats.dropped.items(), key=lambda i: (-i[1], i[0]))
        if n
    ]
    rows += [
        ("dropped (all reasons)", stats.outcomes["dropped"]),
        ("due now, not in the plan", stats.outcomes["not_in_plan"]),
    ]
    return h(
        "section",
        h("h2", "Plan applied"),
        h(
            "p",
            "Plan sha256 ",
            h("code", context.plan_sha256 or "—"),
            ". Nothing below was deleted.",
        ),
        table((Column("calls"), Column("count", True)), rows, name="plan-applied"),
    )
