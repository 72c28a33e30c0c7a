"""`audit verify` while a run holds the log, and two runs on one log by two names.

While a run holds the lock, the end of the log is still being written: intents open
there are in flight, not broken, and verify says a run holds the lock. A break
before them stays a break. Real processes where it matters: a run against a sandbox
process, an older version holding only the sidecar, and two runs started at once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from retention.audit.evidence import LIVE_RUN_NOTE
from retention.audit.verify import verify_log
from retention.audit.writer import AuditLog
from retention.cli import main
from retention.errors import ExitCode
from tests.e2e.support import (
    API_KEY,
    NOW_TEXT,
    POLICY_YAML,
    clean_env,
    read_audit,
    spawn,
    start_sandbox_process,
    wait_for_lines,
)

_TS = "2026-06-01T00:00:00.000Z"


def _record(event: str, **keys: str) -> dict[str, object]:
    return {"ts": _TS, "run_id": "r1", "event": event, **keys}


def _intent(call_id: str) -> dict[str, object]:
    return _record("delete_requested", call_id=call_id, agent_id="a1", policy="p")


def _verify(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(["audit", "verify", *args])
    out, err = capsys.readouterr()
    code = exit_info.value.code
    assert isinstance(code, int)
    return code, out, err


def _verdict(out: str) -> str:
    return next(line for line in out.splitlines() if line.startswith("verdict"))


def test_open_intents_at_the_end_of_a_held_log_are_in_flight(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "audit.jsonl"
    report = tmp_path / "evidence.json"
    with AuditLog(path) as log:
        log.append([_record("run_started"), _intent("c1"), _intent("c2")])
        log.append([_record("deleted", call_id="c1", agent_id="a1", policy="p", redacted_at=_TS)])
        code, out, err = _verify(capsys, str(path), "--report", str(report))
    assert code == ExitCode.OK, out + err
    assert f"lock        {LIVE_RUN_NOTE}" in out
    assert LIVE_RUN_NOTE in err
    assert _verdict(out) == (
        "verdict     INTACT so far: the chain holds; "
        "a run holds the lock: 1 delete_requested in flight"
    )
    verdict = json.loads(report.read_text())["verdict"]
    assert (verdict["run_holds_lock"], verdict["in_flight"], verdict["intact"]) == (True, 1, True)

    # The run is gone and c2 still has no outcome: now that is a break.
    code, out, err = _verify(capsys, str(path))
    assert code == ExitCode.SOME_FAILED
    assert "BROKEN at line 3: unresolved intent" in _verdict(out)
    assert LIVE_RUN_NOTE not in out + err


def test_a_last_line_being_written_under_the_lock_is_not_a_break(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "audit.jsonl"
    with AuditLog(path) as log:
        log.append([_record("run_started"), _intent("c1")])
        with path.open("ab") as handle:  # the run is inside its write
            handle.write(b'{"event":"deleted","call_id":"c1"')
        code, out, _ = _verify(capsys, str(path))
    assert code == ExitCode.OK
    assert _verdict(out).endswith("its last line being written")
    code, out, _ = _verify(capsys, str(path))  # no run: a truncated file
    assert code == ExitCode.SOME_FAILED
    assert "BROKEN at line 3: truncated" in _verdict(out)


def test_a_break_before_the_tail_is_broken_even_under_the_lock(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "audit.jsonl"
    with AuditLog(path) as log:
        log.append([_record("run_started"), _intent("c1"), _intent("c2")])
        with path.open("r+b") as handle:  # line 2's call id edited in place
            data = handle.read()
            handle.seek(data.index(b'"c1"'))
            handle.write(b'"c9"')
        code, out, err = _verify(capsys, str(path))
    assert code == ExitCode.SOME_FAILED
    assert "BROKEN at line 2: hash mismatch" in _verdict(out)
    assert LIVE_RUN_NOTE in err  # it still says a run holds the lock


# A process holding the log's lock the way another version or another name would.
_HOLDER = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
sys.stdin.read()
"""


