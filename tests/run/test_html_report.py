"""`--report FILE.html`: every number a chart shows is in a table, and both equal the
counts computed here by hand from the sandbox dataset (never by the engine); values
from the API render as text; nothing personal and no URL reaches the page; its size
does not grow with the run."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from fnmatch import fnmatchcase
from typing import Any

import pytest

from retention.api.models import TERMINAL_STATUSES
from retention.run.context import RunContext
from retention.run.html_report import render_run_html
from retention.run.stats import AGE_BUCKETS, RunStats, bucket
from retention.sandbox import SandboxApp
from retention.sandbox.content import sensitive_strings
from tests.e2e.support import (
    NOW,
    Workspace,
    expected_deletions,
    make_dataset,
    run_cli,
    sandbox,
)
from tests.run.htmlpage import Page
from tests.run.rewrite import Rewriting

HOSTILE = "<img src=x onerror=alert(1)>"
POLICIES = """\
policies:
  - name: old-30d
    delete_after: 30d
  - name: billing-hold
    retain_for: forever
    match:
      agents: ["billing*"]
  - name: nowhere
    delete_after: 1d
    match: {agents: ["no-such-agent-*"]}
"""
# The buckets as the README states them, in days: [0, 1), [1, 7), ... and beyond.
AGE_EDGES = [
    (1, "under 1 day"),
    (7, "1 to 7 days"),
    (30, "7 to 30 days"),
    (90, "30 to 90 days"),
    (180, "90 to 180 days"),
    (365, "180 days to 1 year"),
    (730, "1 to 2 years"),
]
FORECAST_EDGES = [
    (1, "within 1 day"),
    (7, "in 1 to 7 days"),
    (30, "in 7 to 30 days"),
    (90, "in 30 to 90 days"),
    (365, "in 90 days to 1 year"),
]


def label(days: float, edges: list[tuple[int, str]], last: str) -> str:
    return next((name for edge, name in edges if days < edge), last)


def days(delta: timedelta) -> float:
    return delta.total_seconds() / 86400


class ByHand:
    """The dry run of POLICIES, counted from the dataset with DESIGN.md's rules."""

    def __init__(self, app: SandboxApp) -> None:
        dataset = app.dataset
        names = {a.id: a.name for a in dataset.agents()}
        self.deleted_agents = {a.id for a in dataset.agents() if a.deleted_at is not None}
        self.scanned = 0
        self.by_region: Counter[str] = Counter()
        self.by_agent: Counter[str] = Counter()
        self.age_due: Counter[str] = Counter()
        self.age_kept: Counter[str] = Counter()
        self.forecast: Counter[str] = Counter()
        self.held = 0
        self.not_yet_due = 0
        self.due: set[str] = set()
        # Calls each policy matches, whatever the decision: old-30d has no condition, so
        # every call; billing-hold any call whose agent's name (listed or its own) is billing*.
        self.billing_matched = 0
        for call in dataset.iter_all_calls(transcripts=False):
            self.scanned += 1
            own, listed = call.agent_name or "", names[call.agent_id]
            if fnmatchcase(own, "billing*") or fnmatchcase(listed, "billing*"):
                self.billing_matched += 1
            origin = call.start_time or call.end_time
            if call.status not in TERMINAL_STATUSES or call.redacted_at or call.zdr_enabled:
                continue
            if origin is None:
                continue
            age = NOW - origin
            billing = fnmatchcase(call.agent_name or names[call.agent_id], "billing*")
            age_label = label(days(age), AGE_EDGES, "2 years or more")
            if age < timedelta(days=30):
                self.not_yet_due += 1
                self.age_kept[age_label] += 1
                until = timedelta(days=30) - age
                if not billing:  # a billing call will still be held (forever) when 30 days old
                    self.forecast[label(days(until), FORECAST_EDGES, "in 1 year or more")] += 1
            elif billing:
                self.held += 1
                self.age_kept[age_label] += 1
            else:
                self.due.add(call.id)
                self.age_due[age_label] += 1
                self.by_region[call.deployment_region or "unknown"] += 1
                self.by_agent[call.agent_id] += 1


@pytest.fixture(scope="module")
def app() -> SandboxApp:
    return SandboxApp(make_dataset(calls=500, agents=6, seed=11), api_key="sk_car_sandbox")


@pytest.fixture
def hostile_url(app: SandboxApp) -> Iterator[str]:
    """The sandbox, with its first non-billing agent renamed to markup."""
    victim = next(a.id for a in app.dataset.agents() if not a.name.startswith("billing"))

    def rename(path: str, body: dict[str, Any]) -> dict[str, Any]:
        if path == "/agents":
            for agent in body["summaries"]:
                if agent["id"] == victim:
                    agent["name"] = HOSTILE
        return body

    with sandbox(Rewriting(app, rename)) as url:
        yield url


