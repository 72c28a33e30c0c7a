"""Start-up against a long audit log, how evenly shards split the agents, and the
scale-out of side by side shards.

- startup: a dry run over an empty account, its audit log empty vs a 1M-line log
  (synthesized, then one run to record its resume point), each round side by side;
  the figure is the median ratio of the runs' CPU time (the process's own, from
  wait4: what the log costs, whatever else the machine runs), with wall times beside.
- shards: the calls per shard over 64 agents of the sandbox's dataset, the heaviest
  shard against an even split, with `sha256 mod N` and with `--shard-sizes`.
- scaleout: 1, 2 and 4 shards run side by side against one sandbox with room for all
  of them in flight; aggregate deletions per second as the sandbox saw them.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from pathlib import Path

from bench import policies
from bench.cases import SEED, BenchError, run_tool, watch
from bench.dataset import calls_for_due, parse_now
from bench.figures import Figure, Spread, at_most
from bench.procs import Measured, SandboxSpec, sandbox
from bench.sizes import NOW, Sizes
from bench.stats import read_counts
from retention.audit.synth import synthesize
from retention.run.shard import balanced_shards, shard_of
from retention.sandbox.data import Dataset, DatasetSpec

SHARD_AGENTS = 64


def startup_time(sizes: Sizes, tmp: Path) -> Figure:
    spec = SandboxSpec(seed=SEED, agents=1, calls=0, now=NOW)
    policy = policies.write(tmp, "everything", policies.DELETE_EVERYTHING)
    long_dir = tmp / "long"
    long_dir.mkdir()
    lines = synthesize(long_dir / "audit.jsonl", sizes.startup_lines)
    rounds: list[tuple[Measured, Measured]] = []
    with sandbox(spec) as url:
        first = run_tool(url, policy, long_dir)  # the full scan; it records the resume point
        for n in range(sizes.repeats):
            empty = run_tool(url, policy, tmp / f"empty-{n}")
            long = run_tool(url, policy, long_dir)
            rounds.append((empty, long))
    if not json.loads((long_dir / "audit.jsonl.resume").read_text())["offset"]:
        raise BenchError("no resume point was recorded")
    cpu = Spread.of([long.cpu_s / empty.cpu_s for empty, long in rounds])
    wall = Spread.of([long.wall_s / empty.wall_s for empty, long in rounds])
    empty_cpu = Spread.of([empty.cpu_s for empty, _ in rounds]).median
    return Figure(
        number="8",
        title=f"start-up CPU, dry run, {lines:,}-line audit log / empty log",
        target="<= 1.2",
        met=at_most(cpu.median, 1.2),
        unit="x",
        detail=(
            f"process CPU {empty_cpu:.2f} s with an empty log; wall-time ratio "
            f"{wall.median:.3f} ({wall.low:.3f}-{wall.high:.3f}); the first run on that "
            f"log (no resume point yet: the full scan) took {first.cpu_s:.2f} s CPU, "
            f"{first.cpu_s / empty_cpu:.2f}x"
        ),
        value=cpu.median,
        low=cpu.low,
        high=cpu.high,
        runs=cpu.runs,
    )


def agent_sizes(calls: int) -> dict[str, int]:
    """Calls per agent of the sandbox's dataset (what a previous run would have listed)."""
    dataset = Dataset(DatasetSpec(seed=SEED, agents=SHARD_AGENTS, calls=calls, now=parse_now(NOW)))
    return {agent.id: dataset.call_count(agent.id) for agent in dataset.agents()}


def _heaviest(loads: Counter[int], count: int) -> float:
    """The heaviest shard's calls over an even split's."""
    total = sum(loads.values())
    return max(loads[i] for i in range(count)) / (total / count)


def shard_balance(sizes: Sizes, tmp: Path) -> Figure:
    del tmp
    calls = agent_sizes(max(sizes.shard_calls, 100_000))
    parts: list[str] = []
    balanced_at_4 = 0.0
    for count in (2, 4, 8):
        hashed: Counter[int] = Counter()
        even: Counter[int] = Counter()
        assigned = balanced_shards(calls, count)
        for agent, n in calls.items():
            hashed[shard_of(agent, count)] += n
            even[assigned[agent]] += n
        parts.append(
            f"N={count}: hash {_heaviest(hashed, count):.3f}, sizes {_heaviest(even, count):.3f}"
        )
        if count == 4:
            balanced_at_4 = _heaviest(even, count)
    return Figure(
        number="9",
        title=f"heaviest shard / even split, {SHARD_AGENTS} agents, --shard-sizes, N=4",
        value=balanced_at_4,
        unit="x",
        target="<= 1.05",
        met=at_most(balanced_at_4, 1.05),
        detail="; ".join(parts) + f" ({sum(calls.values()):,} calls)",
    )


def scale_out(sizes: Sizes, tmp: Path) -> Figure:
    policy = policies.write(tmp, "everything", policies.DELETE_EVERYTHING)
    rates: dict[int, Spread] = {}
    for count in (1, 2, 4):
        calls, _ = calls_for_due(sizes.shard_calls * count, seed=SEED, agents=SHARD_AGENTS, now=NOW)
        spec = SandboxSpec(seed=SEED, agents=SHARD_AGENTS, calls=calls, now=NOW, latency_ms=20)
        per_round: list[float] = []
        for n in range(sizes.repeats):
            with sandbox(spec) as url:
                with watch(url) as window:
                    _side_by_side(url, policy, tmp / f"scale-{count}-{n}", count)
                deleted = read_counts(url).deletions
            per_round.append(deleted / (window.seconds or 1.0))
        rates[count] = Spread.of(per_round)
    one = rates[1].median
    shown = ", ".join(
        f"{c} shard(s) {r.median:.0f}/s ({r.low:.0f}-{r.high:.0f}) = {r.median / one:.2f}x"
        for c, r in rates.items()
    )
    return Figure(
        number="10",
        title="scale-out: 4 shards / 1 shard, deletions/s, one sandbox",
        value=rates[4].median / one,
        unit="x",
        target="- (recorded: the README's scale-out advice)",
        met=None,
        detail=f"{shown}; each shard --concurrency 32 --rate 5000 (its share), 20 ms latency",
        low=rates[4].low / one,
        high=rates[4].high / one,
        runs=rates[4].runs,
    )


def _side_by_side(url: str, policy: Path, work: Path, count: int) -> None:
    errors: list[BaseException] = []

    def one(index: int) -> None:
        try:
            flags = ("--shard", f"{index}/{count}", "--concurrency", str(32 * count))
            run_tool(
                url,
                policy,
                work / f"shard-{index}",
                *flags,
                "--rate",
                str(5000 * count),
                execute=True,
            )
        except BaseException as err:  # reported below, after every shard ended
            errors.append(err)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise BenchError(f"a shard failed: {errors[0]}")
