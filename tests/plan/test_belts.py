"""The safety belts of `run --execute`, end to end against the sandbox: the first-run
rule, and the surge guard's line computed by hand from a hand-made audit history."""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from retention.audit.synth import ChainWriter
from retention.run.belts import SurgeGuard, surge_limit
from retention.sandbox import SandboxApp
from tests.e2e.support import (
    API_KEY,
    Workspace,
    deletes_sent,
    expected_deletions,
    make_dataset,
    read_audit,
    requests_sent,
    sandbox,
    workspace,
)
from tests.plan.test_plan_apply import Run, cli, common

__all__ = ["workspace"]


@pytest.fixture
def app() -> SandboxApp:
    return SandboxApp(make_dataset(calls=400), api_key=API_KEY)


@pytest.fixture
def url(app: SandboxApp) -> Iterator[str]:
    with sandbox(app) as base_url:
        yield base_url


def write_history(log: Path, runs: list[tuple[bool, int]]) -> None:
    """A valid chained log of earlier runs: (dry_run, deleted) each."""
    with log.open("wb") as out:
        chain = ChainWriter(out)
        for number, (dry_run, deleted) in enumerate(runs):
            run_id = f"run{number}"
            chain.write({"event": "run_started", "run_id": run_id, "dry_run": dry_run})
            outcomes = {"would_delete" if dry_run else "deleted": deleted}
            chain.write(
                {
                    "event": "run_finished",
                    "run_id": run_id,
                    "dry_run": dry_run,
                    "exit_code": 0,
                    "counts": {"outcomes": outcomes},
                }
            )


def test_a_first_execute_run_needs_max_deletes(
    capsys: Run, monkeypatch: pytest.MonkeyPatch, workspace: Workspace, app: SandboxApp, url: str
) -> None:
    due = expected_deletions(app.dataset)
    write_history(workspace.audit_log, [(True, 5000)])  # a dry run is no history
    done = cli(capsys, monkeypatch, "run", *common(workspace, url), "--execute")
    assert done.code == 2
    assert "first execute run" in done.err and "--max-deletes" in done.err
    assert "retention plan" in done.err
    assert requests_sent(app) == 0  # refused before the first request
    assert len(read_audit(workspace.audit_log)) == 2  # nothing appended

    dry = cli(capsys, monkeypatch, "run", *common(workspace, url))
    assert dry.code == 0, dry.err
    capped = cli(
        capsys, monkeypatch, "run", *common(workspace, url), "--execute", "--max-deletes", "7"
    )
    assert capped.code == 3, capped.err
    assert deletes_sent(app) == 7
    # Now the log has history: the next run goes on without a cap (under the guard).
    again = cli(capsys, monkeypatch, "run", *common(workspace, url), "--execute")
    assert again.code == 0, again.err
    assert app.dataset.redacted_ids() == due


def test_the_surge_guard_stops_at_its_line_from_the_audit_history(
    capsys: Run, monkeypatch: pytest.MonkeyPatch, workspace: Workspace, app: SandboxApp, url: str
) -> None:
    due = expected_deletions(app.dataset)
    # Twelve execute runs: the two oldest fall out of the window of ten; a dry run's
    # count never counts. The last ten deleted 10,11,...,19: median 14.5.
    history = [(False, 9000), (False, 9000), (True, 9000)]
    history += [(False, 10 + n) for n in range(10)]
    write_history(workspace.audit_log, history)
    line = 29  # max(floor 5, ceil(factor 2 x median 14.5)), by hand
    assert len(due) > line

    flags = ("--execute", "--surge-floor", "5", "--surge-factor", "2")
    done = cli(capsys, monkeypatch, "run", *common(workspace, url), *flags)

    assert done.code == 3, done.err
    assert deletes_sent(app) == line
    assert len(app.dataset.redacted_ids()) == line
    lines = read_audit(workspace.audit_log)
    assert lines[-1]["stopped_by"] == "surge_guard"
    assert [line for line in lines if line["event"] == "run_started"][-1]["surge_limit"] == line
    assert "surge guard" in done.err and "--no-surge-guard" in done.err
    assert "retention plan" in done.err

    free = cli(capsys, monkeypatch, "run", *common(workspace, url), *flags, "--no-surge-guard")
    assert free.code == 0, free.err
    assert app.dataset.redacted_ids() == due


def test_the_surge_guard_lets_a_usual_run_through(
    capsys: Run, monkeypatch: pytest.MonkeyPatch, workspace: Workspace, app: SandboxApp, url: str
) -> None:
    due = expected_deletions(app.dataset)
    write_history(workspace.audit_log, [(False, len(due))])  # yesterday deleted as many
    flags = ("--execute", "--surge-floor", "5")
    done = cli(capsys, monkeypatch, "run", *common(workspace, url), *flags)
    assert done.code == 0, done.err
    assert app.dataset.redacted_ids() == due


@given(
    counts=st.lists(st.integers(0, 10**6), max_size=10),
    floor=st.integers(0, 10**5),
    factor=st.floats(1.0, 10.0),
)
def test_surge_limit_is_the_larger_of_floor_and_factor_times_median(
    counts: list[int], floor: int, factor: float
) -> None:
    ordered = sorted(counts)
    n = len(ordered)
    if n == 0:
        median = 0.0
    elif n % 2:
        median = float(ordered[n // 2])
    else:
        median = (ordered[n // 2 - 1] + ordered[n // 2]) / 2
    assert median == (statistics.median(counts) if counts else 0)
    limit = surge_limit(counts, SurgeGuard(True, floor, factor))
    assert limit >= floor
    assert limit >= factor * median - 1e-6
    assert limit == floor or limit - 1 < factor * median
