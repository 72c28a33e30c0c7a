"""`retention audit verify LOG --plan PLAN` against real apply runs over loopback.

The forged log is written with the chain's own `seal` and `encode_line`, so its chain
stays valid and only the plan check can find the deletion that was never planned.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from retention.audit.chain import encode_line, seal
from retention.sandbox import SandboxApp
from tests.e2e.support import Workspace, expected_deletions, read_audit, workspace
from tests.plan.test_plan_apply import Run, app, cli, common, make_plan, planned_ids, space, url

__all__ = ["app", "space", "url", "workspace"]


def applied(
    capsys: Run, mp: pytest.MonkeyPatch, space: Workspace, url: str
) -> tuple[Path, set[str]]:
    plan, digest = make_plan(capsys, mp, space, url)
    done = cli(
        capsys, mp, "apply", str(plan), *common(space, url), "--execute", "--expect-sha256", digest
    )
    assert done.code == 0, done.err
    return plan, planned_ids(plan)


def verify(capsys: Run, mp: pytest.MonkeyPatch, space: Workspace, plan: Path) -> tuple[int, str]:
    done = cli(capsys, mp, "audit", "verify", str(space.audit_log), "--plan", str(plan))
    return done.code, done.out + done.err


def test_a_genuine_apply_is_proved_line_by_line(
    capsys: Run, monkeypatch: pytest.MonkeyPatch, space: Workspace, url: str
) -> None:
    plan, planned = applied(capsys, monkeypatch, space, url)
    # Nothing changed since the plan: each planned call has an intent and a `deleted`.
    code, said = verify(capsys, monkeypatch, space, plan)
    assert code == 0, said
    assert f"plan check  {2 * len(planned)} deletion lines of 1 apply run, every call" in said


def test_a_deletion_appended_to_the_apply_run_is_named_though_the_chain_holds(
    capsys: Run, monkeypatch: pytest.MonkeyPatch, space: Workspace, app: SandboxApp, url: str
) -> None:
    plan, planned = applied(capsys, monkeypatch, space, url)
    lines = read_audit(space.audit_log)
    (run_id,) = [
        line["run_id"] for line in lines if line["event"] == "run_started" and "plan" in line
    ]
    # A call the policies keep (never due, so never planned), forged as deleted.
    outsider = next(
        c.id
        for a in app.dataset.agents()
        for c in app.dataset.iter_calls(a.id, transcripts=False)
        if c.id not in expected_deletions(app.dataset)
    )
    assert outsider not in planned
    ids = {"call_id": outsider, "agent_id": "agent_x", "policy": "old-30d"}
    forged = [
        {"ts": "2026-06-01T00:00:01.000Z", "run_id": run_id, "event": "delete_requested", **ids},
        {
            "ts": "2026-06-01T00:00:02.000Z",
            "run_id": run_id,
            "event": "deleted",
            "redacted_at": "2026-06-01T00:00:02Z",
            **ids,
        },
    ]
    previous_hash, seq = lines[-1]["hash"], lines[-1]["seq"]
    with space.audit_log.open("ab") as handle:
        for offset, line in enumerate(forged, start=1):
            sealed = seal(previous_hash, seq + offset, line)
            handle.write(encode_line(sealed))
            previous_hash = sealed["hash"]
    assert cli(capsys, monkeypatch, "audit", "verify", str(space.audit_log)).code == 0

    code, said = verify(capsys, monkeypatch, space, plan)

    assert code == 1, said
    first = len(lines) + 1  # the forged intent's line
    assert (
        f"2 of {2 * len(planned) + 2} deletion lines of 1 apply run name a call not in {plan}; "
        f"first: line {first}, delete_requested call {outsider} (run {run_id})"
    ) in said


def test_a_log_where_no_run_applied_the_plan_proves_nothing(
    capsys: Run, monkeypatch: pytest.MonkeyPatch, space: Workspace, url: str
) -> None:
    plan, _ = make_plan(capsys, monkeypatch, space, url)  # a plan run: dry, no digest recorded
    code, said = verify(capsys, monkeypatch, space, plan)
    assert code == 1
    assert "no run in the log applied" in said


def test_a_missing_or_tampered_plan_is_refused_before_the_log_is_read(
    capsys: Run, monkeypatch: pytest.MonkeyPatch, space: Workspace, url: str
) -> None:
    plan, _ = applied(capsys, monkeypatch, space, url)
    code, said = verify(capsys, monkeypatch, space, space.root / "absent.plan")
    assert code == 2 and "no such plan file" in said
    data = plan.read_bytes()
    victim = sorted(planned_ids(plan))[0].encode()
    plan.chmod(0o644)
    plan.write_bytes(data.replace(victim, victim[:-1] + (b"0" if victim[-1:] != b"0" else b"1")))
    code, said = verify(capsys, monkeypatch, space, plan)
    assert code == 2 and "changed after it was written" in said
    assert json.loads(space.audit_log.read_text().splitlines()[-1])["event"] == "run_finished"
