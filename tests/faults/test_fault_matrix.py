"""The run under every fault the sandbox can inject.

For each fault: nothing outside the policies is deleted, every redaction the
sandbox performed is in the audit log with the sandbox's own `redacted_at`, and
a rerun with the faults off converges to exactly the expected set."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from retention.sandbox.data import DatasetSpec
from retention.sandbox.faults import Behaviour, Faults
from tests.faults.support import (
    NOW,
    Result,
    Sandbox,
    audit_records,
    expected_ids,
    invoke,
    logged_redactions,
    run_argv,
    running_sandbox,
    when,
    write_policies,
)

# Three agents, the busiest with three pages of calls (100, 100, 10).
SPEC = DatasetSpec(seed=11, agents=3, calls=400, now=NOW)
EXPECTED = expected_ids(SPEC)

MATRIX: dict[str, tuple[Faults, Behaviour]] = {
    "429-storm": (Faults(rate=60, max_in_flight=3), Behaviour()),
    "429-without-retry-after-ms": (
        Faults(rate=60, max_in_flight=3, retry_after_ms=False),
        Behaviour(),
    ),
    "5xx": (Faults(error_rate=0.15), Behaviour()),
    "5xx-after-delete-took-effect": (Faults(error_rate=0.15, after_effect=True), Behaviour()),
    "dropped-connections": (Faults(drop_rate=0.15), Behaviour()),
    "dropped-after-delete-took-effect": (Faults(drop_rate=0.15, after_effect=True), Behaviour()),
    "dropped-after-effect-redelete-409": (
        Faults(drop_rate=0.15, after_effect=True),
        Behaviour(redelete_status=409),
    ),
    "malformed-json": (Faults(malformed_rate=0.15), Behaviour()),
    "same-call-on-two-pages": (Faults(duplicate_rate=0.6), Behaviour()),
    "cursor-does-not-advance": (Faults(stuck_cursor=True), Behaviour()),
    "everything-at-once": (
        Faults(
            rate=150,
            max_in_flight=8,
            latency_ms=2,
            jitter_ms=2,
            error_rate=0.06,
            drop_rate=0.06,
            malformed_rate=0.06,
            duplicate_rate=0.3,
            after_effect=True,
        ),
        Behaviour(redelete_status=409, nonterminal_delete_status=409),
    ),
}


# How a 429 case opens: a bucket of one request per two seconds, so the run's second
# request (the first listing, sent right after `GET /agents`) is refused whatever the
# machine's speed; from that 429 on, the case's own faults apply. Without this opening the
# 429s depended on speed: the sandbox answers within one event-loop step, so its in-flight
# count never passes 1, and a run slowed by a busy machine stays under 60 requests/s.
OPENING: dict[str, Faults] = {
    "429-storm": Faults(rate=0.5),
    "429-without-retry-after-ms": Faults(rate=0.5, retry_after_ms=False),
}


def fault_fired(name: str, sandbox: Sandbox) -> bool:
    """Evidence from the sandbox's counters that the fault under test happened."""
    stats = sandbox.app.stats
    if name.startswith("429"):
        return sandbox.count("", 429) > 0
    if name.startswith("5xx"):
        return any(status >= 500 for _, status in stats.requests)
    if name.startswith("dropped"):
        return sum(stats.dropped.values()) > 0
    if name.startswith("malformed"):
        return sum(stats.malformed.values()) > 0
    if name in ("same-call-on-two-pages", "cursor-does-not-advance"):
        return sandbox.count("GET /agents/calls", 200) >= 2  # a page after the first
    return sandbox.count("") > 0


def assert_consistent(
    sandbox: Sandbox, audit_log: Path, expected: frozenset[str], *, settled: bool = False
) -> None:
    """Nothing outside the policies redacted; every redaction logged with its time.

    Before the log is `settled` by a clean rerun, a redaction whose answer never came
    back may still be an open `delete_requested` (by design: the next run asks the API
    and records the outcome); it must then be exactly that, an intent with no outcome.
    """
    redactions = sandbox.redactions()
    outside = set(redactions) - expected
    assert not outside, f"{len(outside)} calls deleted that no policy allows"
    records = audit_records(audit_log)
    logged = logged_redactions(records)
    pending = set() if settled else open_intents(records)
    missing = [cid for cid in redactions if cid not in logged and cid not in pending]
    assert not missing, f"{len(missing)} redactions missing from the audit log"
    wrong = [cid for cid, at in redactions.items() if cid in logged and at not in logged[cid]]
    assert not wrong, f"{len(wrong)} redactions logged with another redacted_at"


def open_intents(records: list[dict[str, Any]]) -> set[str]:
    """Calls whose last `delete_requested` has no outcome line after it."""
    outcomes = {"deleted", "already_redacted", "not_found", "failed"}
    still_open: set[str] = set()
    for record in records:
        if record.get("event") == "delete_requested":
            still_open.add(record["call_id"])
        elif record.get("event") in outcomes:
            still_open.discard(record["call_id"])
    return still_open


def converge(
    sandbox: Sandbox,
    policies: Path,
    audit_log: Path,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    expected: frozenset[str] = EXPECTED,
) -> None:
    """Faults off, run again: exactly the expected set ends up redacted, and logged."""
    sandbox.app.faults = Faults()
    sandbox.app.behaviour = Behaviour()
    rerun = invoke(run_argv(sandbox.url, policies, audit_log), capfd, monkeypatch)
    assert rerun.exit_code == 0, rerun.stderr[-2000:]
    assert "Traceback" not in rerun.stderr
    assert set(sandbox.redactions()) == expected
    assert_consistent(sandbox, audit_log, expected, settled=True)
    verify = invoke(["audit", "verify", str(audit_log)], capfd, monkeypatch)
    assert verify.exit_code == 0, verify.stdout[-2000:] + verify.stderr[-2000:]


