"""Valid synthetic audit logs, for tests and for the flat-memory benchmark.

`ChainWriter` seals and writes records one by one (the same recipe as a run, via
`chain.seal`); `synthesize` writes a realistic log of about N lines: runs of
intents and outcomes interleaved as concurrent workers leave them, each run but
the last killed with one intent open that the next run resolves at its start.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, Final

from retention.audit.chain import GENESIS_HASH, encode_line, seal
from retention.audit.events import REDACTION_EVENTS, Event, Outcome

OUTCOME_WEIGHTS: Final = (
    (Event.DELETED, 90),
    (Event.ALREADY_REDACTED, 4),
    (Event.NOT_FOUND, 3),
    (Event.FAILED, 3),
)
POLICIES: Final = ("support-90d", "sales-30d", "erasure-sweep")


class ChainWriter:
    """Appends sealed lines to a binary stream, continuing a chain."""

    def __init__(self, out: BinaryIO, *, previous_hash: str = GENESIS_HASH, seq: int = 0) -> None:
        self.out = out
        self.previous_hash = previous_hash
        self.seq = seq

    def write(self, record: Mapping[str, Any]) -> dict[str, Any]:
        self.seq += 1
        sealed = seal(self.previous_hash, self.seq, record)
        self.previous_hash = sealed["hash"]
        self.out.write(encode_line(sealed))
        return sealed


class _Clock:
    """Milliseconds after `start` as RFC 3339 text; strftime only once per second (speed)."""

    def __init__(self, start: datetime) -> None:
        self.start = start
        self.ms = 0
        self._second = -1
        self._prefix = ""

    def tick(self, ms: int = 3) -> str:
        self.ms += ms
        second, milli = divmod(self.ms, 1000)
        if second != self._second:
            self._second = second
            instant = self.start + timedelta(seconds=second)
            self._prefix = instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
        return f"{self._prefix}.{milli:03d}Z"


def synthesize(
    path: Path,
    lines: int,
    *,
    calls_per_run: int = 50_000,
    in_flight: int = 16,
    seed: int = 7,
    start: datetime = datetime(2026, 1, 1, tzinfo=UTC),
) -> int:
    """Write a valid log of about `lines` lines (never fewer) to `path`; return the count."""
    rng = random.Random(seed)
    outcomes = [name for name, weight in OUTCOME_WEIGHTS for _ in range(weight)]
    clock = _Clock(start)
    call_number = 0
    run_number = 0
    pending: tuple[str, str, str] | None = None  # an intent left open by a killed run
    with path.open("wb") as out:
        writer = ChainWriter(out)

        def line(run_id: str, event: str, **extra: Any) -> None:
            writer.write({"ts": clock.tick(), "run_id": run_id, "event": event, **extra})

        def outcome(run_id: str, call_id: str, agent_id: str, policy: str) -> None:
            event = rng.choice(outcomes)
            extra: dict[str, Any] = {}
            if event in REDACTION_EVENTS:
                extra["redacted_at"] = clock.tick(0)
            elif event == Event.FAILED:
                extra["error"] = "HTTP 503: gave up after 5 attempts"
            line(run_id, event, call_id=call_id, agent_id=agent_id, policy=policy, **extra)

        while writer.seq < lines:
            run_number += 1
            run_id = f"run-{run_number:06d}"
            line(
                run_id, Event.RUN_STARTED, dry_run=False, policy_files={"policies/a.yaml": "0" * 64}
            )
            if pending is not None:
                outcome(run_id, *pending)  # the recovery of the previous, killed run
                pending = None
            budget = min(calls_per_run, max(1, (lines - writer.seq) // 2))
            open_calls: list[tuple[str, str, str]] = []
            for _ in range(budget):
                call_number += 1
                intent = (
                    f"call_{call_number:09d}",
                    f"agent_{call_number % 37:03d}",
                    POLICIES[call_number % len(POLICIES)],
                )
                line(
                    run_id,
                    Event.DELETE_REQUESTED,
                    call_id=intent[0],
                    agent_id=intent[1],
                    policy=intent[2],
                )
                open_calls.append(intent)
                if len(open_calls) >= in_flight:
                    outcome(run_id, *open_calls.pop(rng.randrange(len(open_calls))))
            killed = writer.seq + len(open_calls) + 1 < lines
            if killed:
                pending = open_calls.pop()
            for intent in open_calls:
                outcome(run_id, *intent)
            if not killed:
                line(run_id, Event.RUN_FINISHED, counts={Outcome.DELETED.value: budget})
        return writer.seq


if __name__ == "__main__":  # python -m retention.audit.synth PATH LINES
    import sys

    target, count = Path(sys.argv[1]), int(sys.argv[2])
    print(f"{synthesize(target, count)} lines written to {target}")
