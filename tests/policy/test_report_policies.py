"""The run's JSON and Markdown reports list every policy with its annotations, count a
call under every rule holding it, and say when a hold actually kept calls a sweep
would have erased. The expected counts are read from the dataset by hand."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from retention.api.models import TERMINAL_STATUSES
from retention.sandbox import Dataset, SandboxApp
from tests.e2e.support import API_KEY, NOW, Workspace, make_dataset, run_cli, sandbox

POLICIES = """\
policies:
  - name: erasure
    delete_after: 0d
    request_id: DSR-2026-7
    legal_basis: GDPR Art. 17
    match: {regions: [EU]}
  - name: old-90d
    delete_after: 90d
    category: call recordings
  - name: contract-hold
    retain_for: 52w
    case: C-42
    match: {statuses: [completed]}
  - name: region-hold
    retain_for: forever
    match: {regions: [EU, APAC]}
"""
ANNOTATIONS = ("DSR-2026-7", "GDPR Art. 17", "call recordings", "C-42")


def held_by_hand(dataset: Dataset) -> tuple[Counter[str], dict[str, Counter[str]], int]:
    """Every holder of each held call; the same by credited deletion rule; calls held."""
    held_by: Counter[str] = Counter()
    held_from: dict[str, Counter[str]] = {}
    held = 0
    for call in dataset.iter_all_calls(transcripts=False):
        origin = call.start_time or call.end_time
        if call.status not in TERMINAL_STATUSES or call.redacted_at or call.zdr_enabled:
            continue
        if origin is None:
            continue
        age = NOW - origin
        eu = call.deployment_region == "EU"
        if eu and age >= timedelta(0):
            credited = "erasure"
        elif age >= timedelta(days=90):
            credited = "old-90d"
        else:
            continue
        holders = []
        if call.status == "completed" and age < timedelta(weeks=52):
            holders.append("contract-hold")
        if call.deployment_region in ("EU", "APAC"):
            holders.append("region-hold")
        held += bool(holders)
        for holder in holders:
            held_by[holder] += 1
            held_from.setdefault(credited, Counter())[holder] += 1
    return held_by, held_from, held


@pytest.fixture
def app() -> SandboxApp:
    return SandboxApp(make_dataset(calls=300, agents=6, seed=7), api_key=API_KEY)


@pytest.fixture
def url(app: SandboxApp) -> Iterator[str]:
    with sandbox(app) as base_url:
        yield base_url


def test_reports_list_policies_every_holder_and_what_holds_kept_from_a_sweep(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    app: SandboxApp,
    url: str,
) -> None:
    held_by, held_from, held = held_by_hand(app.dataset)
    both = held_from["erasure"]
    assert both["contract-hold"] and both["region-hold"] and held < sum(held_by.values())
    space = Workspace(tmp_path)
    space.policies.write_text(POLICIES)
    json_report, md_report = space.report("json"), space.report("md")

    result = run_cli(capsys, monkeypatch, space, url, "--report", str(json_report))
    assert result.code == 0, result.err
    result = run_cli(capsys, monkeypatch, space, url, "--execute", "--report", str(md_report))
    assert result.code == 0, result.err

    totals = json.loads(json_report.read_text())
    assert totals["kept"]["by_reason"]["held"] == held
    assert totals["kept"]["by_retention_policy"] == dict(sorted(held_by.items()))
    where = str(space.policies)
    erasure_notes = [
        {
            "policy": "region-hold",
            "calls": both["region-hold"],
            "note": f"a permanent retention rule, region-hold, overrode part of erasure: it "
            f"kept {both['region-hold']} calls erasure would have erased",
        },
        {
            "policy": "contract-hold",
            "calls": both["contract-hold"],
            "note": f"a 52-week retention rule, contract-hold (case: C-42), overrode part of "
            f"erasure: it kept {both['contract-hold']} calls erasure would have erased",
        },
    ]
    assert both["region-hold"] > both["contract-hold"]  # the order above: most calls first
    assert totals["policies"] == [
        {
            "name": "erasure",
            "rule": "delete_after",
            "duration": "0d",
            "where": f"{where}:2",
            "legal_basis": "GDPR Art. 17",
            "request_id": "DSR-2026-7",
            "overridden_by": erasure_notes,
        },
        {
            "name": "old-90d",
            "rule": "delete_after",
            "duration": "90d",
            "where": f"{where}:7",
            "category": "call recordings",
        },
        {
            "name": "contract-hold",
            "rule": "retain_for",
            "duration": "52w",
            "where": f"{where}:10",
            "case": "C-42",
        },
        {
            "name": "region-hold",
            "rule": "retain_for",
            "duration": "forever",
            "where": f"{where}:14",
        },
    ]

    markdown = md_report.read_text()
    assert "| erasure | delete_after: 0d | " in markdown
    assert "| legal basis: GDPR Art. 17; request: DSR-2026-7 |" in markdown
    assert "| contract-hold | retain_for: 52w | " in markdown and "| case: C-42 |" in markdown
    section = markdown.split("## Sweeps overridden by retention rules\n\n", 1)[1]
    assert section.splitlines()[:2] == [f"- {note['note']}" for note in erasure_notes]
    # Annotations are the record of processing, not of each call: never in the audit log.
    lines = space.lines()
    # Per-call lines of an annotated rule (old-90d: every EU call is held forever).
    assert any(line.get("policy") == "old-90d" for line in lines if line["event"] == "deleted")
    log = space.audit_log.read_text()
    for text in ANNOTATIONS:
        assert text not in log
