"""Peak RSS of `plan` + `apply` against a dry run over the same calls (issue 11: applying
a plan peaks at no more than 1.3x a dry run).

Each command runs in its own subprocess against a sandbox process, as a user runs it;
its peak RSS is its own VmHWM (bench.procs.measure). The plan's lookups go through its
SQLite index (one probe per listed call) and the calls seen are a bitmap of n bits, so
nothing of the plan grows in memory with it.

- `apply-memory` (11a): over `apply_execute` calls, every one due: a dry run, then `plan`,
  then `apply --execute` pinned by the plan's digest, each against a fresh sandbox.
- 11b: over `apply_large` calls: a dry run, then `plan`, then `apply` without --execute
  (the plan's lookups for every listed call, without deleting a million calls at the
  sandbox's pace on a shared machine).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from bench import policies
from bench.cases import ENV, SEED, BenchError, run_tool
from bench.figures import Figure, Spread, at_most
from bench.procs import Measured, SandboxSpec, measure, retention_argv, run_args, sandbox
from bench.sizes import NOW, Sizes

LIMIT = 1.3
FLAGS = ("--rate", "5000", "--concurrency", "64")


def _retention(url: str, policy: Path, work: Path, command: str, *args: str) -> Measured:
    work.mkdir(parents=True, exist_ok=True)
    argv = retention_argv(
        command,
        *args,
        *run_args(url, policy, work, NOW),
        *FLAGS,
    )
    measured = measure(argv, env=ENV, workdir=work)
    if measured.exit_code != 0:
        tail = " | ".join(measured.stderr.strip().splitlines()[-3:])
        raise BenchError(f"retention {command} exited {measured.exit_code}: {tail}")
    return measured


def _plan_then_apply(
    spec: SandboxSpec, policy: Path, work: Path, *, execute: bool
) -> tuple[Measured, Measured]:
    """`plan --out`, then `apply` of it (pinned by its digest), on one sandbox."""
    plan = work / "tonight.plan"
    with sandbox(spec) as url:
        planned = _retention(url, policy, work, "plan", "--out", str(plan))
        found = re.search(r"sha256 ([0-9a-f]{64})", planned.stdout)
        if found is None:
            raise BenchError("plan printed no digest")
        pin = ("--expect-sha256", found.group(1))
        extra = ("--execute", *pin) if execute else pin
        applied = _retention(url, policy, work, "apply", str(plan), *extra)
    return planned, applied


Round = tuple[Measured, Measured, Measured]  # dry run, plan, apply


def _ratio(round_: Round) -> float:
    dry, planned, applied = round_
    return max(planned.max_rss_mb, applied.max_rss_mb) / dry.max_rss_mb


def _figure(number: str, calls: int, rounds: list[Round], mode: str) -> Figure:
    ratio = Spread.of([_ratio(r) for r in rounds])

    def median(side: int, of: Callable[[Measured], float]) -> float:
        return Spread.of([of(r[side]) for r in rounds]).median

    sides = ", ".join(
        f"{name} {median(i, lambda m: m.max_rss_mb):.1f} MB ({median(i, lambda m: m.wall_s):.1f} s)"
        for i, name in enumerate(("dry run", "plan", f"apply{mode}"))
    )
    return Figure(
        number=number,
        title=f"peak RSS of plan + apply{mode} / dry run, {calls:,} calls",
        value=ratio.median,
        unit="x",
        target=f"<= {LIMIT}",
        met=at_most(ratio.median, LIMIT),
        detail=(
            f"{sides} (medians); per round "
            + ", ".join(f"{_ratio(r):.3f}" for r in rounds)
            + f"; every call due; flags {' '.join(FLAGS)}"
        ),
        low=ratio.low,
        high=ratio.high,
        runs=ratio.runs,
    )


def apply_memory(sizes: Sizes, tmp: Path) -> list[Figure]:
    """Each round: the dry run, then plan and apply, back to back; the figure is the median
    of the rounds' ratios."""
    policy = policies.write(tmp, "everything", policies.DELETE_EVERYTHING)
    figures = []
    for number, calls, execute in (
        ("11a", sizes.apply_execute, True),
        ("11b", sizes.apply_large, False),
    ):
        spec = SandboxSpec(seed=SEED, agents=sizes.agents, calls=calls, now=NOW)
        rounds: list[Round] = []
        for r in range(sizes.repeats):
            with sandbox(spec) as url:
                dry = run_tool(url, policy, tmp / f"dry-{calls}-{r}", *FLAGS)
            work = tmp / f"plan-{calls}-{r}"
            planned, applied = _plan_then_apply(spec, policy, work, execute=execute)
            rounds.append((dry, planned, applied))
        mode = " --execute" if execute else " (dry)"
        figures.append(_figure(number, calls, rounds, mode))
    return figures
