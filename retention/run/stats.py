"""Counters of one run, updated as calls flow and read by the progress display,
the final summary, the reports and the Prometheus export. Bounded in size: keys
are outcomes, reasons, policy names, agents and regions, never call ids."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from retention.policy.decision import Decision


@dataclass
class RunStats:
    dry_run: bool = True
    started_monotonic: float = field(default_factory=time.monotonic)
    started_unix: float = field(default_factory=time.time)
    finished_unix: float | None = None
    agents: int = 0
    scanned: int = 0  # calls listed
    due: int = 0  # calls the policies select for deletion
    # outcome -> count: deleted, already_redacted, not_found, failed, would_delete, and
    # unconfirmed (sent, but what the API did is unknown: the intent stays open)
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
    # Added for the run's reports: bounded by agents, regions and policies, never by calls.
    agents_failed: int = 0  # agents whose calls could not all be listed
    agent_names: dict[str, str] = field(default_factory=dict)  # agent id -> name
    by_agent: dict[str, Counter[str]] = field(default_factory=dict)  # agent id -> outcome
    by_region: dict[str, Counter[str]] = field(default_factory=dict)  # region -> outcome
    # retention policy -> calls held: a call held by several rules counts under each
    held_by: Counter[str] = field(default_factory=Counter)
    stop_reason: str | None = None  # max_deletes, signal, credentials, or None
    recovered: Counter[str] = field(default_factory=Counter)  # open intents of a killed run
    # For the erasure certificate (run_finished's counts): bounded by policies, never calls.
    due_by_policy: Counter[str] = field(default_factory=Counter)  # credited policy -> calls due
    # credited deletion policy -> retention policy -> calls it held from that deletion
    held_from: dict[str, Counter[str]] = field(default_factory=dict)
    # `apply`: planned calls not deleted because no longer due, by reason
    dropped: Counter[str] = field(default_factory=Counter)

    def record_outcome(self, policy: str, outcome: str) -> None:
        self.outcomes[outcome] += 1
        self.by_policy.setdefault(policy, Counter())[outcome] += 1

    def record_selected(self, policy: str, agent_id: str, region: str, outcome: str) -> None:
        """A call selected for deletion reached `outcome` (would_delete in a dry run)."""
        self.record_outcome(policy, outcome)
        self.by_agent.setdefault(agent_id, Counter())[outcome] += 1
        self.by_region.setdefault(region, Counter())[outcome] += 1

    def record_held(self, decision: Decision) -> None:
        """A call kept because retention rules hold it: counted under every holder, and
        under each (credited deletion rule, holder) pair for the sweeps' report lines."""
        credited = decision.credited_policy or ""
        for holder in decision.holders:
            self.held_by[holder] += 1
            self.held_from.setdefault(credited, Counter())[holder] += 1

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started_monotonic

    @property
    def deletions_per_second(self) -> float:
        elapsed = self.elapsed
        return self.outcomes["deleted"] / elapsed if elapsed > 0 else 0.0