def assert_clean_failure(result: Result) -> None:
    assert result.exit_code in (0, 1), result.stderr[-2000:]
    assert "Traceback" not in result.stderr


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", list(MATRIX))
def test_fault_then_rerun_converges(
    name: str,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    faults, behaviour = MATRIX[name]
    policies = write_policies(tmp_path / "policies")
    audit_log = tmp_path / "audit.jsonl"
    with running_sandbox(SPEC, OPENING.get(name, faults), behaviour) as sandbox:
        with when(
            lambda: sandbox.count("", 429) >= 1,
            lambda: setattr(sandbox.app, "faults", faults),
        ):
            first = invoke(run_argv(sandbox.url, policies, audit_log), capfd, monkeypatch)
        assert fault_fired(name, sandbox)
        assert_clean_failure(first)
        assert_consistent(sandbox, audit_log, EXPECTED)
        converge(sandbox, policies, audit_log, capfd, monkeypatch)


@pytest.mark.timeout(120)
def test_429_storm_slows_down_instead_of_hammering(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Against a server that allows 50 requests/s, a run told to go at 1000/s still
    finishes, and the 429s stay a bounded share of what it sent (no retry storm)."""
    policies = write_policies(tmp_path / "policies")
    audit_log = tmp_path / "audit.jsonl"
    with running_sandbox(SPEC, Faults(rate=50)) as sandbox:
        result = invoke(
            run_argv(sandbox.url, policies, audit_log, "--rate", "1000", "--concurrency", "32"),
            capfd,
            monkeypatch,
        )
        assert result.exit_code == 0, result.stderr[-2000:]
        assert set(sandbox.redactions()) == EXPECTED
        throttled, answered = sandbox.count("", 429), sandbox.count("")
        assert throttled < answered  # more succeeded than were refused
        assert_consistent(sandbox, audit_log, EXPECTED)


@pytest.mark.timeout(120)
def test_agent_deleted_mid_run(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    policies = write_policies(tmp_path / "policies")
    audit_log = tmp_path / "audit.jsonl"
    with running_sandbox(SPEC, Faults(latency_ms=5)) as sandbox:
        dataset = sandbox.dataset
        # The busiest agent (several pages) vanishes once its first page was served.
        victim = max(dataset.agents(), key=lambda a: dataset.call_count(a.id)).id
        victim_calls = frozenset(c.id for c in dataset.iter_calls(victim, transcripts=False))
        assert len(victim_calls) > 100
        with when(
            lambda: sandbox.count("GET /agents/calls", 200) >= 1,
            lambda: sandbox.app.remove_agent(victim),
        ) as removed:
            first = invoke(run_argv(sandbox.url, policies, audit_log), capfd, monkeypatch)
        assert removed.is_set()
        assert_clean_failure(first)
        redacted = dataset.redacted_ids()
        assert redacted <= EXPECTED, "deleted calls that no policy allows"
        assert_consistent(sandbox, audit_log, EXPECTED)
        # The vanished agent's calls can no longer be listed: the rest converges.
        still_listed = EXPECTED - victim_calls
        sandbox.app.faults = Faults()
        rerun = invoke(run_argv(sandbox.url, policies, audit_log), capfd, monkeypatch)
        assert rerun.exit_code == 0, rerun.stderr[-2000:]
        assert still_listed <= dataset.redacted_ids() <= EXPECTED
        verify = invoke(["audit", "verify", str(audit_log)], capfd, monkeypatch)
        assert verify.exit_code == 0, verify.stdout[-2000:]


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_key_revoked_mid_run_stops_at_once(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """401 mid-run: exit 4 at once (no more than the requests already in flight
    are refused), the log stays consistent, and a rerun with the key back converges."""
    policies = write_policies(tmp_path / "policies")
    audit_log = tmp_path / "audit.jsonl"
    concurrency = 4
    with running_sandbox(SPEC, Faults(latency_ms=3)) as sandbox:
        with when(
            lambda: sandbox.app.stats.deletions >= 10,
            sandbox.app.revoke_key,
        ) as revoked:
            first = invoke(
                run_argv(sandbox.url, policies, audit_log, "--concurrency", str(concurrency)),
                capfd,
                monkeypatch,
            )
        assert revoked.is_set()
        assert first.exit_code == 4, first.stderr[-2000:]
        assert "Traceback" not in first.stderr
        assert 1 <= sandbox.count("", 401) <= concurrency, "kept sending after the 401"
        assert sandbox.app.stats.deletions < len(EXPECTED)
        assert_consistent(sandbox, audit_log, EXPECTED)
        records = audit_records(audit_log)
        assert records[-1]["event"] == "run_finished"
        sandbox.app.restore_key()
        converge(sandbox, policies, audit_log, capfd, monkeypatch)


@pytest.mark.timeout(120)
def test_responses_slower_than_the_client_timeout(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """About one answer in twenty comes after the client gave up; a DELETE the client
    abandoned still takes effect on the server, and must still end up in the log."""
    policies = write_policies(tmp_path / "policies")
    audit_log = tmp_path / "audit.jsonl"
    with running_sandbox(SPEC, Faults(latency_ms=50, jitter_ms=110)) as sandbox:
        argv = run_argv(sandbox.url, policies, audit_log, "--timeout", "0.15")
        first = invoke(argv, capfd, monkeypatch)
        assert_clean_failure(first)
        # Abandoned DELETEs were sent again: more requests than redactions.
        assert sandbox.count("DELETE") > sandbox.app.stats.deletions
        assert_consistent(sandbox, audit_log, EXPECTED)
        converge(sandbox, policies, audit_log, capfd, monkeypatch)
