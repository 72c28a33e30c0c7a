"""Killing and interrupting `retention run` for real: subprocesses against a sandbox
process with latency, then a rerun. The audit log must stay whole and true."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from retention.audit.verify import verify_log
from tests.e2e.support import (
    API_KEY,
    NOW_TEXT,
    POLICY_YAML,
    clean_env,
    make_dataset,
    read_audit,
    spawn,
    start_sandbox_process,
    wait_for_lines,
)

CALLS = 600


@pytest.fixture
def slow_sandbox(tmp_path: Path) -> Iterator[str]:
    proc, url = start_sandbox_process(tmp_path, calls=CALLS, latency_ms=60)
    try:
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _run_args(tmp: Path, url: str, *extra: str) -> list[str]:
    policies = tmp / "policies.yaml"
    policies.write_text(POLICY_YAML)
    return [
        "run",
        "--execute",
        "--max-deletes",
        "100000000",
        "--policies",
        str(policies),
        "--audit-log",
        str(tmp / "audit.jsonl"),
        "--base-url",
        url,
        "--now",
        NOW_TEXT,
        *extra,
    ]


def _start_run(tmp: Path, url: str, *extra: str) -> Any:
    return spawn(
        _run_args(tmp, url, *extra),
        env=clean_env(CARTESIA_API_KEY=API_KEY),
        cwd=tmp,
        stdout=subprocess.DEVNULL,
    )


def _redacted_now(url: str) -> dict[str, datetime]:
    """Every call the sandbox shows redacted, with its redacted_at, read over its API."""
    headers = {"Authorization": f"Bearer {API_KEY}", "Cartesia-Version": "2026-03-01"}
    found: dict[str, datetime] = {}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        for agent in client.get("/agents").json()["summaries"]:
            cursor = None
            while True:
                params = {"agent_id": agent["id"], "limit": "100"}
                if cursor:
                    params["starting_after"] = cursor
                page = client.get("/agents/calls", params=params).json()
                for call in page["data"]:
                    if call.get("redacted_at"):
                        found[call["id"]] = datetime.fromisoformat(call["redacted_at"])
                if not page["data"] or page["next_page"] is None:
                    break
                cursor = page["data"][-1]["id"]
    return found


@pytest.mark.slow
def test_sigkill_mid_run_then_rerun_logs_every_redaction(tmp_path: Path, slow_sandbox: str) -> None:
    run = _start_run(tmp_path, slow_sandbox, "--concurrency", "8")
    audit = tmp_path / "audit.jsonl"
    wait_for_lines(audit, 30, run)
    run.send_signal(signal.SIGKILL)
    run.wait(timeout=30)
    assert run.returncode == -signal.SIGKILL
    open_intents: set[str] = set()
    for line in read_audit(audit):
        if line["event"] == "delete_requested":
            open_intents.add(line["call_id"])
        elif line["event"] in ("deleted", "already_redacted", "not_found", "failed"):
            open_intents.discard(line["call_id"])

    rerun = subprocess.run(
        [
            sys.executable,
            "-m",
            "retention",
            *_run_args(tmp_path, slow_sandbox, "--concurrency", "8"),
        ],
        env=clean_env(CARTESIA_API_KEY=API_KEY),
        cwd=tmp_path,
        capture_output=True,
        timeout=120,
    )
    assert rerun.returncode == 0, rerun.stderr.decode()[-2000:]

    before = {c.id for c in make_dataset(calls=CALLS).iter_all_calls() if c.redacted_at}
    ours = {k: v for k, v in _redacted_now(slow_sandbox).items() if k not in before}
    logged = {
        line["call_id"]: datetime.fromisoformat(line["redacted_at"])
        for line in read_audit(audit)
        if line["event"] in ("deleted", "already_redacted")
    }
    assert ours  # the runs did delete
    finished = [line for line in read_audit(audit) if line["event"] == "run_finished"]
    assert open_intents  # killed with deletions in flight
    assert sum(finished[-1]["counts"]["recovered"].values()) == len(open_intents)
    for call_id, redacted_at in ours.items():
        assert logged.get(call_id) == redacted_at, call_id
    summary = verify_log(audit)
    assert summary.intact, summary.problem


def test_sigterm_finishes_in_flight_work_and_exits_5(tmp_path: Path, slow_sandbox: str) -> None:
    run = _start_run(tmp_path, slow_sandbox, "--concurrency", "4", "--grace-period", "15")
    audit = tmp_path / "audit.jsonl"
    wait_for_lines(audit, 20, run)

    # Meanwhile, a second run on the same audit log is refused.
    second = subprocess.run(
        [sys.executable, "-m", "retention", *_run_args(tmp_path, slow_sandbox)],
        env=clean_env(CARTESIA_API_KEY=API_KEY),
        cwd=tmp_path,
        capture_output=True,
        timeout=60,
    )
    assert second.returncode == 6, second.stderr.decode()
    assert b"another run holds the lock" in second.stderr

    run.send_signal(signal.SIGTERM)
    run.wait(timeout=60)  # the grace period bounds it
    assert run.returncode == 5, run.stderr.read().decode()[-2000:]
    data = audit.read_bytes()
    assert data.endswith(b"\n")  # no torn line
    last = read_audit(audit)[-1]
    assert last["event"] == "run_finished"
    assert last["stopped_by"] == "signal"
    assert last["exit_code"] == 5
    summary = verify_log(audit)
    assert summary.intact, summary.problem  # in-flight deletions got their outcomes


def test_a_second_signal_exits_at_once_and_the_next_run_resolves_the_intents(
    tmp_path: Path, slow_sandbox: str
) -> None:
    run = _start_run(tmp_path, slow_sandbox, "--concurrency", "8", "--grace-period", "60")
    audit = tmp_path / "audit.jsonl"
    wait_for_lines(audit, 20, run)
    run.send_signal(signal.SIGTERM)
    run.send_signal(signal.SIGTERM)
    run.wait(timeout=30)
    assert run.returncode == 5

    rerun = subprocess.run(
        [sys.executable, "-m", "retention", *_run_args(tmp_path, slow_sandbox)],
        env=clean_env(CARTESIA_API_KEY=API_KEY),
        cwd=tmp_path,
        capture_output=True,
        timeout=120,
    )
    assert rerun.returncode == 0, rerun.stderr.decode()[-2000:]
    assert audit.read_bytes().endswith(b"\n")
    summary = verify_log(audit)
    assert summary.intact, summary.problem
