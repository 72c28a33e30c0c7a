"""Benchmarks of pure parts: the policy engine (in this process, one core) and
`retention audit verify` (its own process, for its peak RSS)."""

from __future__ import annotations

import gzip
import shutil
import time
from collections.abc import Iterable
from pathlib import Path

from bench import policies
from bench.dataset import parse_now
from bench.figures import Figure, Spread, at_most
from bench.procs import Measured, measure, retention_argv
from bench.sizes import NOW, Sizes
from retention.audit.synth import synthesize
from retention.policy.engine import decide
from retention.policy.load import load_policies
from retention.sandbox.data import Dataset, DatasetSpec


def policy_engine(sizes: Sizes, tmp: Path) -> Figure:
    """Process time of `decide` over the same decisions, once per round; the median."""
    policy_set = load_policies([policies.write(tmp, "twenty", policies.TWENTY)])
    now = parse_now(NOW)
    dataset = Dataset(DatasetSpec(seed=7, agents=20, calls=sizes.engine_pool, now=now))
    names = {agent.id: agent.name for agent in dataset.agents()}
    # A pool cycled through, so only deciding is timed, not generating calls.
    pool = [(call, names.get(call.agent_id)) for call in dataset.iter_all_calls(transcripts=False)]
    rounds, rest = divmod(sizes.engine_decisions, len(pool))
    per_round: list[float] = []
    for _ in range(sizes.repeats):
        started = time.process_time()
        for _ in range(rounds):
            for call, name in pool:
                decide(policy_set, call, now, call.agent_id, name)
        for call, name in pool[:rest]:
            decide(policy_set, call, now, call.agent_id, name)
        per_round.append(time.process_time() - started)
    actions: dict[str, int] = {}
    for call, name in pool:
        action = str(decide(policy_set, call, now, call.agent_id, name).action)
        actions[action] = actions.get(action, 0) + 1
    seconds = Spread.of(per_round)
    scaled = seconds.median * 1_000_000 / sizes.engine_decisions
    mix = ", ".join(f"{k} {v / len(pool):.0%}" for k, v in sorted(actions.items()))
    return Figure(
        number="5",
        title=f"policy engine, {sizes.engine_decisions:,} decisions x 20 policies",
        value=seconds.median,
        unit="s",
        target="< 5 s per 1M",
        met=scaled < 5,
        detail=(
            f"{seconds.median / sizes.engine_decisions * 1e6:.2f} us per decision on one core "
            f"(process time, median); {scaled:.2f} s per 1M; decision mix {mix}"
        ),
        low=seconds.low,
        high=seconds.high,
        runs=seconds.runs,
    )


def _verify(log: Path, work: Path) -> Measured:
    """`retention audit verify LOG` in a child process."""
    run = measure(retention_argv("audit", "verify", str(log)), workdir=work)
    if run.exit_code != 0:
        raise RuntimeError(f"audit verify exited {run.exit_code}: {run.stderr.strip()[-300:]}")
    return run


def _verify_rounds(
    small: Path, large: Path, sizes: Sizes
) -> tuple[Spread, list[tuple[Measured, Measured]]]:
    """Verify the small log, then the large one, back to back each round: the large peak
    RSS ÷ the small one, median of rounds."""
    rounds = [
        (_verify(small, small.parent), _verify(large, large.parent)) for _ in range(sizes.repeats)
    ]
    return Spread.of([b.max_rss_mb / a.max_rss_mb for a, b in rounds]), rounds


def _verify_detail(lines: int, rounds: list[tuple[Measured, Measured]]) -> str:
    def median(values: Iterable[float]) -> float:
        return Spread.of(list(values)).median

    large_cpu = median(b.cpu_s for _, b in rounds)
    small_mb, large_mb = (median(r[i].max_rss_mb for r in rounds) for i in (0, 1))
    return (
        f"{small_mb:.1f} MB vs {large_mb:.1f} MB (medians); per round "
        + ", ".join(f"{b.max_rss_mb / a.max_rss_mb:.3f}" for a, b in rounds)
        + f"; {lines:,} lines verified in {median(b.wall_s for _, b in rounds):.1f} s wall, "
        f"{large_cpu:.1f} s CPU ({lines / large_cpu:,.0f} lines per CPU second)"
    )


def audit_verify(sizes: Sizes, tmp: Path) -> Figure:
    logs: list[tuple[int, Path]] = []
    for n in (sizes.audit_small, sizes.audit_large):
        work = tmp / f"verify-{n}"
        work.mkdir(parents=True, exist_ok=True)
        path = work / "audit.jsonl"
        logs.append((synthesize(path, n), path))
    (small, small_log), (large, large_log) = logs
    ratio, rounds = _verify_rounds(small_log, large_log, sizes)
    return Figure(
        number="6",
        title=f"audit verify peak RSS, {large:,} / {small:,} lines",
        value=ratio.median,
        unit="x",
        target="<= 1.2 (flat)",
        met=at_most(ratio.median, 1.2),
        detail=_verify_detail(large, rounds),
        low=ratio.low,
        high=ratio.high,
        runs=ratio.runs,
    )


def _split_into_segments(whole: Path, live: Path, segments: int) -> int:
    """Cut a log into `segments` numbered gzip segments beside `live` (streamed); the
    live file keeps the remainder. Returns the lines per segment."""
    total = sum(1 for _ in whole.open("rb"))
    per = total // segments
    with whole.open("rb") as source:
        for number in range(1, segments + 1):
            name = live.with_name(f"{live.name}.{number:06d}.gz")
            with gzip.open(name, "wb", compresslevel=6) as out:
                for _ in range(per):
                    out.write(source.readline())
        with live.open("wb") as rest:
            shutil.copyfileobj(source, rest)
    whole.unlink()
    return per


def audit_verify_segments(sizes: Sizes, tmp: Path) -> Figure:
    """The same flat-memory figure over a rotated log: ten gzip segments and the live file."""
    logs: list[tuple[int, Path, int]] = []
    for n in (sizes.audit_small, sizes.audit_large):
        work = tmp / f"segments-{n}"
        work.mkdir(parents=True, exist_ok=True)
        whole, live = work / "whole.jsonl", work / "audit.jsonl"
        written = synthesize(whole, n)
        raw = whole.stat().st_size
        _split_into_segments(whole, live, 10)
        stored = sum(p.stat().st_size for p in work.iterdir())
        logs.append((written, live, raw // max(stored, 1)))
    (small, small_log, _), (large, large_log, ratio_gz) = logs
    ratio, rounds = _verify_rounds(small_log, large_log, sizes)
    return Figure(
        number="7",
        title=f"audit verify peak RSS over 10 gzip segments, {large:,} / {small:,} lines",
        value=ratio.median,
        unit="x",
        target="<= 1.2 (flat)",
        met=at_most(ratio.median, 1.2),
        detail=f"{_verify_detail(large, rounds)}; gzip keeps 1/{ratio_gz} of the bytes",
        low=ratio.low,
        high=ratio.high,
        runs=ratio.runs,
    )
