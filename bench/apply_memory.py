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
from pathlib import Path

from bench import policies
from bench.cases import ENV, SEED, BenchError, run_tool
from bench.figures import Figure, at_most
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


def _figure(
    number: str, calls: int, dry: Measured, planned: Measured, applied: Measured, mode: str
) -> Figure:
    ratio = max(planned.max_rss_mb, applied.max_rss_mb) / dry.max_rss_mb
    return Figure(
        number=number,
        title=f"peak RSS of plan + apply{mode} / dry run, {calls:,} calls",
        value=ratio,
        unit="x",
        target=f"<= {LIMIT}",
        met=at_most(ratio, LIMIT),
        detail=(
            f"dry run {dry.max_rss_mb:.1f} MB ({dry.wall_s:.1f} s), plan "
            f"{planned.max_rss_mb:.1f} MB ({planned.wall_s:.1f} s), apply{mode} "
            f"{applied.max_rss_mb:.1f} MB ({applied.wall_s:.1f} s); every call due; "
            f"flags {' '.join(FLAGS)}"
        ),
    )


def apply_memory(sizes: Sizes, tmp: Path) -> list[Figure]:
    policy = policies.write(tmp, "everything", policies.DELETE_EVERYTHING)
    figures = []
    for number, calls, execute in (
        ("11a", sizes.apply_execute, True),
        ("11b", sizes.apply_large, False),
    ):
        spec = SandboxSpec(seed=SEED, agents=sizes.agents, calls=calls, now=NOW)
        with sandbox(spec) as url:
            dry = run_tool(url, policy, tmp / f"dry-{calls}", *FLAGS)
        planned, applied = _plan_then_apply(spec, policy, tmp / f"plan-{calls}", execute=execute)
        mode = " --execute" if execute else " (dry)"
        figures.append(_figure(number, calls, dry, planned, applied, mode))
    return figures
