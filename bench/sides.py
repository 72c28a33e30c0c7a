"""Figures 12 and 13, side by side with an older tree, alternately, in one
invocation: `python -m bench.sides OLD_TREE adaptive [K [DUE]]` (default K = 8 with
1500 due calls; each execute run after a dry run on its log) or `python -m bench.sides
OLD_TREE listing AGENTS CALLS`, where OLD_TREE holds an older checkout (`git archive
REV | tar -x -C OLD_TREE`), run through PYTHONPATH. Each side runs twice.
`python -m bench.sides OLD_TREE sandbox` swaps the sandbox instead of the tool: a bare
cursor loop's time a page at 50 ms latency against each tree's sandbox."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from bench import listing, policies
from bench.adaptive import AGENTS, LATENCY_MS, one_run
from bench.cases import SEED, run_tool, watch
from bench.dataset import calls_for_due
from bench.procs import SandboxSpec, sandbox
from bench.sizes import NOW

SIDES = ("before", "after", "before", "after")


def use(side: str, old_tree: str) -> None:
    """The tree the next child processes import: the old one, or this one."""
    if side == "before":
        os.environ["PYTHONPATH"] = old_tree
    else:
        os.environ.pop("PYTHONPATH", None)


def adaptive(old_tree: str, tmp: Path, k: int, due: int) -> None:
    policy = policies.write(tmp, "everything", policies.DELETE_EVERYTHING)
    calls, _ = calls_for_due(due, seed=SEED, agents=AGENTS, now=NOW)
    spec = SandboxSpec(
        seed=SEED, agents=AGENTS, calls=calls, now=NOW, max_in_flight=k, latency_ms=LATENCY_MS
    )
    ideal = k / (LATENCY_MS / 1000)
    for n, side in enumerate(SIDES):
        use(side, old_tree)
        found = one_run(spec, policy, tmp / f"adaptive-{n}", warm=True)
        told = one_run(spec, policy, tmp / f"told-{n}", "--concurrency", str(k), warm=True)
        print(
            f"{side}: adaptive {found.ok_per_s:.1f}/s = {found.ok_per_s / ideal:.3f} of "
            f"K/latency, 429s {found.share_429:.2%}; told {told.ok_per_s:.1f}/s; "
            f"adaptive / told {found.ok_per_s / told.ok_per_s:.3f}",
            flush=True,
        )


def listed(old_tree: str, tmp: Path, agents: int, calls: int) -> None:
    shape = listing.Shape("-", agents, calls, 1.0)
    bound, longest, total, listers, largest = listing.bound_seconds(shape)
    policy = policies.write(tmp, "twenty", policies.TWENTY)
    spec = SandboxSpec(
        seed=SEED, agents=agents, calls=calls, now=NOW, latency_ms=listing.LATENCY_MS
    )
    with sandbox(spec) as url:
        for n, side in enumerate(SIDES):
            use(side, old_tree)
            for _ in ("cold", "warm"):  # the second run knows the agents' sizes
                with watch(url) as window:
                    run_tool(url, policy, tmp / f"listing-{n}")
            chain, _ = listing.bare_chain(url, largest)
            per_page = chain / longest
            practical = per_page * (1 + max(longest, total / listers))
            warm = (window.seconds or 0.0) + LATENCY
            print(
                f"{side}: {agents} agents, {calls} calls: warm {warm:.2f} s = "
                f"{warm / bound:.3f}x the bound, {warm / practical:.3f}x the bound at the "
                f"bare chain's {per_page * 1000:.1f} ms a page",
                flush=True,
            )


LATENCY = listing.LATENCY_MS / 1000


def sandbox_pages(old_tree: str, tmp: Path) -> None:
    shape = listing.Shape("-", 1, 15_000, 1.0)
    _, longest, _, _, largest = listing.bound_seconds(shape)
    spec = SandboxSpec(seed=SEED, agents=1, calls=15_000, now=NOW, latency_ms=listing.LATENCY_MS)
    os.chdir(tmp)  # `python -m` puts the working directory first: away from this tree
    for side in SIDES:
        use(side, old_tree)
        with sandbox(spec) as url:
            chain, _ = listing.bare_chain(url, largest)
        print(
            f"{side} sandbox: a bare chain took {chain / longest * 1000:.2f} ms a page", flush=True
        )


def main(argv: list[str]) -> None:
    old_tree, what, *rest = argv
    tmp = Path(tempfile.mkdtemp(prefix="bench-sides-"))
    if what == "adaptive":
        k = int(rest[0]) if rest else 8
        adaptive(old_tree, tmp, k, int(rest[1]) if len(rest) > 1 else 1500)
    elif what == "sandbox":
        sandbox_pages(old_tree, tmp)
    else:
        listed(old_tree, tmp, int(rest[0]), int(rest[1]))


if __name__ == "__main__":
    main(sys.argv[1:])
