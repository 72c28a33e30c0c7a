"""Adaptive concurrency: `retention run --execute` with no --concurrency or --rate
against a sandbox that allows K requests in flight (429 with Retry-After beyond) at
100 ms latency. Side by side in one invocation: the same run told the right answer
(`--concurrency K`), and runs whose ceilings (`--concurrency`, `--rate`) sit below
what the API allows, which must never be exceeded. The sandbox's in-flight count is
polled throughout, for the plot in docs/BENCHMARKS.md."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench import policies
from bench.cases import SEED, run_tool
from bench.dataset import calls_for_due
from bench.figures import Figure, Spread, at_least
from bench.plot import line_chart, write_chart
from bench.procs import SANDBOX_PIDS, SandboxSpec, process_cpu, sandbox
from bench.sizes import NOW, QUICK, Sizes
from bench.stats import read_counts

LATENCY_MS = 100
AGENTS = 10
DOCS = Path(__file__).resolve().parent.parent / "docs"


@dataclass
class Trace:
    """The sandbox's in-flight count and answered requests, polled every `interval`."""

    interval: float
    samples: list[tuple[float, int, int]] = field(default_factory=list)  # (t, in flight, total)

    def active(self) -> list[tuple[float, int, int]]:
        """From the first request to the last (interpreter start-up and exit left out);
        requests answered before the trace began (a warming dry run) are not counted."""
        if not self.samples:
            return []
        base = self.samples[0][2]
        moving = [i for i in range(1, len(self.samples)) if self.samples[i][2] > base]
        if not moving:
            return []
        first = moving[0] - 1
        last = max(i for i in range(len(self.samples)) if self.samples[i][2] < self.samples[-1][2])
        start = self.samples[first][0]
        return [(t - start, n, total) for t, n, total in self.samples[first : last + 2]]

    def peak_window_rate(self, seconds: float = 1.0) -> float:
        """The most requests answered in any `seconds`-long stretch, per second."""
        active = self.active()
        best, j = 0.0, 0
        for i, (t, _, total) in enumerate(active):
            while j < i and t - active[j][0] > seconds:
                j += 1
            span = t - active[j][0]
            if span >= seconds * 0.95:
                best = max(best, (total - active[j][2]) / span)
        return best


@contextmanager
def traced(url: str, interval: float = 0.05) -> Iterator[Trace]:
    import httpx

    trace = Trace(interval)
    stop = threading.Event()

    def poll() -> None:
        with httpx.Client(timeout=30) as http:
            while not stop.is_set():
                stats = http.get(f"{url}/_sandbox/stats").json()
                trace.samples.append(
                    (time.perf_counter(), int(stats["in_flight"]), int(stats["requests_total"]))
                )
                stop.wait(interval)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        yield trace
    finally:
        stop.set()
        poller.join()


@dataclass(frozen=True)
class Outcome:
    ok_per_s: float  # requests answered other than 429, per second of the active window
    share_429: float
    seconds: float
    requests: int
    peak_in_flight: int
    peak_rate: float
    deleted: int
    trace: Trace
    tool_wall: float  # the run's process, start to exit
    tool_cpu: float  # its own CPU seconds (wait4 on its pid)
    sandbox_cpu: float  # the sandbox's over the same time (/proc/PID/stat)

    def cpu_detail(self) -> str:
        """Who was busy while the run lived (1.0 core = a whole core all along)."""
        wall = max(self.tool_wall, 1e-9)
        return (
            f"tool {self.tool_cpu:.1f} s = {self.tool_cpu / wall:.2f} core, sandbox "
            f"{self.sandbox_cpu:.1f} s = {self.sandbox_cpu / wall:.2f} core over {wall:.1f} s"
        )


def one_run(spec: SandboxSpec, policy: Path, work: Path, *flags: str, warm: bool) -> Outcome:
    """`retention run --execute`, traced. `warm`: a dry run on the same audit log first,
    as a nightly run follows the night before (the agents' sizes are known); only the
    execute run is measured."""
    with sandbox(spec) as url:
        if warm:
            run_tool(url, policy, work)
        start = read_counts(url)
        with traced(url) as trace:
            before = process_cpu(SANDBOX_PIDS[url])
            tool = run_tool(url, policy, work, *flags, execute=True)
            sandbox_cpu = process_cpu(SANDBOX_PIDS[url]) - before
        counts = read_counts(url)
    active = trace.active()
    seconds = active[-1][0] if active else 0.0
    requests = counts.api_requests - start.api_requests
    throttled = counts.throttled - start.throttled
    return Outcome(
        ok_per_s=(requests - throttled) / seconds if seconds else 0.0,
        share_429=throttled / max(requests, 1),
        seconds=seconds,
        requests=requests,
        peak_in_flight=counts.peak_in_flight,
        peak_rate=trace.peak_window_rate(),
        deleted=counts.deletions - start.deletions,
        trace=trace,
        tool_wall=tool.wall_s,
        tool_cpu=tool.cpu_s,
        sandbox_cpu=sandbox_cpu,
    )


