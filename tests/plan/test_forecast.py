"""The forecast: kept calls becoming due within 7 and 30 days (or the horizon), by policy.

Expected counts come from the sandbox's dataset and the policies written out by hand
below (DESIGN.md's rules: due once the age reaches both the deletion rule's duration
and the longest matching hold's), never from the engine.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections import Counter
from datetime import timedelta
from fnmatch import fnmatchcase
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from retention.api.models import TERMINAL_STATUSES
from retention.run.forecast import Forecast
from retention.sandbox import SandboxApp
from tests.e2e.support import NOW, Workspace, make_dataset, workspace
from tests.plan.test_plan_apply import Run, cli, common
from tests.run.htmlpage import Page

__all__ = ["workspace"]

POLICIES = """\
policies:
  - name: old-30d
    delete_after: 30d
  - name: eu-10d
    delete_after: 10d
    match:
      regions: [EU]
  - name: billing-hold
    retain_for: 40d
    match:
      agents: ["billing*"]
  - name: apac-hold
    retain_for: forever
    match:
      regions: [APAC]
"""
DAY = 86400


def by_hand(app: SandboxApp, horizon: int) -> dict[str, Counter[int]]:
    """Policy -> window (days) -> kept calls becoming due within it."""
    names = {agent.id: agent.name for agent in app.dataset.agents()}
    counts: dict[str, Counter[int]] = {}
    for call in app.dataset.iter_all_calls(transcripts=False):
        origin = call.start_time or call.end_time
        if call.status not in TERMINAL_STATUSES or call.redacted_at or call.zdr_enabled:
            continue  # not counted: not terminal yet, or never to be deleted
        if origin is None:
            continue
        region = (call.deployment_region or "").upper()
        if region == "APAC":
            continue  # held forever
        policy, wait = ("eu-10d", 10) if region == "EU" else ("old-30d", 30)
        agent_names = (call.agent_id, names[call.agent_id], call.agent_name or "")
        if any(fnmatchcase(name, "billing*") for name in agent_names):
            wait = max(wait, 40)  # still held by billing-hold until 40 days old
        seconds = (origin + timedelta(days=wait) - NOW).total_seconds()
        if seconds <= 0:
            continue  # due now: not a forecast
        day = math.ceil(seconds / DAY)
        for window in {7, 30, horizon}:
            if window <= horizon and day <= window:
                counts.setdefault(policy, Counter())[window] += 1
    return counts


def expected_summary(app: SandboxApp, horizon: int) -> dict[str, object]:
    hand = by_hand(app, horizon)
    shown = sorted({w for w in (7, 30) if w < horizon} | {horizon})
    return {
        "horizon_days": horizon,
        "windows_days": shown,
        "by_policy": {p: {f"{w}d": hand[p][w] for w in shown} for p in sorted(hand)},
        "total": {f"{w}d": sum(c[w] for c in hand.values()) for w in shown},
    }


@pytest.fixture(scope="module")
def app() -> SandboxApp:
    return SandboxApp(make_dataset(calls=600, agents=6, seed=5), api_key="sk_car_sandbox")


@pytest.fixture
def space(workspace: Workspace) -> Workspace:
    workspace.policies.write_text(POLICIES)
    return workspace


def test_the_dataset_exercises_every_case(app: SandboxApp) -> None:
    hand = by_hand(app, 30)
    assert hand["old-30d"][7] and hand["eu-10d"][7]  # some due within a week, per policy
    assert hand["old-30d"][30] > hand["old-30d"][7]
    # Calls held now by billing-hold (due under their deletion rule, under 40 days old)
    # count too: the hold ends within the horizon.
    names = {agent.id: agent.name for agent in app.dataset.agents()}
    held_now = []
    for call in app.dataset.iter_all_calls(transcripts=False):
        origin = call.start_time or call.end_time
        region = (call.deployment_region or "").upper()
        eligible = call.status in TERMINAL_STATUSES and not call.redacted_at
        if not eligible or call.zdr_enabled or origin is None or region == "APAC":
            continue
        wait = timedelta(days=10 if region == "EU" else 30)
        if fnmatchcase(names[call.agent_id], "billing*") and wait <= NOW - origin:
            held_now.append(NOW - origin < timedelta(days=40))
    assert any(held_now)


def test_a_dry_run_reports_the_forecast_in_json_markdown_html_and_the_summary(
    capsys: Run, monkeypatch: pytest.MonkeyPatch, space: Workspace, app: SandboxApp, url: str
) -> None:
    expected = expected_summary(app, 30)
    reports = {ext: space.root / f"report.{ext}" for ext in ("json", "md", "html")}
    for report in reports.values():
        done = cli(capsys, monkeypatch, "run", *common(space, url), "--report", str(report))
        assert done.code == 0, done.err
    assert json.loads(reports["json"].read_text())["forecast"] == expected
    summary = json.loads(next(line for line in done.err.splitlines() if '"run.summary"' in line))
    assert summary["forecast"] == expected

    markdown = reports["md"].read_text()
    section = markdown.split("## Becoming due (next 30 days)")[1].split("\n## ")[0]
    for policy, counts in expected["by_policy"].items():  # type: ignore[attr-defined]
        assert f"| {policy} | {counts['7d']} | {counts['30d']} |" in section

    table = Page(reports["html"].read_text()).tables["upcoming"]
    assert table.header == ["policy", "due within 7d", "due within 30d"]
    by_policy = expected["by_policy"]
    assert table.column("due within 7d") == {p: c["7d"] for p, c in by_policy.items()}  # type: ignore[attr-defined]
    assert table.column("due within 30d") == {p: c["30d"] for p, c in by_policy.items()}  # type: ignore[attr-defined]


@pytest.mark.parametrize("horizon", [10, 45])
def test_plan_with_a_horizon_records_and_prints_its_forecast(
    capsys: Run,
    monkeypatch: pytest.MonkeyPatch,
    space: Workspace,
    app: SandboxApp,
    url: str,
    horizon: int,
) -> None:
    expected = expected_summary(app, horizon)
    out = space.root / "tonight.plan"
    done = cli(
        capsys, monkeypatch, "plan", *common(space, url), "--out", str(out),
        "--horizon", f"{horizon}d",
    )  # fmt: skip
    assert done.code == 0, done.err
    with sqlite3.connect(f"file:{out}?mode=ro", uri=True) as db:
        (stored,) = db.execute("SELECT value FROM header WHERE key = 'forecast'").fetchone()
    assert json.loads(stored) == expected
    total = expected["total"]
    printed = ", ".join(f"{n} within {w}" for w, n in total.items())  # type: ignore[attr-defined]
    assert f"becoming due: {printed}" in done.out


@pytest.mark.parametrize("horizon", ["0d", "367d", "30", "1y", "-3d", "2.5d"])
def test_a_bad_horizon_is_refused_before_any_request(
    capsys: Run,
    monkeypatch: pytest.MonkeyPatch,
    space: Workspace,
    app: SandboxApp,
    url: str,
    horizon: str,
) -> None:
    before = sum(app.stats.requests.values())
    out = space.root / "x.plan"
    done = cli(
        capsys, monkeypatch, "plan", *common(space, url), "--out", str(out),
        "--horizon", horizon,
    )  # fmt: skip
    assert done.code == 2
    assert "--horizon" in done.err
    assert len(done.err.strip().splitlines()) == 1
    assert sum(app.stats.requests.values()) == before
    assert not out.exists()


# -- the histogram against a brute-force count -----------------------------------------

DUE_IN = st.one_of(
    st.integers(min_value=1, max_value=400 * DAY),  # whole seconds
    st.integers(min_value=1, max_value=400).map(lambda d: d * DAY),  # exact day edges
    st.floats(min_value=0.001, max_value=400.0 * DAY, allow_nan=False),
)


@settings(max_examples=200, deadline=None)
@given(
    horizon=st.integers(min_value=1, max_value=366),
    calls=st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), DUE_IN), max_size=60),
)
def test_the_day_histogram_counts_what_a_brute_force_count_finds(
    horizon: int, calls: list[tuple[str, float]]
) -> None:
    forecast = Forecast(horizon)
    for policy, seconds in calls:
        forecast.add(policy, seconds)
    summary = forecast.summary()
    windows = [w for w in (7, 30) if w < horizon] + [horizon]
    assert summary["windows_days"] == windows
    for policy in ("a", "b", "c"):
        for window in windows:
            brute = sum(1 for p, s in calls if p == policy and 0 < s <= window * DAY)
            assert forecast.within(policy, window) == brute
            assert summary["by_policy"].get(policy, {}).get(f"{window}d", 0) == brute
    # Flat memory: one counter per day up to the horizon, per policy, whatever the calls.
    assert all(len(days) == horizon for days in forecast.days.values())
    assert len(forecast.days) <= 3


def test_a_forecast_is_empty_for_calls_due_beyond_the_horizon(tmp_path: Path) -> None:
    forecast = Forecast(7)
    forecast.add("a", 7 * DAY + 1)
    assert forecast.summary()["by_policy"] == {}
    assert forecast.summary()["total"] == {"7d": 0}
