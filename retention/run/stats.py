"""Counters of one run, updated as calls flow and read by the progress display,
the final summary, the reports and the Prometheus export. Bounded in size: keys
are outcomes, reasons, policy names, agents and regions, never call ids."""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from retention.audit.events import MAX_CAUSES, OTHER_CAUSE, Outcome
from retention.policy.decision import Decision
from retention.run.forecast import Forecast

DAY: Final = 86400.0
# Ages of decided calls, in days: (upper bound, label); the last bucket is open.
AGE_BUCKETS: Final = (
    (1.0, "under 1 day"),
    (7.0, "1 to 7 days"),
    (30.0, "7 to 30 days"),
    (90.0, "30 to 90 days"),
    (180.0, "90 to 180 days"),
    (365.0, "180 days to 1 year"),
    (730.0, "1 to 2 years"),
    (math.inf, "2 years or more"),
)
# Time until a kept call becomes due, in days (the forecast).
FORECAST_BUCKETS: Final = (
    (1.0, "within 1 day"),
    (7.0, "in 1 to 7 days"),
    (30.0, "in 7 to 30 days"),
    (90.0, "in 30 to 90 days"),
    (365.0, "in 90 days to 1 year"),
    (math.inf, "in 1 year or more"),
)
DEAD_HOLD: Final = "hold {name} matched no call: check its conditions"
MATCH_MASKS: Final = 8192  # distinct match masks held before folding them by name


def bucket(days: float, buckets: tuple[tuple[float, str], ...]) -> str:
    """The label of the first bucket whose upper bound is above `days` (negative: the first)."""
    for upper, label in buckets:
        if days < upper:
            return label
    return buckets[-1][1]