def adaptive_concurrency(sizes: Sizes, tmp: Path) -> list[Figure]:
    quick = sizes == QUICK
    policy = policies.write(tmp, "everything", policies.DELETE_EVERYTHING)
    figures: list[Figure] = []
    for k, due_target in ((8, 1500), (128, 20000)):
        due_target = 60 if quick else due_target
        calls, _ = calls_for_due(due_target, seed=SEED, agents=AGENTS, now=NOW)
        spec = SandboxSpec(
            seed=SEED,
            agents=AGENTS,
            calls=calls,
            now=NOW,
            max_in_flight=k,
            latency_ms=LATENCY_MS,
        )
        ideal = k / (LATENCY_MS / 1000)
        rounds = []
        for n in range(sizes.repeats):  # each round: the three runs back to back
            found = one_run(spec, policy, tmp / f"k{k}-adaptive-{n}", warm=True)
            told = one_run(spec, policy, tmp / f"k{k}-told-{n}", "--concurrency", str(k), warm=True)
            cold = one_run(spec, policy, tmp / f"k{k}-cold-{n}", warm=False)
            rounds.append((found, told, cold))
        figure = Spread.of([found.ok_per_s / ideal for found, _, _ in rounds])
        versus_told = Spread.of(
            [f.ok_per_s / t.ok_per_s if t.ok_per_s else 0.0 for f, t, _ in rounds]
        )
        first_run = Spread.of([cold.ok_per_s / ideal for _, _, cold in rounds])
        worst_429 = max(found.share_429 for found, _, _ in rounds)
        # The detail and the plot show the median round.
        found, told, cold = sorted(rounds, key=lambda r: r[0].ok_per_s)[len(rounds) // 2]
        if not quick:
            samples = [(t, float(n)) for t, n, _ in found.trace.active()]
            write_chart(
                DOCS / f"adaptive-k{k}.svg",
                line_chart(
                    samples,
                    title=f"requests in flight at the API (K = {k}, {LATENCY_MS} ms), "
                    "retention run with no --concurrency",
                    reference=k,
                    reference_label=f"K = {k}",
                    y_label="in flight",
                ),
            )
        figures.append(
            Figure(
                number="12",
                title=f"adaptive: K = {k} in flight at {LATENCY_MS} ms, no flags",
                value=figure.median,
                low=figure.low,
                high=figure.high,
                runs=figure.runs,
                unit="x",
                target=">= 0.9 of K/latency, 429s < 1%",
                met=at_least(figure.median, 0.9) and worst_429 < 0.01,
                detail=(
                    f"median round: {found.ok_per_s:.0f} answered/s of K/latency = "
                    f"{ideal:.0f}/s over {found.seconds:.1f} s ({found.deleted} deletions, a "
                    f"dry run before it on the same log); 429s {found.share_429:.2%} of "
                    f"{found.requests} (worst round {worst_429:.2%}); side by side with "
                    f"--concurrency {k} (told the answer): ratio {versus_told.median:.3f} "
                    f"({versus_told.low:.3f}-{versus_told.high:.3f}); a first run (no sizes "
                    f"known): {first_run.median:.3f} ({first_run.low:.3f}-{first_run.high:.3f}) "
                    f"of K/latency; CPU of the adaptive run: {found.cpu_detail()}"
                ),
            )
        )
    figures.append(ceilings(policy, tmp, quick))
    return figures


def ceilings(policy: Path, tmp: Path, quick: bool) -> Figure:
    """The API allows 64 in flight; --concurrency 12, then --rate 60, must hold."""
    calls, _ = calls_for_due(60 if quick else 600, seed=SEED, agents=AGENTS, now=NOW)
    spec = SandboxSpec(
        seed=SEED, agents=AGENTS, calls=calls, now=NOW, max_in_flight=64, latency_ms=LATENCY_MS
    )
    capped = one_run(spec, policy, tmp / "ceiling-concurrency", "--concurrency", "12", warm=False)
    paced = one_run(spec, policy, tmp / "ceiling-rate", "--rate", "60", warm=False)
    # --rate is a token bucket one deep: at most 60 x t + 1 requests start in any t
    # seconds, so 61 in a 1 s window. The rate is polled every 50 ms: allow one request
    # of stamping error on top.
    rate_ceiling = 60 + 1
    rate_ok = paced.peak_rate <= rate_ceiling + 1
    return Figure(
        number="12c",
        title="adaptive: ceilings given are never exceeded",
        value=max(capped.peak_in_flight / 12, paced.peak_rate / rate_ceiling),
        unit="x",
        target="<= 1 (peak / ceiling; --rate 60: 61 in 1 s)",
        met=capped.peak_in_flight <= 12 and rate_ok,
        detail=(
            f"API allows 64 in flight: --concurrency 12 peaked at {capped.peak_in_flight} in "
            f"flight ({capped.ok_per_s:.0f}/s); --rate 60 peaked at {paced.peak_rate:.1f} "
            f"requests in a 1 s window ({paced.ok_per_s:.1f}/s on average)"
        ),
    )
