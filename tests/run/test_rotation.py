"""Rotation: the live log closed as a numbered gzip segment, the chain going on, no line
ever lost or repeated, whichever step a SIGKILL interrupts, and intents still open
carried across to the next run's recovery."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from retention.audit.rotation import CRASH_ENV, STEPS, RotationError, rotate
from retention.audit.signing import load_public_keys
from retention.audit.verify import verify_log
from retention.audit.writer import AuditLog
from retention.cli import main
from retention.sandbox import SandboxApp
from tests.audit.signed import make_key
from tests.e2e.support import (
    API_KEY,
    Workspace,
    clean_env,
    expected_deletions,
    make_dataset,
    run_cli,
    sandbox,
    workspace,
)

__all__ = ["workspace"]


def _record(event: str, run_id: str = "r1", **keys: str) -> dict[str, object]:
    return {"ts": "2026-05-31T23:00:00.000Z", "run_id": run_id, "event": event, **keys}


def _call(call_id: str) -> dict[str, str]:
    return {"call_id": call_id, "agent_id": "agent_x", "policy": "old-30d"}


def all_lines(live: Path) -> list[bytes]:
    """Every line of the log, read by hand: segments by number, then the live file."""
    segments = sorted(live.parent.glob(live.name + ".*.gz"))
    out: list[bytes] = []
    for segment in segments:
        with gzip.open(segment, "rb") as stream:
            out += stream.read().splitlines(keepends=True)
    return out + live.read_bytes().splitlines(keepends=True)


def record_of(live: Path) -> list[bytes]:
    """The lines a killed rotation left, once each: a segment written but not yet closed
    repeats the live file, and must repeat it byte for byte."""
    seen: dict[int, bytes] = {}
    for line in all_lines(live):
        seq = json.loads(line)["seq"]
        assert seen.setdefault(seq, line) == line
    return [seen[seq] for seq in sorted(seen)]


def test_a_rotation_closes_the_file_as_a_segment_and_the_chain_goes_on(tmp_path: Path) -> None:
    live = tmp_path / "audit.jsonl"
    with AuditLog(live) as log:
        log.append([_record("run_started"), _record("run_finished")])
        before = live.read_bytes()
        rotated = rotate(log, run_id="rot")
        assert rotated is not None
        log.append([_record("run_started", "r2")])
    segment = tmp_path / "audit.jsonl.000001.gz"
    assert rotated.segment == segment
    assert (rotated.first_seq, rotated.last_seq) == (1, 2)
    assert gzip.decompress(segment.read_bytes()) == before
    assert oct(segment.stat().st_mode & 0o777) == "0o600"
    [first] = [json.loads(line) for line in live.read_bytes().splitlines()]
    assert first["seq"] == 3
    assert verify_log(live).intact
    with AuditLog(live) as log:  # nothing since: an empty live file is not rotated
        log.append([_record("run_finished", "r2")])
        assert rotate(log, run_id="rot") is not None
        assert rotate(log, run_id="rot") is None
    assert sorted(p.name for p in tmp_path.glob("*.gz")) == [
        "audit.jsonl.000001.gz",
        "audit.jsonl.000002.gz",
    ]
    assert verify_log(live).intact


def test_a_signed_log_is_not_rotated_without_a_key_unless_it_ends_on_a_checkpoint(
    tmp_path: Path,
) -> None:
    signer, public = make_key(tmp_path, "key")
    live = tmp_path / "audit.jsonl"
    with AuditLog(live) as log:
        log.append([_record("run_started")])
        log.append(
            [
                signer.checkpoint(
                    ts="2026-05-31T23:00:01.000Z",
                    run_id="r1",
                    covers_seq=1,
                    covers_hash=log.scan.last_hash,
                )
            ]
        )
        log.append([_record("run_finished")])
        with pytest.raises(RotationError, match="--signing-key"):
            rotate(log, run_id="rot")
        rotated = rotate(log, run_id="rot", signer=signer)
    assert rotated is not None and rotated.last_seq == 4
    with gzip.open(rotated.segment) as stream:
        last = json.loads(stream.read().splitlines()[-1])
    assert last["event"] == "checkpoint" and last["covers_seq"] == 3
    summary = verify_log(live, keys=load_public_keys([public]))
    assert summary.intact and summary.checkpoints == 2 and summary.uncovered == 0


# -- SIGKILL at every step ----------------------------------------------------------------


@pytest.fixture
def app() -> SandboxApp:
    return SandboxApp(make_dataset(calls=60), api_key=API_KEY)


@pytest.fixture
def url(app: SandboxApp) -> Iterator[str]:
    with sandbox(app) as base_url:
        yield base_url


def _killed_at(step: str, args: list[str], cwd: Path, **env: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "retention", *args],
        env=clean_env(**{CRASH_ENV: step}, **env),
        cwd=cwd,
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]


@pytest.mark.parametrize("step", STEPS)
def test_audit_rotate_killed_at_any_step_loses_and_repeats_no_line(
    step: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    workspace: Workspace,
    url: str,
    tmp_path: Path,
) -> None:
    signer, public = make_key(tmp_path, "key")
    live = workspace.audit_log
    first = run_cli(capsys, monkeypatch, workspace, url, "--execute")
    assert first.code == 0, first.err
    written = all_lines(live)  # unsigned so far: the rotation signs its segment's end

    _killed_at(step, ["audit", "rotate", str(live), "--signing-key", str(signer.path)], tmp_path)

    # The next run settles what the kill left, then chains on; no line lost or repeated.
    again = run_cli(
        capsys,
        monkeypatch,
        workspace,
        url,
        "--execute",
        "--signing-key",
        str(signer.path),
        "--rotate-bytes",
        "1",
    )
    assert again.code == 0, again.err
    after = all_lines(live)
    assert after[: len(written)] == written
    seqs = [json.loads(line)["seq"] for line in after]
    assert seqs == list(range(1, len(after) + 1))
    assert not list(tmp_path.glob("*.tmp"))
    summary = verify_log(live, keys=load_public_keys([public]))
    assert summary.problem is None, summary.problem
    assert summary.uncovered == 0
    assert live.read_bytes() == b""  # the second run rotated at its end


@pytest.mark.slow
@pytest.mark.parametrize("step", STEPS)
def test_a_run_killed_while_rotating_at_its_end_loses_no_line(
    step: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    workspace: Workspace,
    app: SandboxApp,
    url: str,
    tmp_path: Path,
) -> None:
    signer, public = make_key(tmp_path, "key")
    due = expected_deletions(app.dataset)
    live = workspace.audit_log
    args = [
        "run",
        "--execute",
        "--max-deletes",
        "100000000",
        "--policies",
        str(workspace.policies),
        "--audit-log",
        str(live),
        "--base-url",
        url,
        "--now",
        "2026-06-01T00:00:00Z",
        "--signing-key",
        str(signer.path),
        "--rotate-bytes",
        "1",
    ]
    _killed_at(step, args, tmp_path, CARTESIA_API_KEY=API_KEY)
    written = record_of(live)
    assert json.loads(written[-1])["event"] == "checkpoint"  # the run itself was complete

    again = run_cli(
        capsys, monkeypatch, workspace, url, "--execute", "--signing-key", str(signer.path)
    )
    assert again.code == 0, again.err
    after = all_lines(live)
    assert after[: len(written)] == written
    assert [json.loads(line)["seq"] for line in after] == list(range(1, len(after) + 1))
    summary = verify_log(live, keys=load_public_keys([public]))
    assert summary.problem is None, summary.problem
    deleted = {json.loads(x)["call_id"] for x in after if b'"event":"deleted"' in x}
    assert deleted == due
    assert not list(tmp_path.glob("*.tmp"))


# -- runs that rotate, and recovery across a rotation --------------------------------------


def test_runs_with_rotate_bytes_leave_segments_that_each_end_on_a_checkpoint(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    workspace: Workspace,
    url: str,
    tmp_path: Path,
) -> None:
    signer, public = make_key(tmp_path, "key")
    witness = tmp_path / "witness"
    witness.mkdir()
    monkeypatch.setenv("RETENTION_ROTATE_BYTES", "1")
    flags = ("--execute", "--signing-key", str(signer.path), "--witness", str(witness))
    for _ in range(3):
        outcome = run_cli(capsys, monkeypatch, workspace, url, *flags, "--rotate-bytes", "1")
        assert outcome.code == 0, outcome.err
    segments = sorted(tmp_path.glob("audit.jsonl.*.gz"))
    assert [p.name for p in segments] == [f"audit.jsonl.{n:06d}.gz" for n in (1, 2, 3)]
    for segment in segments:
        with gzip.open(segment) as stream:
            assert json.loads(stream.read().splitlines()[-1])["event"] == "checkpoint"
    summary = verify_log(tmp_path, keys=load_public_keys([public]), witness_dir=witness)
    assert summary.problem is None, summary.problem
    assert summary.witness_found == summary.witnessed == 3
    assert len(summary.runs) == 3


def test_an_intent_open_in_a_rotated_segment_is_resolved_by_the_next_run(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    workspace: Workspace,
    app: SandboxApp,
    url: str,
) -> None:
    due = sorted(expected_deletions(app.dataset))
    at = datetime(2026, 5, 31, 23, 59, 59, 500000, tzinfo=UTC)
    app.dataset.redact(due[0], at)  # the killed run's DELETE went through
    live = workspace.audit_log
    with AuditLog(live) as log:
        log.append(
            [
                _record("run_started", "killed"),
                _record("delete_requested", "killed", **_call(due[0])),
            ]
        )
    # Rotated while the intent is open: it now lives in segment 1 and the state only.
    with pytest.raises(SystemExit) as exit_info:
        main(["audit", "rotate", str(live)])
    assert exit_info.value.code == 0
    assert live.read_bytes() == b""
    state = json.loads((live.parent / "audit.jsonl.state").read_text())
    assert [i["call_id"] for i in state["open_intents"]] == [due[0]]

    outcome = run_cli(capsys, monkeypatch, workspace, url, "--execute")
    assert outcome.code == 0, outcome.err
    recovered = [json.loads(x) for x in live.read_bytes().splitlines()]
    answer = next(r for r in recovered if r.get("call_id") == due[0])
    assert answer["event"] == "deleted" and answer["run_id"] != "killed"
    assert datetime.fromisoformat(answer["redacted_at"]) == at
    summary = verify_log(live)
    assert summary.problem is None, summary.problem


def test_a_replaced_state_file_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    live = tmp_path / "audit.jsonl"
    with AuditLog(live) as log:
        log.append([_record("run_started")])
        rotate(log, run_id="rot")
        log.append([_record("run_finished")])
        rotate(log, run_id="rot")
    state = tmp_path / "audit.jsonl.state"
    body: dict[str, Any] = json.loads(state.read_text())
    body["segment_sha256"] = "0" * 64
    state.write_text(json.dumps(body))
    size = os.path.getsize(live)
    with pytest.raises(RotationError, match="not the segment the rotation state records"):
        AuditLog(live).open()
    assert os.path.getsize(live) == size


def test_a_report_may_not_overwrite_the_rotation_state(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    workspace: Workspace,
    url: str,
) -> None:
    # By another name: a link whose extension a report may have.
    report = workspace.root / "report.md"
    report.symlink_to(workspace.audit_log.with_name("audit.jsonl.state"))
    outcome = run_cli(capsys, monkeypatch, workspace, url, "--report", str(report))
    assert outcome.code == 2
    assert "rotation state" in outcome.err and outcome.err.count("\n") == 1
