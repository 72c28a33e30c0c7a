"""A real run with `--signing-key` and `--witness`, against the sandbox over loopback:
the checkpoint at the end, checkpoints during the run, the witness files."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from retention.audit.events import Event
from retention.audit.signing import Signer, check_signature, load_public_keys
from retention.audit.verify import verify_log
from retention.audit.witness import Witness
from retention.audit.writer import AuditLog
from retention.cli import main
from retention.run.journal import Checkpoints, Journal
from retention.sandbox import SandboxApp
from tests.audit.signed import make_key
from tests.e2e.support import (
    API_KEY,
    NOW_TEXT,
    Workspace,
    expected_deletions,
    make_dataset,
    run_cli,
    sandbox,
    workspace,
)

__all__ = ["workspace"]  # the fixture, re-exported for pytest


@pytest.fixture
def url() -> Iterator[str]:
    with sandbox(SandboxApp(make_dataset(calls=120), api_key=API_KEY)) as base_url:
        yield base_url


def test_a_signed_run_ends_on_a_checkpoint_over_its_last_line_and_witnesses_it(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    workspace: Workspace,
    url: str,
    tmp_path: Path,
) -> None:
    signer, public = make_key(tmp_path, "key")
    witness = tmp_path / "witness"
    witness.mkdir()
    flags = ("--execute", "--signing-key", str(signer.path), "--witness", str(witness))
    outcome = run_cli(capsys, monkeypatch, workspace, url, *flags)
    assert outcome.code == 0, outcome.err
    lines = workspace.lines()
    deleted = {line["call_id"] for line in lines if line["event"] == "deleted"}
    assert deleted == expected_deletions(make_dataset(calls=120))
    last, before = lines[-1], lines[-2]
    assert last["event"] == "checkpoint"
    assert before["event"] == "run_finished"
    assert (last["covers_seq"], last["covers_hash"]) == (before["seq"], before["hash"])
    assert last["key"] == signer.key_id
    assert check_signature(last, load_public_keys([public])[signer.key_id].key)
    # The witness holds exactly the log's checkpoints, byte for byte.
    raw = workspace.audit_log.read_bytes().splitlines(keepends=True)
    points = {json.loads(line)["seq"]: line for line in raw if b'"checkpoint"' in line}
    assert sorted(os.listdir(witness)) == [f"checkpoint-{seq:012d}.json" for seq in sorted(points)]
    for seq, line in points.items():
        assert (witness / f"checkpoint-{seq:012d}.json").read_bytes() == line
    assert "PRIVATE KEY" not in outcome.out + outcome.err
    summary = verify_log(workspace.audit_log, keys=load_public_keys([public]), witness_dir=witness)
    assert summary.intact
    assert summary.uncovered == 0
    assert summary.witness_found == summary.witnessed == len(points)

    # A second run, the key named by its environment variable, chains on and signs again.
    monkeypatch.setenv("CARTESIA_API_KEY", API_KEY)
    monkeypatch.setenv("RETENTION_SIGNING_KEY", str(signer.path))
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "run",
                "--policies",
                str(workspace.policies),
                "--audit-log",
                str(workspace.audit_log),
                "--base-url",
                url,
                "--now",
                NOW_TEXT,
            ]
        )
    assert exit_info.value.code == 0
    again = workspace.lines()
    assert again[-1]["event"] == "checkpoint"
    assert again[-1]["run_id"] != last["run_id"]
    assert verify_log(workspace.audit_log, keys=load_public_keys([public])).checkpoints == 2


def test_a_witness_without_a_signing_key_is_refused(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    workspace: Workspace,
    url: str,
    tmp_path: Path,
) -> None:
    outcome = run_cli(capsys, monkeypatch, workspace, url, "--witness", str(tmp_path))
    assert outcome.code == 2
    assert outcome.err.count("\n") == 1
    assert "--witness" in outcome.err and "--signing-key" in outcome.err
    assert not workspace.audit_log.exists()


def test_a_report_may_not_overwrite_the_signing_key(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    workspace: Workspace,
    url: str,
    tmp_path: Path,
) -> None:
    signer, _ = make_key(tmp_path, "key.csv")
    before = signer.path.read_bytes()
    flags = ("--signing-key", str(signer.path), "--report", str(signer.path))
    outcome = run_cli(capsys, monkeypatch, workspace, url, *flags)
    assert outcome.code == 2
    assert "names the signing key" in outcome.err
    assert signer.path.read_bytes() == before


def _journal_run(log: AuditLog, signer: Signer, witness: Path, records: int, every: int) -> None:
    async def go() -> None:
        policy = Checkpoints(signer, Witness(witness), every_lines=every, every_seconds=3600)
        journal = Journal(log, "r1", checkpoints=policy)
        async with anyio.create_task_group() as group:
            group.start_soon(journal.run)
            for number in range(records):
                # Durable, one at a time: each record is its own batch.
                await journal.write(Event.RUN_STARTED if number == 0 else Event.RUN_FINISHED, {})
            await journal.close()

    anyio.run(go)


def test_checkpoints_come_every_n_lines_during_a_run(tmp_path: Path) -> None:
    signer, public = make_key(tmp_path, "key")
    witness = tmp_path / "witness"
    witness.mkdir()
    path = tmp_path / "audit.jsonl"
    with AuditLog(path) as log:
        _journal_run(log, signer, witness, records=10, every=4)
    events = [json.loads(line)["event"] for line in path.read_text().splitlines()]
    # After records 4 and 8, then the last one after record 10.
    assert [i for i, event in enumerate(events, 1) if event == "checkpoint"] == [5, 10, 13]
    assert len(events) == 13
    summary = verify_log(path, keys=load_public_keys([public]), witness_dir=witness)
    assert summary.intact
    assert (summary.checkpoints, summary.witness_found, summary.uncovered) == (3, 3, 0)