@pytest.fixture
def page(
    hostile_url: str,
    tmp_path: Any,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[Page, str]:
    space = Workspace(tmp_path)
    space.policies.write_text(POLICIES)
    report = space.report("html")
    outcome = run_cli(capsys, monkeypatch, space, hostile_url, "--report", str(report))
    assert outcome.code == 0, outcome.err
    text = report.read_text(encoding="utf-8")
    return Page(text), text


def test_the_dry_runs_numbers_equal_the_datasets_counted_by_hand(
    app: SandboxApp, page: tuple[Page, str]
) -> None:
    doc, _ = page
    hand = ByHand(app)
    assert hand.due == expected_deletions(app.dataset)  # the same rules, stated twice
    assert len(hand.due) > 20 and hand.held > 0 and hand.not_yet_due > 0  # all kinds present

    policy = doc.tables["policy"]
    assert policy.header == ["policy", "selected", "would delete"]  # no all-zero column
    assert policy.column("selected") == {"old-30d": len(hand.due)}
    assert doc.tables["region"].column("selected") == dict(hand.by_region)
    agents = doc.tables["agent"].column("selected")
    assert {re.findall(r"\((agent_\w+)\)", k)[-1]: n for k, n in agents.items()} == dict(
        hand.by_agent
    )
    assert list(agents.values()) == sorted(agents.values(), reverse=True)  # most first
    for key in agents:  # every deleted agent is marked, and only those
        agent_id = re.findall(r"\((agent_\w+)\)", key)[-1]
        assert key.endswith(", deleted agent") == (agent_id in hand.deleted_agents)

    ages = doc.tables["ages"]
    assert {k: v for k, v in ages.column("due").items() if v} == dict(hand.age_due)
    assert {k: v for k, v in ages.column("kept").items() if v} == dict(hand.age_kept)
    assert doc.tables["held"].column("calls held") == {"billing-hold": hand.held}
    forecast = doc.tables["forecast"]
    assert forecast.total is not None
    assert {k: v for k, v in doc.chart("forecast").items() if v} == dict(hand.forecast)
    cited = doc.tables["policies"].column("calls citing it")
    assert cited == {
        "old-30d": len(hand.due) + hand.held + hand.not_yet_due,
        "billing-hold": hand.held,
        "nowhere": 0,
    }
    matched = doc.tables["policies"].column("calls matched")
    assert matched == {"old-30d": hand.scanned, "billing-hold": hand.billing_matched, "nowhere": 0}
    assert hand.billing_matched > hand.held  # skipped and not-yet-due billing calls count too
    skipped = sum(doc.tables["skipped"].column("calls").values())
    assert skipped == hand.scanned - len(hand.due) - hand.held - hand.not_yet_due


def test_every_number_in_a_chart_is_in_a_table(page: tuple[Page, str]) -> None:
    doc, _ = page
    for name in ("policy", "region", "agent", "held", "skipped"):
        column = "calls held" if name == "held" else "calls" if name == "skipped" else "selected"
        assert doc.chart(name) == doc.tables[name].column(column), name
    assert doc.chart("age-due") == doc.tables["ages"].column("due")
    assert doc.chart("age-kept") == doc.tables["ages"].column("kept")
    assert doc.chart("matched") == doc.tables["policies"].column("calls matched")
    forecast = doc.tables["forecast"]
    assert forecast.total is not None
    totals = dict(zip(forecast.header[1:-1], map(int, forecast.total[1:-1]), strict=True))
    assert doc.chart("forecast") == totals
    assert set(doc.charts) <= {*doc.tables, "age-due", "age-kept", "matched"}


def test_a_dead_rule_is_highlighted_in_words_too(page: tuple[Page, str]) -> None:
    doc, text = page
    rows = {row[0]: row for row in doc.tables["policies"].rows}
    assert rows["nowhere"][4] == "dead: matched no call"
    assert rows["old-30d"][4] == "" and rows["billing-hold"][4] == ""
    assert re.search(r'<tr class="dead"><td>nowhere</td>', text)


def test_the_header_names_the_run_its_policy_files_and_digests(page: tuple[Page, str]) -> None:
    doc, _ = page
    for words in ("Run id", "Mode", "dry run", "Started", "Finished", "Duration", "Exit code"):
        assert words in doc.text
    files = doc.tables["policy-files"]
    assert len(files.rows) == 1 and files.rows[0][0].endswith("policies.yaml")
    assert re.fullmatch(r"[0-9a-f]{64}", files.rows[0][1])


def test_an_agent_name_of_markup_renders_as_text(page: tuple[Page, str]) -> None:
    doc, text = page
    assert doc.tags["img"] == 0 and "onerror=" not in [k for k, _ in doc.attributes]
    assert HOSTILE not in text
    assert HOSTILE in doc.text  # shown, as text


def test_no_personal_value_and_no_url_reach_the_page(
    app: SandboxApp, page: tuple[Page, str]
) -> None:
    _, text = page
    personal = {s for c in app.dataset.iter_all_calls() for s in sensitive_strings(c)}
    personal |= {n.number or "" for a in app.dataset.agents() for n in a.phone_numbers or ()}
    personal.discard("")
    assert personal and not [value for value in personal if value in text]
    assert not re.search(r"https?:|//[a-z]|url\(|@import", text, re.IGNORECASE)
    assert "<script" not in text and "<link" not in text


def test_the_markdown_report_is_sorted_by_count_and_has_no_all_zero_column(
    app: SandboxApp,
    hostile_url: str,
    tmp_path: Any,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    space = Workspace(tmp_path)
    space.policies.write_text(POLICIES)
    report = space.report("md")
    assert run_cli(capsys, monkeypatch, space, hostile_url, "--report", str(report)).code == 0
    text = report.read_text()
    hand = ByHand(app)
    assert re.search(r"^- Started: \S+Z; finished: \S+Z; duration: [\d.]+ s$", text, re.M)
    assert re.search(r"^\| \S+policies\.yaml \| `[0-9a-f]{64}` \|$", text, re.M)
    agents = text.split("## Selected for deletion, by agent")[1].split("\n## ")[0]
    assert "| agent_id | agent_name | total | would_delete |" in agents  # no all-zero column
    rows = [
        line.split(" | ") for line in agents.splitlines() if re.match(r"\| agent_[0-9a-f]", line)
    ]
    counts = [int(row[2]) for row in rows]
    assert counts == sorted(counts, reverse=True)
    assert {row[0].lstrip("| ") for row in rows} == set(hand.by_agent)
    for row in rows:
        marked = row[1].endswith("(deleted agent)")
        assert marked == (row[0].lstrip("| ") in hand.deleted_agents)


def synthetic_stats(calls: int, agents: int, regions: int, causes: int) -> RunStats:
    """A run's counters filled directly, as a run of `calls` calls would leave them."""
    stats = RunStats(dry_run=False)
    stats.scanned, stats.agents, stats.finished_unix = calls, agents, stats.started_unix + 60
    share = calls // 2
    for i in range(agents):
        stats.agent_names[f"agent_{i:06d}"] = f"agent number {i}"
        stats.by_agent[f"agent_{i:06d}"] = Counter(deleted=share // agents, failed=1)
    for i in range(regions):
        stats.by_region[f"R{i}"] = Counter(deleted=share // regions)
    stats.by_policy["old-30d"] = Counter(deleted=share)
    stats.due_by_policy["old-30d"] = share
    stats.kept["not_yet_due"] = calls - share
    for i in range(causes):
        stats.record_failure(f"gave up after {i} attempts: HTTP 503")
    for age in (0.5, 3, 20, 50, 100, 200, 500, 900):
        stats.age_due[bucket(age, AGE_BUCKETS)] += share // 8
        stats.age_kept[bucket(age, AGE_BUCKETS)] += share // 8
        stats.record_forecast("old-30d", age * 86400)
    return stats


def test_the_pages_size_does_not_grow_with_the_run() -> None:
    context = RunContext(
        run_id="r" * 32, dry_run=False, now=NOW, shard=None, policy_sources=(("p.yaml", "0" * 64),)
    )
    small = render_run_html(synthetic_stats(10_000, 20, 3, 5), context)
    big = render_run_html(synthetic_stats(1_000_000, 20, 3, 5), context)
    assert abs(len(big) - len(small)) < 0.02 * len(small), (len(small), len(big))
    # Any number of agents, regions and causes: the top ones, then "the rest".
    wide = render_run_html(synthetic_stats(1_000_000, 50_000, 5_000, 5_000), context)
    assert len(wide) < 1.6 * len(small), (len(small), len(wide))
    doc = Page(wide)
    assert len(doc.tables["agent"].rows) == 15 + 2  # the top agents, the rest, the total
    assert doc.tables["agent"].rows[-2][0] == "the rest (49985)"
    assert doc.tables["region"].rows[-2][0] == "the rest (4985)"
    assert len(doc.tables["failures"].rows) == 21  # 20 causes and "other"
    assert doc.tables["failures"].column("failures")["other"] == 5_000 - 20