@dataclass
class RunStats:
    dry_run: bool = True
    started_monotonic: float = field(default_factory=time.monotonic)
    started_unix: float = field(default_factory=time.time)
    finished_unix: float | None = None
    agents: int = 0
    scanned: int = 0  # calls listed
    due: int = 0  # calls the policies select for deletion
    outcomes: Counter[str] = field(default_factory=Counter)  # Outcome -> count
    skipped: Counter[str] = field(default_factory=Counter)  # a SKIP_REASONS member -> count
    kept: Counter[str] = field(default_factory=Counter)  # a KEEP_REASONS member -> count
    # credited policy -> outcome -> count
    by_policy: dict[str, Counter[str]] = field(default_factory=dict)
    requests: int = 0
    retries: int = 0
    throttled: int = 0  # 429 answers
    transport_errors: int = 0  # timeouts, refused and dropped connections
    deletes_resent: int = 0  # DELETEs sent again after an attempt that may have taken effect
    limit_cuts: int = 0  # times the in-flight limit or the rate was cut (429s, latency)
    exit_code: int | None = None
    # Added for the run's reports: bounded by agents, regions and policies, never by calls.
    agents_failed: int = 0  # agents whose calls could not all be listed
    agent_names: dict[str, str] = field(default_factory=dict)  # agent id -> name
    listed_by_agent: dict[str, int] = field(default_factory=dict)  # agent id -> calls listed
    deleted_agents: set[str] = field(default_factory=set)  # ids listed with a deleted_at
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
    # sweep (`delete_after: 0d`) -> skip reason -> calls it matched that were skipped
    sweep_skipped: dict[str, Counter[str]] = field(default_factory=dict)
    # `apply`: planned calls not deleted because no longer due, by reason
    dropped: Counter[str] = field(default_factory=Counter)
    # For the HTML report: histograms with fixed buckets, bounded whatever the run's size.
    age_due: Counter[str] = field(default_factory=Counter)  # AGE_BUCKETS label -> calls due
    age_kept: Counter[str] = field(default_factory=Counter)  # AGE_BUCKETS label -> calls kept
    # policy that will be due first -> FORECAST_BUCKETS label -> kept calls becoming due
    forecast: dict[str, Counter[str]] = field(default_factory=dict)
    # policy -> calls becoming due per day up to the horizon (retention/run/forecast.py)
    upcoming: Forecast = field(default_factory=Forecast)
    # policy -> calls whose decision cites it (credited or holding); 0: a dead rule this run
    cited: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)  # cause -> count: MAX_CAUSES, "other"
    # Calls matched per policy (all its conditions hold, whatever the decision), counted
    # cheaply per call as mask -> calls (bit i: policy_names[i]), folded into `matched`
    # by policy name whenever MATCH_MASKS masks are held: bounded by policies.
    policy_names: tuple[str, ...] = ()
    retention_rules: frozenset[str] = frozenset()  # for the dead-hold warnings
    match_masks: dict[int, int] = field(default_factory=dict)
    matched: Counter[str] = field(default_factory=Counter)

    def set_policies(self, names: Sequence[str], retention_rules: Iterable[str]) -> None:
        """The loaded policies, in the order of their bits in a match mask."""
        self.fold_matches()
        self.policy_names = tuple(names)
        self.retention_rules = frozenset(retention_rules)

    def fold_matches(self) -> None:
        """Expands the masks counted so far into `matched`, by policy name."""
        names = self.policy_names
        for mask, calls in self.match_masks.items():
            bit = 0
            while mask:
                if mask & 1:
                    self.matched[names[bit]] += calls
                mask >>= 1
                bit += 1
        self.match_masks.clear()

    def matched_by_policy(self) -> dict[str, int]:
        """Every loaded policy (and any other counted) -> calls it matched this run."""
        self.fold_matches()
        counts = dict.fromkeys(self.policy_names, 0)
        counts.update(self.matched)
        return dict(sorted(counts.items()))

    def dead_holds(self) -> list[str]:
        """Retention rules that matched no call, in a run that scanned calls."""
        if not self.scanned:
            return []
        matched = self.matched_by_policy()
        return sorted(name for name in self.retention_rules if not matched.get(name))

    def record_failure(self, cause: str) -> None:
        """A deletion or a listing failed: counted by cause, at most MAX_CAUSES causes."""
        if cause not in self.failures and len(self.failures) >= MAX_CAUSES:
            cause = OTHER_CAUSE
        self.failures[cause] += 1

    def record_age(self, due: bool, age_seconds: float | None) -> None:
        """A call decided due (or kept) at this age, for the age histograms."""
        if age_seconds is None:
            return
        label = bucket(age_seconds / DAY, AGE_BUCKETS)
        (self.age_due if due else self.age_kept)[label] += 1

    def record_forecast(self, policy: str, seconds_until_due: float) -> None:
        """A kept call `policy` will delete in `seconds_until_due`: the forecast's buckets
        and its per-day counters up to the horizon."""
        label = bucket(seconds_until_due / DAY, FORECAST_BUCKETS)
        self.forecast.setdefault(policy, Counter())[label] += 1
        self.upcoming.add(policy, seconds_until_due)

    def record_cited(self, decision: Decision) -> None:
        """The policies a decision names: its credited rule and every holder."""
        for name in {decision.credited_policy, *decision.holders}:
            if name:
                self.cited[name] += 1

    def record_outcome(self, policy: str, outcome: Outcome) -> None:
        key = outcome.value  # counters hold plain strings: their keys reach logs and JSON
        self.outcomes[key] += 1
        self.by_policy.setdefault(policy, Counter())[key] += 1

    def record_selected(self, policy: str, agent_id: str, region: str, outcome: Outcome) -> None:
        """A call selected for deletion reached `outcome` (would_delete in a dry run)."""
        self.record_outcome(policy, outcome)
        self.by_agent.setdefault(agent_id, Counter())[outcome.value] += 1
        self.by_region.setdefault(region, Counter())[outcome.value] += 1

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
        return self.outcomes[Outcome.DELETED] / elapsed if elapsed > 0 else 0.0
