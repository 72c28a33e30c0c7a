"""The audit log on disk: lock, chain continuation, torn tails, open intents, group commit."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import anyio
import pytest
from structlog.testing import capture_logs

from retention.audit.chain import GENESIS_HASH, chain_hash
from retention.audit.verify import verify_log
from retention.errors import ExitCode
from retention.run.audit import AuditLog, AuditLogError, AuditLogLocked, torn_path
from retention.run.journal import Journal


def _record(event: str, **keys: str) -> dict[str, object]:
    return {"ts": "2026-06-01T00:00:00.000Z", "run_id": "r1", "event": event, **keys}


def _intent(call_id: str) -> dict[str, object]:
    return _record("delete_requested", call_id=call_id, agent_id="a1", policy="p")


def test_a_new_log_is_created_owner_only_and_starts_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with AuditLog(path) as log:
        assert log.created
        log.append([_record("run_started")])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    line = json.loads(path.read_text())
    assert line["seq"] == 1
    assert line["hash"] == chain_hash(GENESIS_HASH, line)


def test_appending_continues_the_chain_across_runs(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    for _ in range(3):
        with AuditLog(path) as log:
            log.append([_record("run_started"), _record("run_finished")])
    assert [json.loads(x)["seq"] for x in path.read_text().splitlines()] == [1, 2, 3, 4, 5, 6]
    assert verify_log(path).intact


def test_a_second_holder_of_the_lock_is_refused_with_exit_6(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with AuditLog(path), pytest.raises(AuditLogLocked) as refused:
        AuditLog(path).open()
    assert refused.value.exit_code == ExitCode.LOCKED
    assert "audit.jsonl.lock" in str(refused.value)
    with AuditLog(path):  # released with the first
        pass


def test_open_intents_are_those_without_an_outcome(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with AuditLog(path) as log:
        log.append([_intent("c1"), _intent("c2"), _intent("c3")])
        log.append([_record("deleted", call_id="c2", agent_id="a1", policy="p", redacted_at="x")])
    with AuditLog(path) as log:
        assert set(log.scan.open_intents) == {"c1", "c3"}
        assert log.scan.last_seq == 4


def test_a_torn_last_line_is_moved_aside_and_the_chain_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with AuditLog(path) as log:
        log.append([_record("run_started"), _intent("c1")])
    whole = path.read_bytes()
    with path.open("ab") as handle:  # a process died inside a write
        handle.write(b'{"event":"deleted","call_id":"c1"')
    with capture_logs() as logs, AuditLog(path) as log:
        assert log.scan.torn_bytes > 0
        assert set(log.scan.open_intents) == {"c1"}  # the torn outcome never counted
        log.append([_record("failed", call_id="c1", agent_id="a1", policy="p", error="x")])
    assert [entry["event"] for entry in logs] == ["audit.torn_line_moved"]
    assert path.read_bytes().startswith(whole)
    assert torn_path(path).read_bytes() == b'{"event":"deleted","call_id":"c1"\n'
    assert verify_log(path).intact


def test_a_damaged_line_is_refused_with_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_text('{"seq": 1, "hash": "0", "event": "run_started"}\nnot json\n')
    path.chmod(0o600)
    with pytest.raises(AuditLogError) as refused:
        AuditLog(path).open()
    assert refused.value.exit_code == ExitCode.BAD_INPUT
    assert "line 2" in str(refused.value)


def test_a_directory_is_not_an_audit_log(tmp_path: Path) -> None:
    with pytest.raises(AuditLogError):
        AuditLog(tmp_path).open()


def test_the_journal_commits_waiting_records_in_batches(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"

    async def main() -> Journal:
        with AuditLog(path) as log:
            journal = Journal(log, "r1", buffer=64)
            async with anyio.create_task_group() as group:
                group.start_soon(journal.run)
                async with anyio.create_task_group() as workers:
                    for n in range(50):
                        workers.start_soon(
                            journal.write,
                            "delete_requested",
                            {"call_id": f"c{n}", "agent_id": "a", "policy": "p"},
                        )
                await journal.close()
            return journal

    journal = anyio.run(main)
    assert journal.lines_written == 50
    assert journal.batches < 50  # group commit: fewer fsyncs than lines
    assert len(path.read_text().splitlines()) == 50
    with AuditLog(path) as reopened:  # a whole chain, every intent still open
        assert reopened.scan.last_seq == 50
        assert len(reopened.scan.open_intents) == 50
