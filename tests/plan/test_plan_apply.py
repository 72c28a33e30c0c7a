"""`retention plan` and `retention apply` end to end against the sandbox over loopback.

Expected sets come from the dataset by hand (tests.e2e.support.expected_deletions),
never from the engine; the plan file is read with sqlite3 directly, not our reader.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from retention.cli import main
from retention.plan.store import DIGEST_KEY, content_digest
from retention.sandbox import SandboxApp
from tests.e2e.support import (
    API_KEY,
    NOW,
    NOW_TEXT,
    Outcome,
    Workspace,
    deletes_sent,
    expected_deletions,
    make_dataset,
    read_audit,
    sandbox,
    workspace,
)
from tests.run.htmlpage import Page

__all__ = ["workspace"]

Run = pytest.CaptureFixture[str]

# POLICY_YAML plus a hold a test can switch on for one call through a sandbox hook.
POLICIES = """\
policies:
  - name: old-30d
    delete_after: 30d
  - name: billing-hold
    retain_for: forever
    match:
      agents: ["billing*"]
  - name: case-hold
    retain_for: forever
    match:
      metadata:
        case_hold: "C-1"
"""


@pytest.fixture
def app() -> SandboxApp:
    return SandboxApp(make_dataset(calls=400), api_key=API_KEY)


@pytest.fixture
def url(app: SandboxApp) -> Iterator[str]:
    with sandbox(app) as base_url:
        yield base_url


@pytest.fixture
def space(workspace: Workspace) -> Workspace:
    workspace.policies.write_text(POLICIES)
    return workspace


def cli(capsys: Run, monkeypatch: pytest.MonkeyPatch, *args: str) -> Outcome:
    monkeypatch.delenv("CARTESIA_BASE_URL", raising=False)
    for name in list(os.environ):
        if name.startswith("RETENTION_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("CARTESIA_API_KEY", API_KEY)
    capsys.readouterr()
    try:
        main(list(args))
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    else:  # pragma: no cover - main always exits
        code = 0
    captured = capsys.readouterr()
    return Outcome(code, captured.out, captured.err)


def common(space: Workspace, url: str, now: str = NOW_TEXT) -> list[str]:
    return [
        "--policies",
        str(space.policies),
        "--audit-log",
        str(space.audit_log),
        "--base-url",
        url,
        "--now",
        now,
    ]


def make_plan(capsys: Run, mp: pytest.MonkeyPatch, space: Workspace, url: str) -> tuple[Path, str]:
    out = space.root / "tonight.plan"
    done = cli(capsys, mp, "plan", *common(space, url), "--out", str(out))
    assert done.code == 0, done.err
    printed = re.search(r"sha256 ([0-9a-f]{64})", done.out)
    assert printed is not None, done.out
    return out, printed.group(1)


def planned_ids(plan: Path) -> set[str]:
    with sqlite3.connect(f"file:{plan}?mode=ro", uri=True) as db:
        return {row[0] for row in db.execute("SELECT call_id FROM calls")}


def apply(
    capsys: Run, mp: pytest.MonkeyPatch, space: Workspace, url: str, plan: Path, *flags: str
) -> Outcome:
    return cli(capsys, mp, "apply", str(plan), *common(space, url), *flags)


def stamp(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


# -- plan ------------------------------------------------------------------------------


def test_plan_lists_exactly_the_due_calls_sends_no_delete_and_prints_its_digest(
    capsys: Run, monkeypatch: pytest.MonkeyPatch, space: Workspace, app: SandboxApp, url: str
) -> None:
    expected = expected_deletions(app.dataset)
    assert len(expected) > 50

    plan, digest = make_plan(capsys, monkeypatch, space, url)

    assert deletes_sent(app) == 0
    assert planned_ids(plan) == expected
    assert digest == hashlib.sha256(plan.read_bytes()).hexdigest()
    assert plan.stat().st_mode & 0o222 == 0  # read-only once written
    with sqlite3.connect(f"file:{plan}?mode=ro", uri=True) as db:
        header = {k: json.loads(v) for k, v in db.execute("SELECT key, value FROM header")}
        indexes = [row[0] for row in db.execute("PRAGMA index_list(calls)")]
        policies = {row[0] for row in db.execute("SELECT DISTINCT policy FROM calls")}
    assert indexes  # call_id is indexed (UNIQUE)
    assert policies == {"old-30d"}
    assert header["calls"] == len(expected)
    assert header["by_policy"] == {"old-30d": len(expected)}
    assert sum(header["by_agent"].values()) == len(expected)
    assert header["now"] == NOW_TEXT
    assert header["base_url"] == url
    assert [p["sha256"] for p in header["policies"]] == [
        hashlib.sha256(space.policies.read_bytes()).hexdigest()
    ]
    # Never personal data beyond the audit log's: no transcript, phone number or metadata.
    columns = {row[1] for row in sqlite3.connect(plan).execute("PRAGMA table_info(calls)")}
    assert columns == {"call_id", "agent_id", "policy", "start_time", "age_seconds"}


def test_a_plan_is_never_overwritten(
    capsys: Run, monkeypatch: pytest.MonkeyPatch, space: Workspace, url: str
) -> None:
    plan, _ = make_plan(capsys, monkeypatch, space, url)
    before = plan.read_bytes()
    again = cli(capsys, monkeypatch, "plan", *common(space, url), "--out", str(plan))
    assert again.code == 2
    assert "already exists" in again.err
    assert plan.read_bytes() == before


# -- apply -----------------------------------------------------------------------------


def _patch(url: str, call_id: str, fields: dict[str, object]) -> None:
    answer = httpx.patch(f"{url}/_sandbox/calls/{call_id}", json=fields)
    assert answer.status_code == 200, answer.text


@dataclass(frozen=True)
class Drift:
    """What changed between plan and apply, and what the apply must then do (by hand)."""

    held: str
    redacted: str
    running: str
    later: datetime
    deleted: set[str]  # planned and still due
    not_planned: set[str]  # due at `later`, not in the plan
    dropped: dict[str, int]


def drift(app: SandboxApp, url: str, planned: set[str]) -> Drift:
    """Between plan and apply: a hold is added, one call is redacted by someone else,
    and one is no longer terminal (sandbox hooks, as a real API's changes would be);
    the apply runs ten days later, when more calls are due that nobody planned."""
    held, redacted, running = sorted(planned)[:3]
    _patch(url, held, {"metadata": {"case_hold": "C-1"}})
    _patch(url, redacted, {"redacted_at": "2026-05-31T00:00:00Z"})
    _patch(url, running, {"status": "in_progress"})
    later = NOW + timedelta(days=10)
    due_now = {
        call_id
        for call_id in expected_deletions(app.dataset, later)
        if call_id != held  # the new hold, by hand
    }
    not_planned = due_now - planned
    assert not_planned  # the dataset must give the test something to check
    return Drift(
        held,
        redacted,
        running,
        later,
        deleted=planned & due_now,
        not_planned=not_planned,
        dropped={"held by case-hold": 1, "already_redacted": 1, "not_terminal": 1},
    )


def test_apply_deletes_exactly_the_planned_calls_still_due_and_accounts_for_the_rest(
    capsys: Run, monkeypatch: pytest.MonkeyPatch, space: Workspace, app: SandboxApp, url: str
) -> None:
    plan, digest = make_plan(capsys, monkeypatch, space, url)
    planned = planned_ids(plan)
    changed = drift(app, url, planned)

    done = cli(
        capsys,
        monkeypatch,
        "apply",
        str(plan),
        *common(space, url, stamp(changed.later)),
        "--execute",
        "--expect-sha256",
        digest,
    )

    assert done.code == 0, done.err
    deleted = changed.deleted
    assert {changed.held, changed.redacted, changed.running}.isdisjoint(deleted)
    assert app.dataset.redacted_ids() == deleted  # (the hook's redaction is not the run's)
    assert deletes_sent(app) == len(deleted)
    lines = read_audit(space.audit_log)
    applied = [line for line in lines if line["event"] == "run_started"][-1]
    assert applied["plan"]["sha256"] == digest
    assert applied["dry_run"] is False
    finished = lines[-1]
    assert finished["event"] == "run_finished"
    outcomes = finished["counts"]["outcomes"]
    assert outcomes["deleted"] == len(deleted)
    assert outcomes["not_in_plan"] == len(changed.not_planned)
    assert outcomes["dropped"] == 3
    assert finished["counts"]["dropped"] == changed.dropped
    logged = {line["call_id"] for line in lines if line["event"] == "deleted"}
    assert logged == deleted


@pytest.mark.parametrize("suffix", ["json", "md", "html"])
def test_the_reports_of_an_apply_count_dropped_calls_by_reason_and_calls_not_in_plan(
    capsys: Run,
    monkeypatch: pytest.MonkeyPatch,
    space: Workspace,
    app: SandboxApp,
    url: str,
    suffix: str,
) -> None:
    plan, digest = make_plan(capsys, monkeypatch, space, url)
    changed = drift(app, url, planned_ids(plan))
    report = space.root / f"apply.{suffix}"
    done = cli(
        capsys, monkeypatch, "apply", str(plan), *common(space, url, stamp(changed.later)),
        "--execute", "--expect-sha256", digest, "--report", str(report),
    )  # fmt: skip
    assert done.code == 0, done.err
    text = report.read_text()
    missing = len(changed.not_planned)
    if suffix == "json":
        account = json.loads(text)["plan"]
        assert account == {
            "sha256": digest,
            "dropped": 3,
            "dropped_by_reason": dict(sorted(changed.dropped.items())),
            "not_in_plan": missing,
        }
    elif suffix == "md":
        section = text[text.index("## Plan applied") :]
        assert f"`{digest}`" in section
        assert "(dropped): 3\n" in section
        assert f"(not_in_plan): {missing}\n" in section
        for reason in changed.dropped:
            assert f"| {reason} | 1 |" in section
    else:
        page = Page(text)
        rows = page.tables["plan-applied"].column("count")
        assert rows == {
            **{f"dropped: {reason}": n for reason, n in changed.dropped.items()},
            "dropped (all reasons)": 3,
            "due now, not in the plan": missing,
        }
        assert digest in text


def test_the_run_summary_of_an_apply_names_each_reason_a_planned_call_was_dropped(
    capsys: Run, monkeypatch: pytest.MonkeyPatch, space: Workspace, app: SandboxApp, url: str
) -> None:
    plan, digest = make_plan(capsys, monkeypatch, space, url)
    changed = drift(app, url, planned_ids(plan))
    done = cli(
        capsys, monkeypatch, "apply", str(plan), *common(space, url, stamp(changed.later)),
        "--execute", "--expect-sha256", digest,
    )  # fmt: skip
    assert done.code == 0, done.err
    # Not a terminal: the summary is one JSON log line on stderr.
    logged = [json.loads(line) for line in done.err.splitlines() if line.startswith("{")]
    (summary,) = [entry for entry in logged if entry["event"] == "run.summary"]
    assert summary["dropped"] == changed.dropped
    assert summary["not_in_plan"] == len(changed.not_planned)


def test_apply_drops_planned_calls_that_are_gone(
    capsys: Run, monkeypatch: pytest.MonkeyPatch, space: Workspace, app: SandboxApp, url: str
) -> None:
    plan, digest = make_plan(capsys, monkeypatch, space, url)
    planned = planned_ids(plan)
    agent = next(a for a in app.dataset.agents() if a.name != "billing")
    gone = {c.id for c in app.dataset.iter_calls(agent.id, transcripts=False)} & planned
    assert gone
    assert httpx.delete(f"{url}/_sandbox/agents/{agent.id}").status_code == 200

    done = apply(capsys, monkeypatch, space, url, plan, "--execute", "--expect-sha256", digest)

    assert done.code == 0, done.err
    assert app.dataset.redacted_ids() == planned - gone
    assert read_audit(space.audit_log)[-1]["counts"]["dropped"] == {"gone": len(gone)}


def test_apply_without_execute_deletes_nothing_and_says_what_it_would(
    capsys: Run, monkeypatch: pytest.MonkeyPatch, space: Workspace, app: SandboxApp, url: str
) -> None:
    plan, digest = make_plan(capsys, monkeypatch, space, url)
    done = apply(capsys, monkeypatch, space, url, plan, "--expect-sha256", digest)
    assert done.code == 0, done.err
    assert deletes_sent(app) == 0
    assert read_audit(space.audit_log)[-1]["counts"]["outcomes"] == {
        "would_delete": len(planned_ids(plan))
    }


def test_a_changed_policy_file_is_refused_naming_it(
    capsys: Run, monkeypatch: pytest.MonkeyPatch, space: Workspace, app: SandboxApp, url: str
) -> None:
    plan, digest = make_plan(capsys, monkeypatch, space, url)
    space.policies.write_text(POLICIES.replace("30d", "20d"))
    done = apply(capsys, monkeypatch, space, url, plan, "--execute", "--expect-sha256", digest)
    assert done.code == 2
    assert "policy files changed" in done.err and str(space.policies) in done.err
    assert deletes_sent(app) == 0


def test_an_added_policy_file_is_refused(
    capsys: Run, monkeypatch: pytest.MonkeyPatch, space: Workspace, app: SandboxApp, url: str
) -> None:
    plan, digest = make_plan(capsys, monkeypatch, space, url)
    extra = space.root / "extra.yaml"
    extra.write_text("policies:\n  - name: all-hold\n    retain_for: forever\n")
    done = apply(
        capsys, monkeypatch, space, url, plan, "--policies", str(extra), "--execute",
        "--expect-sha256", digest,
    )  # fmt: skip
    assert done.code == 2
    assert str(extra) in done.err
    assert deletes_sent(app) == 0


def test_a_tampered_plan_is_refused_by_its_own_digest(
    capsys: Run, monkeypatch: pytest.MonkeyPatch, space: Workspace, app: SandboxApp, url: str
) -> None:
    plan, digest = make_plan(capsys, monkeypatch, space, url)
    victim = sorted(planned_ids(plan))[0].encode()
    data = plan.read_bytes()
    assert data.count(victim) >= 1
    swapped = victim[:-1] + (b"0" if victim[-1:] != b"0" else b"1")
    plan.chmod(0o644)
    plan.write_bytes(data.replace(victim, swapped))

    done = apply(capsys, monkeypatch, space, url, plan, "--execute", "--expect-sha256", digest)

    assert done.code == 2
    assert "changed after it was written" in done.err
    assert deletes_sent(app) == 0


def test_a_plan_with_a_forged_digest_and_huge_row_numbers_is_refused(
    capsys: Run, monkeypatch: pytest.MonkeyPatch, space: Workspace, app: SandboxApp, url: str
) -> None:
    """Whoever can write a plan can also recompute its content digest: the numbering of
    its rows is checked too, so a crafted row number cannot size memory (the seen-bitmap)."""
    plan, digest = make_plan(capsys, monkeypatch, space, url)
    plan.chmod(0o644)
    with sqlite3.connect(plan) as db:
        db.execute("UPDATE calls SET rowid = 1000000000000000 WHERE rowid = 1")
        db.execute("DELETE FROM header WHERE key = ?", (DIGEST_KEY,))
        db.execute("INSERT INTO header VALUES (?, ?)", (DIGEST_KEY, json.dumps(content_digest(db))))
    done = apply(capsys, monkeypatch, space, url, plan, "--execute", "--expect-sha256", digest)
    assert done.code == 2
    assert "not numbered 1..n" in done.err
    assert deletes_sent(app) == 0


def test_a_plan_of_other_bytes_than_the_approved_digest_is_refused(
    capsys: Run, monkeypatch: pytest.MonkeyPatch, space: Workspace, app: SandboxApp, url: str
) -> None:
    plan, digest = make_plan(capsys, monkeypatch, space, url)
    other = ("0" if digest[0] != "0" else "1") + digest[1:]
    done = apply(capsys, monkeypatch, space, url, plan, "--execute", "--expect-sha256", other)
    assert done.code == 2
    assert f"its sha256 is {digest}" in done.err
    assert deletes_sent(app) == 0
    assert not space.audit_log.read_text().count('"dry_run":false')


def test_a_plan_older_than_max_plan_age_is_refused(
    capsys: Run, monkeypatch: pytest.MonkeyPatch, space: Workspace, app: SandboxApp, url: str
) -> None:
    plan, digest = make_plan(capsys, monkeypatch, space, url)
    with sqlite3.connect(f"file:{plan}?mode=ro", uri=True) as db:
        (created,) = db.execute("SELECT value FROM header WHERE key = 'created'").fetchone()
    made = datetime.fromisoformat(json.loads(created).replace("Z", "+00:00"))
    late = stamp(made + timedelta(days=2, minutes=1))
    flags = ("--execute", "--expect-sha256", digest, "--max-plan-age", "2d")
    done = cli(capsys, monkeypatch, "apply", str(plan), *common(space, url, late), *flags)
    assert done.code == 2
    assert "older than --max-plan-age" in done.err
    assert deletes_sent(app) == 0
    in_time = stamp(made + timedelta(days=1, hours=23))
    done = cli(capsys, monkeypatch, "apply", str(plan), *common(space, url, in_time), *flags)
    assert done.code == 0, done.err


@pytest.mark.slow
def test_apply_is_not_limited_by_the_surge_guard_but_by_max_deletes(
    capsys: Run, monkeypatch: pytest.MonkeyPatch, space: Workspace
) -> None:
    big = SandboxApp(make_dataset(calls=2000), api_key=API_KEY)
    with sandbox(big) as url:
        plan, digest = make_plan(capsys, monkeypatch, space, url)
        planned = planned_ids(plan)
        # A first execute run (capped, as the belt asks) makes a history of 3 deletions:
        # the surge guard's line is max(1000, 3 x 3) = 1000, below the plan's size.
        first = cli(
            capsys, monkeypatch, "run", *common(space, url), "--execute", "--max-deletes", "3"
        )
        assert first.code == 3, first.err
        assert len(planned - big.dataset.redacted_ids()) > 1000
        pinned = ("--execute", "--expect-sha256", digest)
        capped = apply(capsys, monkeypatch, space, url, plan, *pinned, "--max-deletes", "1001")
        assert capped.code == 3, capped.err
        assert deletes_sent(big) == 3 + 1001
        done = apply(capsys, monkeypatch, space, url, plan, *pinned)
        assert done.code == 0, done.err
        assert big.dataset.redacted_ids() == planned


def test_plan_ids_are_what_apply_looks_up(tmp_path: Path) -> None:
    """The store on its own: rows in, digest stable, lookups by id, the seen bitmap."""
    from retention.plan.store import PlannedCall, PlanWriter, open_plan

    writer = PlanWriter(tmp_path / "p.plan")
    writer.open()
    ids = [f"call_{n:05d}" for n in range(12_345)]
    for call_id in reversed(ids):
        writer.add(PlannedCall(call_id, "agent_1", "old", None, 3600))
    writer.add(PlannedCall(ids[0], "agent_1", "old", None, 3600))  # listed twice
    digest = writer.commit({"format": 1, "created": stamp(datetime.now(UTC))})
    plan = open_plan(tmp_path / "p.plan")
    try:
        assert plan.sha256 == digest and plan.total == len(ids)
        rowid = plan.lookup(ids[7])
        assert rowid is not None and rowid[1] == "old"
        assert plan.lookup("call_missing") is None
        assert plan.mark(rowid[0]) and not plan.mark(rowid[0])
        assert plan.unseen == len(ids) - 1
    finally:
        plan.close()


def test_plan_and_apply_write_an_html_report_that_names_their_mode(
    capsys: Run, monkeypatch: pytest.MonkeyPatch, space: Workspace, app: SandboxApp, url: str
) -> None:
    expected = expected_deletions(app.dataset)
    plan_page = space.root / "plan.html"
    out = space.root / "reviewed.plan"
    done = cli(
        capsys, monkeypatch, "plan", *common(space, url), "--out", str(out),
        "--report", str(plan_page),
    )  # fmt: skip
    assert done.code == 0, done.err
    apply_page = space.root / "apply.html"
    assert cli(capsys, monkeypatch, "approve", str(out)).code == 0  # the pin: out.sha256
    applied = apply(capsys, monkeypatch, space, url, out, "--execute", "--report", str(apply_page))
    assert applied.code == 0, applied.err
    for page, mode in ((plan_page, "plan"), (apply_page, "apply")):
        html = page.read_text()
        assert f"Retention run: {mode}" in html
        assert str(len(expected)) in html  # the selected count is on the page
        assert "<script" not in html


def test_the_plan_carries_each_rules_annotations_never_per_call(
    capsys: Run, monkeypatch: pytest.MonkeyPatch, space: Workspace, url: str
) -> None:
    space.policies.write_text(
        "policies:\n"
        "  - name: old-30d\n"
        "    delete_after: 30d\n"
        "    legal_basis: Art. 6(1)(f) legitimate interest\n"
        "    category: support recordings\n"
        "    request_id: DSR-2026-0042\n"
        "  - name: billing-hold\n"
        "    retain_for: forever\n"
        "    case: LIT-7 (contract dispute)\n"
        "    match:\n"
        '      agents: ["billing*"]\n'
    )
    plan, _digest = make_plan(capsys, monkeypatch, space, url)
    with sqlite3.connect(f"file:{plan}?mode=ro", uri=True) as db:
        header = {k: json.loads(v) for k, v in db.execute("SELECT key, value FROM header")}
        columns = [row[1] for row in db.execute("PRAGMA table_info(calls)")]
    assert header["rules"] == [
        {
            "name": "old-30d",
            "kind": "delete_after",
            "duration": "30d",
            "legal_basis": "Art. 6(1)(f) legitimate interest",
            "category": "support recordings",
            "request_id": "DSR-2026-0042",
        },
        {
            "name": "billing-hold",
            "kind": "retain_for",
            "duration": "forever",
            "case": "LIT-7 (contract dispute)",
        },
    ]
    assert not {"legal_basis", "category", "request_id", "case"} & set(columns)