@pytest.mark.parametrize("holds", ["the sidecar, as an older version", "a hard link to the log"])
def test_a_lock_held_by_another_process_is_seen(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], holds: str
) -> None:
    path = tmp_path / "audit.jsonl"
    with AuditLog(path) as log:
        log.append([_record("run_started"), _intent("c1")])
    if holds.startswith("the sidecar"):
        held = tmp_path / "audit.jsonl.lock"
    else:
        held = tmp_path / "other-name.jsonl"
        os.link(path, held)
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(held)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"held\n"
        code, out, _ = _verify(capsys, str(path))
        assert code == ExitCode.OK
        assert "1 delete_requested in flight" in _verdict(out)
    finally:
        holder.communicate(timeout=30)  # closing stdin ends it
    code, _, _ = _verify(capsys, str(path))
    assert code == ExitCode.SOME_FAILED


# -- real runs ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def slow_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    proc, url = start_sandbox_process(tmp_path_factory.mktemp("sandbox"), calls=600, latency_ms=40)
    try:
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _start_run(tmp: Path, url: str, audit_log: Path) -> Any:
    policies = tmp / "policies.yaml"
    policies.write_text(POLICY_YAML)
    args = [
        "run",
        "--execute",
        "--max-deletes",
        "100000000",
        "--policies",
        str(policies),
        "--audit-log",
        str(audit_log),
    ]
    args += ["--base-url", url, "--now", NOW_TEXT, "--rate", "15", "--concurrency", "4"]
    return spawn(args, env=clean_env(CARTESIA_API_KEY=API_KEY), cwd=tmp, stdout=subprocess.DEVNULL)


def _stop(run: Any) -> int:
    if run.poll() is None:
        run.send_signal(signal.SIGTERM)
    code: int = run.wait(timeout=60)  # the grace period bounds it
    return code


def test_verify_during_a_real_run_is_never_broken(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], slow_sandbox: str
) -> None:
    audit = tmp_path / "audit.jsonl"
    run = _start_run(tmp_path, slow_sandbox, audit)
    try:
        wait_for_lines(audit, 10, run)
        assert run.poll() is None, run.stderr.read().decode()[-2000:]
        for _ in range(3):
            code, out, err = _verify(capsys, str(audit))
            assert code == ExitCode.OK, out + err
            assert LIVE_RUN_NOTE in err
            assert _verdict(out).startswith("verdict     INTACT so far: the chain holds; ")
    finally:
        assert _stop(run) == ExitCode.INTERRUPTED
    code, out, err = _verify(capsys, str(audit))
    assert code == ExitCode.OK, out + err
    assert LIVE_RUN_NOTE not in out + err
    assert _verdict(out).startswith("verdict     INTACT: ")


def _another_name(tmp: Path, real: Path, how: str) -> Path:
    if how == "a symlink to the log":
        (tmp / "link.jsonl").symlink_to(real)
        return tmp / "link.jsonl"
    assert how == "a hard link"
    real.touch(mode=0o600)
    os.link(real, tmp / "hard.jsonl")
    return tmp / "hard.jsonl"


@pytest.mark.parametrize("how", ["a symlink to the log", "a hard link"])
def test_two_runs_started_at_once_on_one_log_by_two_names_never_both_run(
    tmp_path: Path, slow_sandbox: str, how: str
) -> None:
    """Exit 6 for the one that comes second; a symlink that comes first is refused
    itself (exit 2, see test_audit_file), and the real log's run goes on."""
    (tmp_path / "logs").mkdir()
    real = tmp_path / "logs" / "audit.jsonl"
    other = _another_name(tmp_path, real, how)
    runs = [_start_run(tmp_path, slow_sandbox, real), _start_run(tmp_path, slow_sandbox, other)]
    try:
        deadline = time.monotonic() + 120
        while all(run.poll() is None for run in runs):
            assert time.monotonic() < deadline, "neither run ended"
            time.sleep(0.05)
        first = next(run for run in runs if run.poll() is not None)
        stderr = first.stderr.read().decode()
        if first is runs[1] and first.returncode == ExitCode.BAD_INPUT:
            assert how == "a symlink to the log" and "point --audit-log at the real file" in stderr
        else:
            assert first.returncode == ExitCode.LOCKED, stderr[-2000:]
            assert "another run holds the lock" in stderr
        winner = runs[1 - runs.index(first)]
        wait_for_lines(real, 1, winner)  # it goes on: stop it only once it has started
        assert winner.poll() is None
    finally:
        codes = [_stop(run) for run in runs]
    assert codes.count(ExitCode.INTERRUPTED) == 1, codes  # never two runs at once
    lines = read_audit(real)
    assert [line["event"] for line in lines].count("run_started") == 1
    assert verify_log(real).intact
