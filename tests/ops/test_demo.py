"""`retention demo`, run as a newcomer would: the console entry, a fresh directory,
no API key, nothing but loopback."""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from retention.demo import example_policies
from tests.run.htmlpage import Page

ROOT = Path(__file__).resolve().parents[2]


def run_demo(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CARTESIA_", "RETENTION_"))}
    # A base URL in the environment must not lure the demo off its sandbox.
    env["CARTESIA_BASE_URL"] = "https://api.invalid"
    env["TMPDIR"] = str(cwd)
    return subprocess.run(
        [sys.executable, "-m", "retention", "demo", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
def test_demo_tours_plan_apply_and_proof(tmp_path: Path) -> None:
    done = run_demo(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    [workdir] = list(tmp_path.glob("retention-demo-*"))
    audit_log = workdir / "audit.jsonl"

    for landmark in (
        "[1/5] sandbox",
        "[2/5] plan",
        "[3/5] apply",
        "[4/5] check",
        "[5/5] audit",
    ):
        assert landmark in out
    assert "DELETE requests sent by the plan: 0" in out
    assert f"audit log: {audit_log}" in out
    assert out.count("matches the audit log; transcript and summary gone") == 3
    assert "INTACT and CONFIRMED" in out
    assert "Done. Next:" in out

    # The plan selected what the apply then deleted, one audit line each.
    dry = json.loads((workdir / "plan.json").read_text())
    lines = [json.loads(line) for line in audit_log.read_text().splitlines()]
    events = [line["event"] for line in lines]
    sent = re.search(r"DELETE requests sent: (\d+)", out)
    assert sent is not None
    selected = dry["totals"]["selected"]
    assert selected > 0
    assert dry["totals"]["outcomes"] == {"would_delete": selected}
    assert int(sent.group(1)) == selected == events.count("deleted")
    assert events.count("delete_requested") == selected
    assert stat.S_IMODE(audit_log.stat().st_mode) == 0o600

    # The plan is the file whose digest was printed, pinned and recorded by the apply,
    # it holds exactly the calls deleted, and the audit check proved it line by line.
    plan = workdir / "tonight.plan"
    digest = hashlib.sha256(plan.read_bytes()).hexdigest()
    assert f"sha256 {digest}" in out
    with sqlite3.connect(f"file:{plan}?mode=ro", uri=True) as db:
        planned = {row[0] for row in db.execute("SELECT call_id FROM calls")}
    assert planned == {line["call_id"] for line in lines if line["event"] == "deleted"}
    [applied] = [line for line in lines if line["event"] == "run_started" and "plan" in line]
    assert applied["plan"]["sha256"] == digest and applied["dry_run"] is False
    assert f"plan check  {2 * selected} deletion lines of 1 apply run, every call" in out

    # The execute run's HTML report is the thing to open; it shows what was deleted.
    page_path = workdir / "run.html"
    assert f"Open the run's report: {page_path}" in out
    page = Page(page_path.read_text())
    assert sum(page.tables["policy"].column("deleted").values()) == selected
    assert page.chart("policy") == page.tables["policy"].column("selected")
    assert out.count(f"{selected} selected for deletion") == 2  # the dry run's and the run's
    log_page = Page((workdir / "audit-log.html").read_text())
    assert log_page.tables["runs"].total == [
        "all 2 runs",
        "",
        "",
        "",
        "",
        "",
        "",
        str(selected),
        "0",
    ]


def test_demo_refuses_a_directory_in_use(tmp_path: Path) -> None:
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "audit.jsonl").write_text("")
    done = run_demo(tmp_path, "--dir", "busy")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "retention: error: --dir: busy is not empty; pick a new directory"
    ]
    assert "Traceback" not in done.stderr


def test_example_policies_are_the_repositorys_policies() -> None:
    shipped = example_policies()
    names = sorted(p.name for p in shipped.iterdir() if p.suffix in {".yaml", ".yml"})
    expected = sorted(
        p.name for p in (ROOT / "policies").iterdir() if p.suffix in {".yaml", ".yml"}
    )
    assert names == expected and names
    for name in names:
        assert (shipped / name).read_bytes() == (ROOT / "policies" / name).read_bytes()
