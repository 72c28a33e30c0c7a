"""How big each benchmark is: the full figures, and a smoke mode that only
proves the harness works end to end."""

from __future__ import annotations

from dataclasses import dataclass

NOW = "2026-06-01T00:00:00Z"


@dataclass(frozen=True)
class Sizes:
    rate_due: int  # due calls the rate benchmark deletes (>= 1500 for the figure)
    speed_due: int  # due calls both the naive script and the tool delete
    cpu_listed: int  # calls listed by the tool's dry run and by the SDK
    cpu_deleted: int  # due calls deleted by the tool and by the SDK
    memory_small: int
    memory_large: int
    engine_decisions: int
    engine_pool: int  # distinct calls cycled through by the engine benchmark
    audit_small: int  # audit log lines
    audit_large: int
    startup_lines: int  # the audit log a start-up is measured against (vs an empty one)
    shard_calls: int  # calls per shard count in the scale-out figure
    apply_execute: int = 20_000  # calls planned and deleted by `apply --execute` (all due)
    apply_large: int = 1_000_000  # calls planned, then applied without --execute
    agents: int = 10
    repeats: int = 3  # each repeated figure is the median of this many rounds (`--repeat`)


FULL = Sizes(
    rate_due=1600,
    speed_due=2000,
    cpu_listed=50_000,
    cpu_deleted=5_000,
    memory_small=20_000,
    memory_large=1_000_000,
    engine_decisions=1_000_000,
    engine_pool=20_000,
    audit_small=100_000,
    audit_large=1_000_000,
    startup_lines=1_000_000,
    shard_calls=2_000,
)

QUICK = Sizes(
    rate_due=60,
    speed_due=40,
    cpu_listed=400,
    cpu_deleted=100,
    memory_small=200,
    memory_large=800,
    engine_decisions=5_000,
    engine_pool=500,
    audit_small=200,
    audit_large=1_000,
    startup_lines=2_000,
    shard_calls=120,
    apply_execute=300,
    apply_large=600,
    agents=4,
    repeats=1,
)
