"""An erasure sweep's account, end to end: calls matched, erased, held (by which rule),
not terminal yet, with no timestamp, already redacted, in the JSON, Markdown and HTML
reports.

Two sweeps. `erase-dsr-7` (a customer id): the customer's calls are made through the
sandbox's hook (PATCH a call's fields), one group per case, so its account is known by
construction. A redacted call has lost its metadata, so a sweep by metadata can never
recognise it again (its `already redacted` row stays 0; the audit log answers for its
earlier erasures). `erase-eu` (a region, which a redacted call keeps): its account is
counted from the dataset by hand, where every case occurs.
"""

from __future__ import annotations

import json
from collections import Counter
from fnmatch import fnmatchcase
from typing import Any

import httpx
import pytest

from retention.api.models import TERMINAL_STATUSES
from retention.sandbox import SandboxApp
from tests.e2e.support import NOW, Workspace, make_dataset, workspace
from tests.plan.test_plan_apply import Run, cli, common
from tests.run.htmlpage import Page

__all__ = ["workspace"]

POLICIES = """\
policies:
  - name: erase-dsr-7
    delete_after: 0d
    request_id: DSR-7
    match:
      metadata:
        customer_id: "dsr-7"
  - name: erase-eu
    delete_after: 0d
    match:
      regions: [EU]
  - name: billing-hold
    retain_for: forever
    match:
      agents: ["billing*"]
"""
CUSTOMER = {"customer_id": "dsr-7"}
# What the hook makes of each group of the customer's calls, and how many of each.
GROUPS: dict[str, tuple[dict[str, object], int]] = {
    "erased": ({}, 3),
    "held": ({}, 2),  # calls of billing agents
    "not_terminal": ({"status": "active"}, 2),
    "no_timestamp": ({"start_time": None, "end_time": None}, 2),
    "already_redacted": ({"redacted_at": "2026-05-01T00:00:00Z"}, 2),
}
# The API shows a redacted call without its metadata: the customer's id is gone with it.
UNRECOGNISABLE = {"already_redacted"}


@pytest.fixture(scope="module")
def app() -> SandboxApp:
    return SandboxApp(make_dataset(calls=300, agents=6, seed=3), api_key="sk_car_sandbox")


@pytest.fixture(scope="module")
def customer(app: SandboxApp, url: str) -> dict[str, set[str]]:
    """Give the customer's id to chosen calls, one group per case of the account."""
    names = {agent.id: agent.name for agent in app.dataset.agents()}
    eligible = [
        call
        for call in app.dataset.iter_all_calls(transcripts=False)
        if call.status in TERMINAL_STATUSES
        and call.redacted_at is None
        and not call.zdr_enabled
        and call.start_time is not None
        and call.start_time < NOW
        and (call.deployment_region or "").upper() != "EU"  # erase-eu's calls stay its own
    ]
    billing = [c for c in eligible if fnmatchcase(names[c.agent_id], "billing*")]
    others = [c for c in eligible if not fnmatchcase(names[c.agent_id], "billing*")]
    groups: dict[str, set[str]] = {}
    for group, (fields, count) in GROUPS.items():
        pool = billing if group == "held" else others
        chosen, pool[:] = pool[:count], pool[count:]
        assert len(chosen) == count
        for call in chosen:
            answer = httpx.patch(
                f"{url}/_sandbox/calls/{call.id}", json={**fields, "metadata": CUSTOMER}
            )
            assert answer.status_code == 200, answer.text
        groups[group] = {c.id for c in chosen}
    return groups


@pytest.fixture
def space(workspace: Workspace) -> Workspace:
    workspace.policies.write_text(POLICIES)
    return workspace


def expected(outcome: str) -> dict[str, object]:
    counts = {g: n for g, (_, n) in GROUPS.items() if g not in UNRECOGNISABLE}
    return {
        "policy": "erase-dsr-7",
        "matched": sum(counts.values()),
        "due": counts["erased"],
        "outcomes": {outcome: counts["erased"]},
        "held_by": {"billing-hold": counts["held"]},
        "not_terminal": counts["not_terminal"],
        "no_timestamp": counts["no_timestamp"],
        "already_redacted": 0,
        "other_skips": {},
    }


