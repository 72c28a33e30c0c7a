"""The benchmarks that drive the tool as a user does: `retention run` in its own
process against `retention sandbox` in another, over loopback."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench import policies
from bench.dataset import calls_for_due
from bench.figures import Figure, Spread, at_least, at_most
from bench.procs import (
    API_KEY,
    PYTHON,
    Measured,
    SandboxSpec,
    measure,
    retention_argv,
    run_args,
    sandbox,
)
from bench.sizes import NOW, Sizes
from bench.stats import SandboxCounts, read_counts

HERE = Path(__file__).resolve().parent
ENV = {"CARTESIA_API_KEY": API_KEY}
SEED = 7


class BenchError(RuntimeError):
    """A benchmark could not produce its figure (the tool or a baseline failed)."""


def run_tool(url: str, policy: Path, work: Path, *flags: str, execute: bool = False) -> Measured:
    """`retention run` as a user types it; its own audit log and report in `work`."""
    work.mkdir(parents=True, exist_ok=True)
    argv = retention_argv(
        "run",
        *run_args(url, policy, work, NOW),
        "--report",
        str(work / "report.json"),
        *flags,
    )
    if execute:
        argv += ["--execute", "--max-deletes", "100000000"]  # the first-run safety belt
    measured = measure(argv, env=ENV, workdir=work)
    _check(measured, "retention run")
    return measured


def _check(measured: Measured, what: str) -> None:
    if measured.exit_code != 0:
        tail = measured.stderr.strip().splitlines()[-3:]
        raise BenchError(f"{what} exited {measured.exit_code}: {' | '.join(tail)}")


def _script(name: str, url: str, work: Path, *flags: str) -> Measured:
    work.mkdir(parents=True, exist_ok=True)
    measured = measure([PYTHON, str(HERE / name), "--base-url", url, *flags], env=ENV, workdir=work)
    _check(measured, name)
    return measured


@dataclass
class Window:
    """When the sandbox saw the first and the last API request (polled)."""

    first: float | None = None
    last: float | None = None

    @property
    def seconds(self) -> float | None:
        if self.first is None or self.last is None:
            return None
        return self.last - self.first


@contextmanager
def watch(url: str, interval: float = 0.05) -> Iterator[Window]:
    """Poll the sandbox's counters to time the run as the server sees it,
    excluding the interpreter's start-up."""
    window = Window()
    stop = threading.Event()

    def poll() -> None:
        seen = read_counts(url).api_requests
        while not stop.is_set():
            now = time.perf_counter()
            count = read_counts(url).api_requests
            if count != seen:
                if window.first is None:
                    window.first = now - interval / 2  # the first request fell in this interval
                window.last = now - interval / 2
                seen = count
            stop.wait(interval)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        yield window
    finally:
        stop.set()
        poller.join()


def rate_efficiency(sizes: Sizes, tmp: Path) -> Figure:
    """Requests per second as the sandbox saw them ÷ the rate asked for, a fresh sandbox
    per round; the median of the rounds, the worst round's share of 429s."""
    calls, due = calls_for_due(sizes.rate_due, seed=SEED, agents=sizes.agents, now=NOW)
    spec = SandboxSpec(
        seed=SEED,
        agents=sizes.agents,
        calls=calls,
        now=NOW,
        rate=100,
        max_in_flight=16,
        latency_ms=20,
    )
    policy = policies.write(tmp, "everything", policies.DELETE_EVERYTHING)
    rounds: list[tuple[float, Measured, SandboxCounts]] = []  # served seconds, run, counts
    for n in range(sizes.repeats):
        with sandbox(spec) as url:
            with watch(url) as window:
                run = run_tool(url, policy, tmp / f"rate-{n}", "--rate", "100", execute=True)
            counts = read_counts(url)
        rounds.append((window.seconds or run.wall_s, run, counts))
    ratio = Spread.of([c.api_requests / s / 100 for s, _, c in rounds])
    end_to_end = Spread.of([c.api_requests / r.wall_s / 100 for _, r, c in rounds])
    share_429 = max(c.throttled / max(c.api_requests, 1) for _, _, c in rounds)
    deleted = sorted({c.deletions for _, _, c in rounds})
    return Figure(
        number="1",
        title="rate efficiency at --rate 100",
        value=ratio.median,
        unit="x",
        target=">= 0.95, 429s < 1%",
        met=at_least(ratio.median, 0.95) and share_429 < 0.01 and deleted == [due],
        detail=(
            f"requests ÷ the seconds between the sandbox's first and last one ÷ 100, per "
            f"round: {_rounds(c.api_requests / s / 100 for s, _, c in rounds)}; "
            f"{Spread.of([s for s, _, _ in rounds]).median:.1f} s served (median); "
            f"429s at most {share_429:.2%} of a round's requests; deletions "
            f"{'/'.join(map(str, deleted))} of {due} due; over the process's whole wall "
            f"time {end_to_end.median:.3f} ({end_to_end.low:.3f}-{end_to_end.high:.3f})"
        ),
        low=ratio.low,
        high=ratio.high,
        runs=ratio.runs,
    )


