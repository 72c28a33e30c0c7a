"""Recovery and run control, unit by unit: a killed run's open intents settled against
the sandbox in process (httpx.ASGITransport), on a fake clock (trio's MockClock jumps
to the next deadline at once, so a 30-second settle window takes no real time).
Expected lines and counts are written out by hand."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest
import trio
import trio.testing

from retention.audit.events import OpenIntent
from retention.audit.writer import AuditLog
from retention.run.control import RunControl, RunGate, RunStopped, StopReason
from retention.run.journal import Journal
from retention.run.recovery import INVALID_ID, NOT_DELETED, recover, settle_delay
from retention.run.stats import RunStats
from retention.sandbox import Dataset, DatasetSpec, SandboxApp
from tests.api.conftest import in_process

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return "trio", {"clock": trio.testing.MockClock(autojump_threshold=0)}


@pytest.fixture
def app() -> SandboxApp:
    return SandboxApp(Dataset(DatasetSpec(seed=5, agents=2, calls=40, now=NOW)))


def terminal_calls(app: SandboxApp, count: int) -> list[tuple[str, str]]:
    """(call id, agent id) of unredacted completed calls."""
    found = [
        (c.id, c.agent_id)
        for c in app.dataset.iter_all_calls(transcripts=False)
        if c.status == "completed" and c.redacted_at is None
    ]
    assert len(found) >= count
    return found[:count]


def intent(call_id: str, agent_id: str, ts: str = "") -> OpenIntent:
    return OpenIntent(call_id, agent_id, "p", "killed-run", line=1, ts=ts)


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


async def settle(
    path: Path, app: SandboxApp, intents: list[OpenIntent], settle: float = 0.0
) -> RunStats:
    stats = RunStats()
    with AuditLog(path) as log:
        journal = Journal(log, "r2")
        async with anyio.create_task_group() as group:
            group.start_soon(journal.run)
            async with in_process(app) as client:
                try:
                    await recover(
                        {i.call_id: i for i in intents}, client, journal, stats, settle=settle
                    )
                finally:
                    await journal.close()
    return stats


@pytest.mark.anyio
async def test_each_open_intent_ends_as_the_api_answers(tmp_path: Path, app: SandboxApp) -> None:
    (kept_id, kept_agent), (done_id, done_agent) = terminal_calls(app, 2)
    redacted_at = datetime(2026, 3, 1, 11, 59, 30, 250000, tzinfo=UTC)
    app.dataset.redact(done_id, redacted_at)  # the killed run's DELETE took effect
    intents = [
        intent(done_id, done_agent),
        intent(kept_id, kept_agent),
        intent("call_never_existed", kept_agent),
        intent("../etc", kept_agent),  # could not have been sent: no URL carries it
    ]
    stats = await settle(tmp_path / "audit.jsonl", app, intents)
    outcomes = {
        (r["call_id"], r["event"], r.get("redacted_at"), r.get("error"))
        for r in lines(tmp_path / "audit.jsonl")
    }
    assert outcomes == {
        (done_id, "deleted", "2026-03-01T11:59:30.250000Z", None),
        (kept_id, "failed", None, NOT_DELETED),
        ("call_never_existed", "not_found", None, None),
        ("../etc", "failed", None, INVALID_ID),
    }
    assert dict(stats.recovered) == {
        "deleted": 1,
        "not_deleted": 1,
        "not_found": 1,
        "invalid_id": 1,
    }


@pytest.mark.anyio
async def test_a_delete_landing_inside_the_settle_window_is_recorded(
    tmp_path: Path, app: SandboxApp
) -> None:
    """The killed run's DELETE reaches the API 10 s after its intent: recovery reads the
    call, waits out the 30 s window on the fake clock, reads again and sees it."""
    [(call_id, agent_id)] = terminal_calls(app, 1)
    written = (
        datetime.now(UTC).isoformat().replace("+00:00", "Z")
    )  # settle_delay reads the wall clock
    started = trio.current_time()

    async def late_delete() -> None:
        await trio.sleep(10)
        app.dataset.redact(call_id, datetime(2026, 3, 1, 12, 0, 10, tzinfo=UTC))

    async with anyio.create_task_group() as group:
        group.start_soon(late_delete)
        stats = await settle(
            tmp_path / "audit.jsonl", app, [intent(call_id, agent_id, written)], 30.0
        )
    [record] = lines(tmp_path / "audit.jsonl")
    assert (record["event"], record["redacted_at"]) == ("deleted", "2026-03-01T12:00:10Z")
    assert dict(stats.recovered) == {"deleted": 1}
    assert 29 <= trio.current_time() - started <= 31  # fake seconds: the window, once


def test_the_settle_window_counts_from_when_the_intent_was_written() -> None:
    at = datetime(2026, 3, 1, 12, 0, 20, tzinfo=UTC)
    assert settle_delay(intent("c", "a", "2026-03-01T12:00:00Z"), 30.0, at) == 10.0
    assert settle_delay(intent("c", "a", "2026-03-01T11:00:00Z"), 30.0, at) == 0.0
    assert settle_delay(intent("c", "a", "2026-03-01T12:00:00"), 30.0, at) == 10.0  # naive: UTC
    assert settle_delay(intent("c", "a", "2026-03-01T12:05:00Z"), 30.0, at) == 30.0  # future
    assert settle_delay(intent("c", "a", "not a time"), 30.0, at) == 30.0


@pytest.mark.anyio
async def test_refused_credentials_stop_recovery_and_leave_the_intents_open(
    tmp_path: Path, app: SandboxApp
) -> None:
    app.revoke_key()
    intents = [intent(c, a) for c, a in terminal_calls(app, 3)]
    with pytest.raises(ExceptionGroup) as caught:  # out of the journal's task group
        await settle(tmp_path / "audit.jsonl", app, intents)
    assert caught.group_contains(RunStopped)
    assert lines(tmp_path / "audit.jsonl") == []  # nothing closed: the next run asks again


# -- run control ---------------------------------------------------------------------


@pytest.mark.anyio
async def test_the_first_stop_reason_is_kept_and_a_signal_gives_the_grace_period() -> None:
    control = RunControl(grace_period=20.0)
    assert not control.stopping
    control.stop(StopReason.MAX_DELETES)
    assert control.listing.cancel_called and control.work.deadline == float("inf")
    now = trio.current_time()
    control.stop(StopReason.SIGNAL)
    assert control.reason is StopReason.MAX_DELETES  # the exit code reports the first
    assert control.work.deadline == now + 20.0 == control.recovery.deadline
    assert not control.gate_closed


class _Limiter:
    """The smallest Gate: lets everything through, and counts."""

    def __init__(self) -> None:
        self.slots = 0

    def slot(self, *, ahead: bool = False) -> Any:
        limiter = self

        class _Slot:
            async def __aenter__(self) -> None:
                limiter.slots += 1

            async def __aexit__(self, *args: object) -> None:
                return None

        return _Slot()

    def throttled(self, retry_after: float | None) -> None:
        return None

    def succeeded(self) -> None:
        return None


@pytest.mark.anyio
async def test_refused_credentials_close_the_gate_for_every_later_request() -> None:
    control = RunControl(grace_period=5.0)
    limiter = _Limiter()
    gate = RunGate(limiter, control)
    async with gate.slot():
        pass
    control.stop(StopReason.CREDENTIALS)
    with pytest.raises(RunStopped):
        async with gate.slot():
            pass
    assert limiter.slots == 1 and control.gate_closed
