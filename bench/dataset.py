"""Sizing the sandbox's dataset from the outside: the due set is counted with
the benchmarks' own hand-written rule, not with the policy engine."""

from __future__ import annotations

from datetime import datetime

from retention.api.models import TERMINAL_STATUSES, Call
from retention.sandbox.data import Dataset, DatasetSpec


def parse_now(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def due_under_delete_everything(call: Call, now: datetime) -> bool:
    """`delete_after: 0d` with an empty match, as DESIGN.md defines it."""
    origin = call.start_time if call.start_time is not None else call.end_time
    return (
        call.status in TERMINAL_STATUSES
        and call.redacted_at is None
        and not call.zdr_enabled
        and origin is not None
        and origin <= now
    )


def count_due(seed: int, agents: int, calls: int, now: str) -> int:
    moment = parse_now(now)
    dataset = Dataset(DatasetSpec(seed=seed, agents=agents, calls=calls, now=moment))
    return sum(
        due_under_delete_everything(c, moment) for c in dataset.iter_all_calls(transcripts=False)
    )


def calls_for_due(due: int, *, seed: int, agents: int, now: str) -> tuple[int, int]:
    """The smallest round total of calls with at least `due` due calls: (calls, due)."""
    calls = max(due, 10)
    while True:
        found = count_due(seed, agents, calls, now)
        if found >= due:
            return calls, found
        # Grow by the observed share of due calls, plus a margin.
        share = max(found / calls, 0.05)
        calls = max(calls + 10, int(due / share * 1.02) + 1)
