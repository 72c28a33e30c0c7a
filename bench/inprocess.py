"""Benchmarks of pure parts: the policy engine (in this process, one core) and
`retention audit verify` (its own process, for its peak RSS)."""

from __future__ import annotations

import gzip
import shutil
import time
from pathlib import Path

from bench import policies
from bench.dataset import parse_now
from bench.figures import Figure, at_most
from bench.procs import measure, retention_argv
from bench.sizes import NOW, Sizes
from retention.audit.synth import synthesize
from retention.policy.engine import decide
from retention.policy.load import load_policies
from retention.sandbox.data import Dataset, DatasetSpec


def policy_engine(sizes: Sizes, tmp: Path) -> Figure:
    policy_set = load_policies([policies.write(tmp, "twenty", policies.TWENTY)])
    now = parse_now(NOW)
    dataset = Dataset(DatasetSpec(seed=7, agents=20, calls=sizes.engine_pool, now=now))
    names = {agent.id: agent.name for agent in dataset.agents()}
    # A pool cycled through, so only deciding is timed, not generating calls.
    pool = [(call, names.get(call.agent_id)) for call in dataset.iter_all_calls(transcripts=False)]
    rounds, rest = divmod(sizes.engine_decisions, len(pool))
    actions: dict[str, int] = {}
    started = time.process_time()
    for _ in range(rounds):
        for call, name in pool:
            decide(policy_set, call, now, call.agent_id, name)
    for call, name in pool[:rest]:
        decide(policy_set, call, now, call.agent_id, name)
    seconds = time.process_time() - started
    for call, name in pool:
        action = str(decide(policy_set, call, now, call.agent_id, name).action)
        actions[action] = actions.get(action, 0) + 1
    scaled = seconds * 1_000_000 / sizes.engine_decisions
    mix = ", ".join(f"{k} {v / len(pool):.0%}" for k, v in sorted(actions.items()))
    return Figure(
        number="5",
        title=f"policy engine, {sizes.engine_decisions:,} decisions x 20 policies",
        value=seconds,
        unit="s",
        target="< 5 s per 1M",
        met=scaled < 5,
        detail=(
            f"{seconds / sizes.engine_decisions * 1e6:.2f} us per decision on one core "
            f"(process time); {scaled:.2f} s per 1M; decision mix {mix}"
        ),
    )


def audit_verify(sizes: Sizes, tmp: Path) -> Figure:
    peaks: list[tuple[int, float, float]] = []
    for n in (sizes.audit_small, sizes.audit_large):
        path = tmp / f"audit-{n}.jsonl"
        written = synthesize(path, n)
        work = tmp / f"verify-{n}"
        work.mkdir(parents=True, exist_ok=True)
        rss_mb, wall_s = _verify(path, work)
        peaks.append((written, rss_mb, wall_s))
        path.unlink()
    (small, small_mb, _), (large, large_mb, large_s) = peaks
    ratio = large_mb / small_mb
    return Figure(
        number="6",
        title=f"audit verify peak RSS, {large:,} / {small:,} lines",
        value=ratio,
        unit="x",
        target="<= 1.2 (flat)",
        met=at_most(ratio, 1.2),
        detail=(
            f"{small_mb:.1f} MB vs {large_mb:.1f} MB; {large:,} lines verified in "
            f"{large_s:.1f} s ({large / large_s:,.0f} lines/s)"
        ),
    )


def _verify(log: Path, work: Path) -> tuple[float, float]:
    """`retention audit verify LOG` in a child process: its peak RSS (MB) and wall time."""
    run = measure(retention_argv("audit", "verify", str(log)), workdir=work)
    if run.exit_code != 0:
        raise RuntimeError(f"audit verify exited {run.exit_code}: {run.stderr.strip()[-300:]}")
    return run.max_rss_mb, run.wall_s


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
    peaks: list[tuple[int, float, float, int]] = []
    for n in (sizes.audit_small, sizes.audit_large):
        work = tmp / f"segments-{n}"
        work.mkdir(parents=True, exist_ok=True)
        whole, live = work / "whole.jsonl", work / "audit.jsonl"
        written = synthesize(whole, n)
        raw = whole.stat().st_size
        _split_into_segments(whole, live, 10)
        stored = sum(p.stat().st_size for p in work.iterdir())
        rss_mb, wall_s = _verify(live, work)
        peaks.append((written, rss_mb, wall_s, raw // max(stored, 1)))
        shutil.rmtree(work)
    (small, small_mb, _, _), (large, large_mb, large_s, ratio_gz) = peaks
    ratio = large_mb / small_mb
    return Figure(
        number="7",
        title=f"audit verify peak RSS over 10 gzip segments, {large:,} / {small:,} lines",
        value=ratio,
        unit="x",
        target="<= 1.2 (flat)",
        met=at_most(ratio, 1.2),
        detail=(
            f"{small_mb:.1f} MB vs {large_mb:.1f} MB; {large:,} lines verified in "
            f"{large_s:.1f} s ({large / large_s:,.0f} lines/s); gzip keeps 1/{ratio_gz} "
            "of the bytes"
        ),
    )