def _rounds(values: Iterable[float]) -> str:
    """Each round's figure, in the order measured."""
    return ", ".join(f"{v:.3f}" for v in values)


def speed_vs_naive(sizes: Sizes, tmp: Path) -> list[Figure]:
    """The tool against the competent asyncio script (the main baseline, each round side
    by side, median of `repeats`) and against the naive one (once: it is slow)."""
    calls, due = calls_for_due(sizes.speed_due, seed=SEED, agents=sizes.agents, now=NOW)
    spec = SandboxSpec(seed=SEED, agents=sizes.agents, calls=calls, now=NOW, latency_ms=50)
    policy = policies.write(tmp, "everything", policies.DELETE_EVERYTHING)
    with sandbox(spec) as url:
        naive = _script("naive.py", url, tmp / "naive", "--now", NOW)
        naive_counts = read_counts(url)
    rounds: list[tuple[Measured, Measured]] = []
    served: list[tuple[float, float]] = []  # seconds the sandbox saw requests: script, tool
    deletions: set[int] = set()
    for n in range(sizes.repeats):
        with sandbox(spec) as url:
            with watch(url) as script_window:
                competent = _script("competent.py", url, tmp / f"competent-{n}", "--now", NOW)
            deletions.add(read_counts(url).deletions)
        with sandbox(spec) as url:
            with watch(url) as tool_window:
                tool = run_tool(url, policy, tmp / f"speed-{n}", execute=True)
            deletions.add(read_counts(url).deletions)
        rounds.append((competent, tool))
        served.append(
            (script_window.seconds or competent.wall_s, tool_window.seconds or tool.wall_s)
        )
    same = deletions == {due} and naive_counts.deletions == due
    # As the sandbox saw them: interpreter start-up (the tool imports more) is left out.
    versus = Spread.of([script / tool for script, tool in served])
    tool_wall = Spread.of([t.wall_s for _, t in rounds]).median
    cpu = Spread.of([c.cpu_s / t.cpu_s for c, t in rounds])
    speedup = naive.wall_s / tool_wall
    differ = "" if same else " - DUE SETS DIFFER"
    return [
        Figure(
            number="2",
            title="speed vs competent asyncio script (Semaphore(32)), 50 ms latency",
            value=versus.median,
            unit="x",
            target="> 1 (main baseline)",
            met=versus.median > 1 and same,
            detail=(
                f"competent {Spread.of([s for s, _ in served]).median:.2f} s, tool "
                f"{Spread.of([t for _, t in served]).median:.2f} s from first to last request "
                f"as the sandbox saw them (process wall: tool {tool_wall:.1f} s; medians, "
                f"defaults); the script uses {cpu.median:.2f}x the tool's CPU; {due} due{differ}"
            ),
            low=versus.low,
            high=versus.high,
            runs=versus.runs,
        ),
        Figure(
            number="2n",
            title="speed vs naive httpx script (one request at a time), 50 ms latency",
            value=speedup,
            unit="x",
            target=">= 15x",
            met=at_least(speedup, 15) and same,
            detail=(
                f"naive {naive.wall_s:.1f} s once, tool {tool_wall:.1f} s (median); deletions "
                f"{naive_counts.deletions} of {due} due{differ}"
            ),
        ),
    ]


def cpu_per_call(sizes: Sizes, tmp: Path) -> list[Figure]:
    """3a: the tool's dry run and the SDK's paginator over one sandbox, back to back each
    round; 3b: the tool's --execute and the SDK's one-at-a-time DELETEs, each on a fresh
    sandbox, back to back each round. CPU is each process's own (wait4)."""
    return [_cpu_listing(sizes, tmp), _cpu_deleting(sizes, tmp)]


def _cpu_listing(sizes: Sizes, tmp: Path) -> Figure:
    listed_spec = SandboxSpec(seed=SEED, agents=sizes.agents, calls=sizes.cpu_listed, now=NOW)
    twenty = policies.write(tmp, "twenty", policies.TWENTY)
    n = sizes.cpu_listed
    per_k: list[tuple[float, float]] = []  # CPU ms per 1000 listed calls: tool, SDK
    with sandbox(listed_spec) as url:
        for r in range(sizes.repeats):
            tool = run_tool(url, twenty, tmp / f"cpu-list-{r}")
            sdk = _script("sdk_list.py", url, tmp / f"sdk-list-{r}")
            per_k.append((tool.cpu_s / n * 1e6, sdk.cpu_s / n * 1e6))
        if read_counts(url).deletions:
            raise BenchError("a dry run deleted calls")
    ratio = Spread.of([tool / sdk for tool, sdk in per_k])
    return Figure(
        number="3a",
        title="CPU per 1000 listed calls, tool / SDK",
        value=ratio.median,
        unit="x",
        target="<= 0.5",
        met=at_most(ratio.median, 0.5),
        detail=(
            f"tool dry run (20 policies) {Spread.of([t for t, _ in per_k]).median:.1f} ms vs "
            f"SDK paginator {Spread.of([s for _, s in per_k]).median:.1f} ms per 1000 of {n} "
            f"calls (medians; process CPU, start-up included); per round {_rounds(_ratios(per_k))}"
        ),
        low=ratio.low,
        high=ratio.high,
        runs=ratio.runs,
    )