def eu_by_hand(app: SandboxApp, outcome: str) -> dict[str, object]:
    """erase-eu's account from the dataset, with DESIGN.md's rules in their order."""
    names = {agent.id: agent.name for agent in app.dataset.agents()}
    counts: Counter[str] = Counter()
    for call in app.dataset.iter_all_calls(transcripts=False):
        if (call.deployment_region or "").upper() != "EU":
            continue
        counts["matched"] += 1
        if call.status not in TERMINAL_STATUSES:
            counts["not_terminal"] += 1
        elif call.redacted_at is not None:
            counts["already_redacted"] += 1
        elif call.zdr_enabled:
            counts["zdr"] += 1
        elif call.start_time is None and call.end_time is None:
            counts["no_timestamp"] += 1
        elif fnmatchcase(names[call.agent_id], "billing*"):
            counts["held"] += 1
        else:
            counts["due"] += 1
    return {
        "policy": "erase-eu",
        "matched": counts["matched"],
        "due": counts["due"],
        "outcomes": {outcome: counts["due"]},
        "held_by": {"billing-hold": counts["held"]} if counts["held"] else {},
        "not_terminal": counts["not_terminal"],
        "no_timestamp": counts["no_timestamp"],
        "already_redacted": counts["already_redacted"],
        "other_skips": {"zdr": counts["zdr"]} if counts["zdr"] else {},
    }


def rows(account: dict[str, Any], erased: str) -> list[tuple[str, int]]:
    """The table every format shows, by hand from the account."""
    table = [("calls matched", account["matched"]), ("due", account["due"])]
    table += [(erased, n) for n in account["outcomes"].values()]
    table += [(f"held by {hold}", n) for hold, n in account["held_by"].items()]
    table += [
        ("not terminal yet", account["not_terminal"]),
        ("no timestamp", account["no_timestamp"]),
        ("already redacted", account["already_redacted"]),
    ]
    return table + [(f"skipped: {why}", n) for why, n in account["other_skips"].items()]


def test_every_case_occurs_in_the_dataset(app: SandboxApp) -> None:
    eu = eu_by_hand(app, "deleted")
    for case in ("due", "not_terminal", "no_timestamp", "already_redacted"):
        assert eu[case], case
    assert eu["held_by"] and eu["other_skips"]


@pytest.mark.usefixtures("customer")
def test_the_dry_runs_markdown_and_html_give_each_sweep_every_row(
    capsys: Run, monkeypatch: pytest.MonkeyPatch, space: Workspace, app: SandboxApp, url: str
) -> None:
    markdown, html = space.root / "dry.md", space.root / "dry.html"
    for report in (markdown, html):
        done = cli(capsys, monkeypatch, "run", *common(space, url), "--report", str(report))
        assert done.code == 0, done.err
    page = Page(html.read_text())
    for account in (expected("would_delete"), eu_by_hand(app, "would_delete")):
        name, table = account["policy"], rows(account, "would delete")
        section = markdown.read_text().split(f"## Sweep {name}: erasure account")[1]
        shown = section.split("\n## ")[0]
        for what, count in table:
            assert f"| {what} | {count} |" in shown
        assert [(row[0], int(row[1])) for row in page.tables[f"sweep-{name}"].rows] == table


def test_the_execute_runs_json_report_answers_for_every_matched_call(
    capsys: Run,
    monkeypatch: pytest.MonkeyPatch,
    space: Workspace,
    customer: dict[str, set[str]],
    app: SandboxApp,
    url: str,
) -> None:
    eu = eu_by_hand(app, "deleted")
    report = space.root / "erasure.json"
    done = cli(
        capsys, monkeypatch, "run", *common(space, url), "--execute", "--max-deletes", "1000",
        "--report", str(report),
    )  # fmt: skip
    assert done.code == 0, done.err
    assert json.loads(report.read_text())["sweeps"] == [expected("deleted"), eu]
    deleted = {line["call_id"] for line in space.lines() if line["event"] == "deleted"}
    assert customer["erased"] <= deleted
    assert len(deleted) == len(customer["erased"]) + int(eu["due"])  # type: ignore[call-overload]
