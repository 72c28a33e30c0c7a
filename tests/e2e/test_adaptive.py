"""`retention run --execute` with no --concurrency or --rate against a sandbox that
allows only K requests in flight (429 with Retry-After beyond): the run finds the
limit, retries every 429, and deletes and records each due call exactly once."""

from __future__ import annotations

import pytest

from retention.audit.verify import verify_log
from retention.sandbox import Faults, SandboxApp
from tests.api.conftest import status_count
from tests.e2e.support import (
    Workspace,
    expected_deletions,
    make_dataset,
    run_cli,
    sandbox,
    workspace,
)

__all__ = ["workspace"]  # the fixture, re-exported for pytest


@pytest.mark.parametrize("k", [2, 5])
def test_a_run_against_k_in_flight_deletes_each_due_call_once_and_retries_the_429s(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    workspace: Workspace,
    k: int,
) -> None:
    dataset = make_dataset(calls=300)
    expected = expected_deletions(dataset)
    app = SandboxApp(dataset, Faults(max_in_flight=k, latency_ms=3))
    with sandbox(app) as url:
        result = run_cli(capsys, monkeypatch, workspace, url, "--execute")

    assert result.code == 0, result.err
    assert status_count(app, 429) > 0  # the run met the wall (it starts above K)
    assert app.dataset.redacted_ids() == expected
    lines = workspace.lines()
    intents = [line["call_id"] for line in lines if line["event"] == "delete_requested"]
    deleted = [line["call_id"] for line in lines if line["event"] == "deleted"]
    # No call lost, none deleted (or recorded) twice, no outcome other than `deleted`.
    assert sorted(intents) == sorted(deleted) == sorted(expected)
    assert {line["event"] for line in lines} == {
        "run_started",
        "delete_requested",
        "deleted",
        "run_finished",
    }
    finished = lines[-1]
    assert finished["counts"]["outcomes"] == {"deleted": len(expected)}
    assert lines[0]["options"]["concurrency"] is None  # adaptive: no ceiling was given
    assert verify_log(workspace.audit_log).intact
