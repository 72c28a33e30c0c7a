"""A disk fails mid-run. Under the audit log: the run stops with exit 1 and one line, and
no DELETE was sent whose intent had not been made durable first. Under the report: the
run goes on (the audit log is the record), then says so and exits 1."""

from __future__ import annotations

import errno
import os

import pytest

from retention.audit.verify import verify_log
from retention.sandbox import SandboxApp
from tests.e2e.support import (
    API_KEY,
    NOW,
    Workspace,
    deletes_sent,
    expected_deletions,
    make_dataset,
    run_cli,
    sandbox,
    workspace,
)

__all__ = ["workspace"]


def test_a_failing_audit_disk_stops_the_run_with_exit_1_and_no_traceback(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, workspace: Workspace
) -> None:
    app = SandboxApp(make_dataset(), api_key=API_KEY)
    real_fsync = os.fsync
    synced = {"calls": 0, "bytes": 0}

    def failing_fsync(fd: int) -> None:
        # The OS's fsync, failing from the fourth call on (a full disk, say).
        synced["calls"] += 1
        if synced["calls"] > 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)
        if os.path.samefile(f"/proc/self/fd/{fd}", workspace.audit_log):
            synced["bytes"] = os.fstat(fd).st_size

    with sandbox(app) as url:
        monkeypatch.setattr(os, "fsync", failing_fsync)
        try:
            result = run_cli(capsys, monkeypatch, workspace, url, "--execute", "--concurrency", "8")
        finally:
            monkeypatch.setattr(os, "fsync", real_fsync)

    assert result.code == 1, result.err
    assert "Traceback" not in result.err
    assert "No space left on device" in result.err
    durable = workspace.audit_log.read_bytes()[: synced["bytes"]]
    assert deletes_sent(app) <= durable.count(b'"event":"delete_requested"')


@pytest.mark.parametrize("flags", [(), ("--execute",)], ids=["dry-run", "execute"])
def test_a_report_that_cannot_be_written_does_not_crash_the_run(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    workspace: Workspace,
    flags: tuple[str, ...],
) -> None:
    app = SandboxApp(make_dataset(), api_key=API_KEY)
    due = len(expected_deletions(app.dataset, NOW))
    report = workspace.report("csv")
    report.symlink_to("/dev/full")  # opens fine; every write fails: a full disk
    with sandbox(app) as url:
        result = run_cli(capsys, monkeypatch, workspace, url, "--report", str(report), *flags)

    assert result.code == 1, result.err
    assert "Traceback" not in result.err
    assert "cannot write" in result.err
    # The report is not the record of a deletion: the run itself went on to the end.
    assert deletes_sent(app) == (due if flags else 0)
    last = workspace.lines()[-1]
    assert last["event"] == "run_finished"
    assert verify_log(workspace.audit_log).intact
