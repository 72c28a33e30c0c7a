"""The audit log on disk: lock, chain continuation, torn tails, open intents, group commit."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import stat
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from retention.audit.chain import GENESIS_HASH, chain_hash
from retention.audit.events import Event
from retention.audit.verify import verify_log
from retention.audit.writer import (
    AuditLog,
    AuditLogError,
    run_holds_lock,
    torn_path,
)
from retention.errors import AuditLogLocked, ExitCode
from retention.run.journal import Journal
from tests.run.spellings import ALL, DIRECTORY_TRICKS, Trick, spell, tricks

SPELLINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


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


def test_the_journal_commits_waiting_records_in_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "audit.jsonl"
    fsyncs: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        fsyncs.append(fd)
        real_fsync(fd)

    async def main() -> Journal:
        with AuditLog(path) as log:
            journal = Journal(log, "r1", buffer=64)
            monkeypatch.setattr(os, "fsync", counting_fsync)  # the log is open: only writes
            async with anyio.create_task_group() as group:
                group.start_soon(journal.run)
                async with anyio.create_task_group() as workers:
                    for n in range(50):
                        workers.start_soon(
                            journal.write,
                            Event.DELETE_REQUESTED,
                            {"call_id": f"c{n}", "agent_id": "a", "policy": "p"},
                        )
                await journal.close()
            return journal

    anyio.run(main)
    monkeypatch.undo()
    assert 1 <= len(fsyncs) < 50  # group commit: fewer fsyncs than lines
    assert len(path.read_text().splitlines()) == 50
    with AuditLog(path) as reopened:  # a whole chain, every intent still open
        assert reopened.scan.last_seq == 50
        assert len(reopened.scan.open_intents) == 50


# -- one identity, whatever path names it ---------------------------------------


@contextmanager
def _scratch() -> Iterator[Path]:
    """A fresh directory per hypothesis example: `logs/` for the log, `links/` for names."""
    with tempfile.TemporaryDirectory() as root:
        base = Path(os.path.realpath(root))
        (base / "logs").mkdir()
        (base / "links").mkdir()
        yield base


@SPELLINGS
@given(steps=tricks(ALL), exists=st.booleans())
def test_one_log_by_any_name_is_locked_once(steps: list[Trick], exists: bool) -> None:
    with _scratch() as root:
        real = root / "logs" / "audit.jsonl"
        if exists or "hardlink" in steps:
            with AuditLog(real) as log:
                log.append([_record("run_started")])
        other = spell(real, steps, root / "links")
        with AuditLog(real, patience=0), pytest.raises(AuditLogLocked) as refused:
            AuditLog(other, patience=0).open()
        assert refused.value.exit_code == ExitCode.LOCKED
        if os.path.islink(other):
            return  # the real file only, by its name (see the test below)
        with AuditLog(other, patience=0), pytest.raises(AuditLogLocked):
            AuditLog(real, patience=0).open()
        assert real.exists() and not os.path.islink(real)


@SPELLINGS
@given(steps=tricks(DIRECTORY_TRICKS))
def test_the_lock_sidecar_is_the_resolved_logs(steps: list[Trick]) -> None:
    with _scratch() as root:
        real = root / "logs" / "audit.jsonl"
        other = spell(real, steps, root / "links")
        with AuditLog(other):
            assert (root / "logs" / "audit.jsonl.lock").exists()
        assert list((root / "links").rglob("*.lock")) == []


@pytest.mark.parametrize("dangling", [False, True])
def test_a_symlinked_audit_log_is_refused_with_exit_2(tmp_path: Path, dangling: bool) -> None:
    real = tmp_path / "audit.jsonl"
    if not dangling:
        with AuditLog(real) as log:
            log.append([_record("run_started")])
    before = real.read_bytes() if real.exists() else None
    link = tmp_path / "link.jsonl"
    link.symlink_to(real)
    with pytest.raises(AuditLogError) as refused:
        AuditLog(link).open()
    assert refused.value.exit_code == ExitCode.BAD_INPUT
    assert "symlink" in str(refused.value) and "real file" in str(refused.value)
    assert (real.read_bytes() if real.exists() else None) == before  # never created either
    with AuditLog(real):  # and its lock was released
        pass


def test_a_run_holding_the_real_log_refuses_a_symlink_to_it_with_exit_6(tmp_path: Path) -> None:
    real = tmp_path / "audit.jsonl"
    link = tmp_path / "link.jsonl"
    link.symlink_to(real)
    with AuditLog(real), pytest.raises(AuditLogLocked):
        AuditLog(link, patience=0).open()


@settings(max_examples=30, deadline=None)
@given(mode=st.integers(0o600, 0o777).filter(lambda m: m & 0o600 == 0o600))
def test_a_log_others_may_read_is_tightened_to_0600_with_a_warning(mode: int) -> None:
    with _scratch() as root:
        path = root / "logs" / "audit.jsonl"
        with AuditLog(path) as log:
            log.append([_record("run_started")])
        path.chmod(mode)
        with capture_logs() as logs, AuditLog(path) as log:
            log.append([_record("run_finished")])
        loose = mode & 0o077 != 0
        assert stat.S_IMODE(path.stat().st_mode) == (0o600 if loose else mode)
        events = [entry["event"] for entry in logs]
        assert events == (["audit.permissions_tightened"] if loose else [])
        assert verify_log(path).intact


@contextmanager
def _append_only(path: Path) -> Iterator[None]:
    """`chattr +a`: the file stays writable but its mode cannot change (EPERM), as for
    another user's file. Needs root and a filesystem with attributes."""
    if os.geteuid() != 0 or shutil.which("chattr") is None:
        pytest.skip("needs root and chattr")
    done = subprocess.run(["chattr", "+a", str(path)], capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip("this filesystem has no append-only attribute")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-a", str(path)], check=True)


def test_a_loose_log_that_cannot_be_tightened_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with AuditLog(path) as log:
        log.append([_record("run_started")])
    path.chmod(0o644)
    before = path.read_bytes()
    with _append_only(path), pytest.raises(AuditLogError) as refused:
        AuditLog(path).open()
    assert refused.value.exit_code == ExitCode.BAD_INPUT
    assert f"chmod 600 {path}" in str(refused.value)
    assert path.read_bytes() == before


def test_a_torn_line_goes_beside_the_resolved_log(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "real", target_is_directory=True)
    path = tmp_path / "alias" / "audit.jsonl"
    with AuditLog(path) as log:
        log.append([_record("run_started")])
    with path.open("ab") as handle:
        handle.write(b'{"event":"run_fin')
    with AuditLog(path):
        pass
    assert (tmp_path / "real" / "audit.jsonl.torn").read_bytes() == b'{"event":"run_fin\n'
    assert torn_path(path) == tmp_path / "real" / "audit.jsonl.torn"


def test_two_descriptors_in_one_process_exclude_each_other(tmp_path: Path) -> None:
    """flock belongs to an open file description: the in-process tests above are real."""
    path = tmp_path / "f"
    path.touch()
    first, second = os.open(path, os.O_RDONLY), os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(first, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(BlockingIOError):
            fcntl.flock(second, fcntl.LOCK_SH | fcntl.LOCK_NB)
    finally:
        os.close(first)
        os.close(second)


@SPELLINGS
@given(steps=tricks(ALL))
def test_the_probe_sees_a_run_by_any_name_and_creates_nothing(steps: list[Trick]) -> None:
    with _scratch() as root:
        real = root / "logs" / "audit.jsonl"
        assert not run_holds_lock(real)
        assert list((root / "logs").iterdir()) == []  # the probe made no file
        with AuditLog(real) as log:
            log.append([_record("run_started")])
        other = spell(real, steps, root / "links")
        assert not run_holds_lock(other)
        with AuditLog(real):
            assert run_holds_lock(other)
        assert not run_holds_lock(other)


def test_a_probe_holding_the_lock_for_a_moment_never_fails_a_run(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with AuditLog(path) as log:
        log.append([_record("run_started")])
    probe = os.open(path, os.O_RDONLY)
    fcntl.flock(probe, fcntl.LOCK_SH | fcntl.LOCK_NB)  # as `audit verify` probes
    release = threading.Timer(0.05, os.close, args=(probe,))
    release.start()
    try:
        with AuditLog(path, patience=30) as log:  # waits only until the probe lets go
            assert log.scan.last_seq == 1
    finally:
        release.join()


def test_a_lock_held_past_the_patience_is_exit_6(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.touch(mode=0o600)
    holder = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(holder, fcntl.LOCK_SH)
        with pytest.raises(AuditLogLocked) as refused:
            AuditLog(path, patience=0.05).open()
        assert str(path) in str(refused.value)
    finally:
        os.close(holder)
