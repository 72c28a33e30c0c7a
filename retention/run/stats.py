"""Counters of one run, updated as calls flow and read by the progress display,
the final summary, the reports and the Prometheus export. Bounded in size: keys
are outcomes, reasons, policy names, agents and regions, never call ids."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class RunStats:
    dry_run: bool = True
    started_monotonic: float = field(default_factory=time.monotonic)
    started_unix: float = field(default_factory=time.time)
    finished_unix: float | None = None
    agents: int = 0
    scanned: int = 0  # calls listed
    due: int = 0  # calls the policies select for deletion
    # outcome -> count: deleted, already_redacted, not_found, failed, would_delete
    outcomes: Counter[str] = field(default_factory=Counter)
    # skip reason -> count: not_terminal, already_redacted, no_timestamp, zdr
    skipped: Counter[str] = field(default_factory=Counter)
    # keep reason -> count: held, no_deletion_rule, not_yet_due
    kept: Counter[str] = field(default_factory=Counter)
    # credited policy -> outcome -> count
    by_policy: dict[str, Counter[str]] = field(default_factory=dict)
    requests: int = 0
    retries: int = 0
    throttled: int = 0  # 429 answers
    exit_code: int | None = None

    def record_outcome(self, policy: str, outcome: str) -> None:
        self.outcomes[outcome] += 1
        self.by_policy.setdefault(policy, Counter())[outcome] += 1

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started_monotonic

    @property
    def deletions_per_second(self) -> float:
        elapsed = self.elapsed
        return self.outcomes["deleted"] / elapsed if elapsed > 0 else 0.0