def _ratios(pairs: Iterable[tuple[float, float]]) -> list[float]:
    """Each round's first side ÷ its second."""
    return [a / b for a, b in pairs]


def _cpu_deleting(sizes: Sizes, tmp: Path) -> Figure:
    calls, due = calls_for_due(sizes.cpu_deleted, seed=SEED, agents=sizes.agents, now=NOW)
    spec = SandboxSpec(seed=SEED, agents=sizes.agents, calls=calls, now=NOW)
    everything = policies.write(tmp, "everything", policies.DELETE_EVERYTHING)
    per_k: list[tuple[float, float]] = []  # CPU s per 1000 deletions: tool, SDK
    deleted: set[int] = set()
    for r in range(sizes.repeats):
        with sandbox(spec) as url:
            tool = run_tool(url, everything, tmp / f"cpu-delete-{r}", execute=True)
            tool_deleted = read_counts(url).deletions
        with sandbox(spec) as url:
            sdk = _script("sdk_list.py", url, tmp / f"sdk-delete-{r}", "--delete", "--now", NOW)
            sdk_deleted = read_counts(url).deletions
        if not tool_deleted or not sdk_deleted:
            raise BenchError("nothing was deleted")
        deleted |= {tool_deleted, sdk_deleted}
        per_k.append((tool.cpu_s / tool_deleted * 1000, sdk.cpu_s / sdk_deleted * 1000))
    tool_k = Spread.of([t for t, _ in per_k])
    versus = Spread.of(_ratios(per_k))
    return Figure(
        number="3b",
        title="CPU per 1000 deletions (tool; SDK for scale)",
        value=tool_k.median,
        unit="s",
        target="- (ratio target is for listing)",
        met=None,
        detail=(
            f"tool --execute {tool_k.median * 1000:.0f} ms per 1000 deletions, listing and "
            f"audit log included; the SDK listing and sending bare DELETEs one at a time (no "
            f"audit, no decisions) {Spread.of([s for _, s in per_k]).median * 1000:.0f} ms "
            f"(medians): tool / SDK {versus.median:.2f} ({versus.low:.2f}-{versus.high:.2f}); "
            f"{'/'.join(map(str, sorted(deleted)))} deleted of {due} due"
        ),
        low=tool_k.low,
        high=tool_k.high,
        runs=tool_k.runs,
    )


def memory_flat(sizes: Sizes, tmp: Path) -> Figure:
    """Peak RSS of a large dry run ÷ a small one, back to back each round, each on a fresh
    sandbox and a fresh audit log (every round starts cold)."""
    twenty = policies.write(tmp, "twenty", policies.TWENTY)
    flags = ("--rate", "5000", "--concurrency", "64")
    rounds: list[tuple[Measured, Measured, SandboxCounts]] = []  # small, large, its counts
    for r in range(sizes.repeats):
        runs: list[tuple[Measured, SandboxCounts]] = []
        for n in (sizes.memory_small, sizes.memory_large):
            spec = SandboxSpec(seed=SEED, agents=sizes.agents, calls=n, now=NOW)
            with sandbox(spec) as url:
                run = run_tool(url, twenty, tmp / f"memory-{n}-{r}", *flags)
                runs.append((run, read_counts(url)))
        (small, _), (large, large_counts) = runs
        rounds.append((small, large, large_counts))
    ratio = Spread.of([large.max_rss_mb / small.max_rss_mb for small, large, _ in rounds])

    def median(of: Callable[[tuple[Measured, Measured, SandboxCounts]], float]) -> float:
        return Spread.of([of(r) for r in rounds]).median

    return Figure(
        number="4",
        title="peak RSS of dry runs, 1M / 20k calls"
        if sizes.memory_large >= 10**6
        else f"peak RSS of dry runs, {sizes.memory_large} / {sizes.memory_small} calls",
        value=ratio.median,
        unit="x",
        target="<= 1.2",
        met=at_most(ratio.median, 1.2),
        detail=(
            f"{median(lambda r: r[0].max_rss_mb):.1f} MB over {sizes.memory_small} calls "
            f"({median(lambda r: r[0].wall_s):.1f} s), "
            f"{median(lambda r: r[1].max_rss_mb):.1f} MB over {sizes.memory_large} calls "
            f"({median(lambda r: r[1].wall_s):.1f} s, "
            f"{median(lambda r: r[1].cpu_s):.1f} s CPU, "
            f"{median(lambda r: r[2].api_requests / r[1].cpu_s):.0f} requests per CPU second) "
            f"(medians); per round {_rounds(r[1].max_rss_mb / r[0].max_rss_mb for r in rounds)}; "
            f"flags {' '.join(flags)}"
        ),
        low=ratio.low,
        high=ratio.high,
        runs=ratio.runs,
    )
