"""Listing at the serial-cursor bound: dry runs at 50 ms latency over three shapes
(200 agents, 10 agents, one agent), each against the time the pages alone must take.

An agent's pages come one after another (each cursor is the page before's last id),
so a listing takes at least `latency x (1 + max(P_max, P_total / L))`: one GET /agents,
then the largest agent's P_max pages in a row, or all P_total pages shared by the L
listers the tool runs (`listers_for`), whichever is longer. P for an agent of n calls
is max(1, ceil(n / 100)); P_total is checked against the listing requests the sandbox
counted. Each shape runs twice on one audit log: cold (no sizes known: the API's
order) and warm (the largest agents first, from the cold run's `run_finished`).

Pages do not come at exactly the latency: the sandbox builds each one, and on a busy
machine every process waits for a core. So the same invocation also times a bare
chain (`bare_chain`: the largest agent's pages fetched one after another by a minimal
httpx loop that reads only the cursor), and a second figure per shape (13x/bare) is
the ratio to the same bound built from that measured time per page: the tool's own
overhead, the machine's left out."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import msgspec

from bench import policies
from bench.cases import SEED, BenchError, run_tool, watch
from bench.figures import Figure, Spread, at_most
from bench.procs import API_KEY, SandboxSpec, sandbox
from bench.sizes import NOW, QUICK, Sizes
from retention.api.client import MAX_PAGE_SIZE
from retention.api.models import API_VERSION
from retention.run.command import MAX_CONCURRENCY
from retention.run.pipeline import listers_for
from retention.sandbox.data import Dataset, DatasetSpec

LATENCY_MS = 50


@dataclass(frozen=True)
class Shape:
    number: str
    agents: int
    calls: int
    target: float


def shapes(sizes: Sizes) -> list[Shape]:
    if sizes == QUICK:
        return [Shape("13a", 20, 2000, 1.3), Shape("13b", 4, 2000, 1.2), Shape("13c", 1, 1000, 1.1)]
    return [
        Shape("13a", 200, 200_000, 1.3),
        Shape("13b", 10, 200_000, 1.2),
        Shape("13c", 1, 100_000, 1.1),
    ]


def pages(calls: int) -> int:
    return max(1, math.ceil(calls / MAX_PAGE_SIZE))


def bound_seconds(shape: Shape) -> tuple[float, int, int, int, str]:
    """The bound, and what it rests on: P_max, P_total, L (from the dataset itself),
    and the largest agent's id."""
    dataset = Dataset(DatasetSpec(seed=SEED, agents=shape.agents, calls=shape.calls))
    counts = {agent.id: 0 for agent in dataset.agents()}
    for call in dataset.iter_all_calls(transcripts=False):
        counts[call.agent_id] += 1
    per_agent = [pages(n) for n in counts.values()]
    listers = listers_for(len(per_agent), MAX_CONCURRENCY, execute=False)
    longest, total = max(per_agent), sum(per_agent)
    seconds = LATENCY_MS / 1000 * (1 + max(longest, total / listers))
    largest = max(counts, key=lambda agent: counts[agent])
    return seconds, longest, total, listers, largest


class _Entry(msgspec.Struct):
    id: str


class _Page(msgspec.Struct):
    data: list[_Entry]
    next_page: str | None = None


def bare_chain(url: str, agent_id: str) -> tuple[float, int]:
    """Seconds to fetch every page of one agent in a row, and the pages fetched."""
    headers = {"Authorization": f"Bearer {API_KEY}", "Cartesia-Version": API_VERSION}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as http:
        started = time.perf_counter()
        fetched, cursor = 0, None
        while True:
            params = {"agent_id": agent_id, "limit": str(MAX_PAGE_SIZE)}
            if cursor is not None:
                params["starting_after"] = cursor
            answer = http.get("/agents/calls", params=params)
            answer.raise_for_status()
            page = msgspec.json.decode(answer.content, type=_Page)
            fetched += 1
            if not page.data or page.next_page is None:
                return time.perf_counter() - started, fetched
            cursor = page.data[-1].id


