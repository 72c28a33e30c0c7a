"""Dead rules are loud: every run counts the calls each policy matched (all its
conditions hold, whatever the decision) and shows them in the summary, every report
format and the metrics; a retention rule that matched no call is warned about. The
expected counts are computed here by hand from the sandbox dataset, not by the engine."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from retention.sandbox import SandboxApp
from tests.e2e.support import Workspace, make_dataset, run_cli, sandbox
from tests.run.htmlpage import Page

POLICIES = """\
policies:
  - name: eu-90d
    delete_after: 90d
    match: {regions: [EU]}
  - name: billing-hold
    retain_for: 365d
    match: {agents: ["billing"]}
  - name: ghost-hold
    retain_for: forever
    match: {agents: ["no-such-agent"]}
"""
DEAD = "hold ghost-hold matched no call: check its conditions"


def by_hand(app: SandboxApp) -> dict[str, int]:
    names = {a.id: a.name for a in app.dataset.agents()}
    eu = billing = 0
    for call in app.dataset.iter_all_calls(transcripts=False):
        eu += call.deployment_region == "EU"
        billing += "billing" in (call.agent_name, names[call.agent_id])
    return {"billing-hold": billing, "eu-90d": eu, "ghost-hold": 0}


def _events(err: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for line in err.splitlines():
        if line.startswith("{"):
            found.append(json.loads(line))
    return found


@pytest.mark.parametrize("fmt", ["json", "md", "html"])
def test_match_counts_in_every_place_and_the_dead_hold_is_warned(
    tmp_path: Any,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    fmt: str,
) -> None:
    app = SandboxApp(make_dataset(calls=300, agents=5, seed=5), api_key="sk_car_sandbox")
    hand = by_hand(app)
    assert hand["eu-90d"] > 0 and hand["billing-hold"] > 0
    space = Workspace(tmp_path)
    space.policies.write_text(POLICIES)
    report, metrics = space.report(fmt), tmp_path / "retention.prom"
    with sandbox(app) as url:
        outcome = run_cli(
            capsys, monkeypatch, space, url, "--report", str(report), "--metrics-file", str(metrics)
        )
    assert outcome.code == 0, outcome.err
    events = _events(outcome.err)
    dead = [e for e in events if e.get("event") == "run.dead_hold"]
    assert [(e["policy"], e["message"]) for e in dead] == [("ghost-hold", DEAD)]
    assert dead[0]["level"] == "warning"
    summary = next(e for e in events if e.get("event") == "run.summary")
    assert summary["matched_by_policy"] == hand
    assert summary["dead_holds"] == ["ghost-hold"]
    text = report.read_text(encoding="utf-8")
    if fmt == "json":
        assert json.loads(text)["matched_by_policy"] == hand
        assert json.loads(text)["dead_holds"] == ["ghost-hold"]
    elif fmt == "md":
        section = text.split("## Calls matched, by policy")[1].split("\n## ")[0]
        rows = re.findall(r"^\| ([\w-]+) \| (\d+) \| (.*) \|$", section, re.M)
        assert {name: int(n) for name, n, _ in rows} == hand
        assert {name: note for name, _, note in rows}["ghost-hold"] == DEAD
    else:
        table = Page(text).tables["policies"]
        assert table.column("calls matched") == hand
        cells = {row[0]: row for row in table.rows}
        assert cells["ghost-hold"][4] == DEAD and cells["billing-hold"][4] == ""
    prom = metrics.read_text()
    for name, count in hand.items():
        line = re.search(
            rf'^retention_policy_matched\{{[^}}]*policy="{name}"[^}}]*\}} (\S+)$', prom, re.M
        )
        assert line is not None and float(line.group(1)) == count, name