def listing_requests(url: str) -> int:
    stats = httpx.get(f"{url}/_sandbox/stats", timeout=30).json()
    return sum(int(n) for n in stats["requests"].get("GET /agents/calls", {}).values())


def one_round(
    shape: Shape, spec: SandboxSpec, policy: Path, work: Path
) -> tuple[float, float, float, float]:
    """Cold then warm dry run on one sandbox and log, then the bare chain: (cold s,
    warm s, the warm run's CPU s, the bare chain's seconds a page)."""
    _, longest, total, _, largest = bound_seconds(shape)
    seconds, cpu = [], 0.0
    with sandbox(spec) as url:
        for _ in ("cold", "warm"):
            before = listing_requests(url)
            with watch(url) as window:
                cpu = run_tool(url, policy, work).cpu_s
            if window.seconds is None:
                raise BenchError("the sandbox saw no request")
            seconds.append(window.seconds + LATENCY_MS / 1000)
            if listing_requests(url) - before != total:
                raise BenchError("the bound's page count differs from the sandbox's")
        chain, fetched = bare_chain(url, largest)
    if fetched != longest:
        raise BenchError("the bare chain fetched another number of pages than the bound's")
    cold, warm = seconds
    return cold, warm, cpu, chain / longest


def listing_at_the_bound(sizes: Sizes, tmp: Path) -> list[Figure]:
    twenty = policies.write(tmp, "twenty", policies.TWENTY)
    figures: list[Figure] = []
    for shape in shapes(sizes):
        bound, longest, total, listers, _ = bound_seconds(shape)
        spec = SandboxSpec(
            seed=SEED, agents=shape.agents, calls=shape.calls, now=NOW, latency_ms=LATENCY_MS
        )
        rounds: list[tuple[float, float, float, float]] = []  # cold, warm, cpu, per page
        for n in range(sizes.repeats):  # a fresh sandbox and audit log each round
            rounds.append(one_round(shape, spec, twenty, tmp / f"listing-{shape.agents}-{n}"))
        title = f"dry run, {shape.calls:,} calls over {shape.agents} agent(s), {LATENCY_MS} ms"
        # The detail shows the median round (by its warm time).
        cold, warm, cpu, per_page = sorted(rounds, key=lambda r: r[1])[len(rounds) // 2]
        shared = (
            f"median round: warm (largest first) {warm:.1f} s, cold (API order) {cold:.1f} s; "
            f"largest agent {longest} pages, {total} pages / {listers} listers; the warm run's "
            f"own CPU {cpu:.1f} s (start-up included)"
        )

        pages = 1 + max(longest, total / listers)  # the chain's length, GET /agents included
        against = (
            (
                "",
                "serial-cursor bound",
                [bound] * len(rounds),
                f"bound {bound:.1f} s at {LATENCY_MS} ms a page",
            ),
            (
                "/bare",
                "the bound at the bare chain's page time",
                [p * pages for _, _, _, p in rounds],  # each round's own bare chain
                f"a bare httpx cursor loop over the largest agent took {per_page * 1000:.1f} "
                f"ms a page in the median round: bound {per_page * pages:.1f} s",
            ),
        )
        for suffix, what, bounds, why in against:
            ratio = Spread.of([r[1] / b for r, b in zip(rounds, bounds, strict=True)])
            colds = Spread.of([r[0] / b for r, b in zip(rounds, bounds, strict=True)])
            figures.append(
                Figure(
                    number=f"{shape.number}{suffix}",
                    title=f"{title}: time / {what}",
                    value=ratio.median,
                    low=ratio.low,
                    high=ratio.high,
                    runs=ratio.runs,
                    unit="x",
                    target=f"<= {shape.target}",
                    met=at_most(ratio.median, shape.target),
                    detail=f"{why}; cold {colds.median:.3f}x; {shared}",
                )
            )
    return figures
