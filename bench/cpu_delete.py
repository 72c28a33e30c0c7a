"""CPU per deletion, side by side in one invocation: this tree's `retention run
--execute`, the same run at an older commit (BASELINE_COMMIT, from `git archive`),
and a competent asyncio + httpx script with Semaphore(32). Each runs against its own
fresh sandbox (its own process, so its CPU is never counted) over the same data, in
turn, several rounds; a figure is the child's own user + system CPU (wait4) over the
deletions the sandbox counted, start-up included."""

from __future__ import annotations

import statistics
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Final

from bench import policies
from bench.dataset import calls_for_due
from bench.figures import Figure, at_most
from bench.procs import API_KEY, PYTHON, SandboxSpec, measure, run_args, sandbox
from bench.sizes import NOW, Sizes
from bench.stats import read_counts

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
# The tree before issue 18's CPU work (the client in layers, prebuilt requests, the
# transport over httpcore's public pool, msgspec for audit lines).
BASELINE_COMMIT: Final = "a040a79"
SEED = 7


class CpuBenchError(RuntimeError):
    """A side of the comparison could not run."""


def _old_tree(into: Path) -> Path:
    """BASELINE_COMMIT's files, unpacked from `git archive` (no worktree is touched)."""
    archive = into / "old.tar"
    with archive.open("wb") as out:
        done = subprocess.run(
            ["git", "-C", str(REPO), "archive", BASELINE_COMMIT],
            stdout=out,
            stderr=subprocess.PIPE,
            check=False,
        )
    if done.returncode != 0:
        raise CpuBenchError(f"git archive {BASELINE_COMMIT}: {done.stderr.decode().strip()}")
    tree = into / "old"
    with tarfile.open(archive) as tar:
        tar.extractall(tree, filter="data")
    return tree


def _tool(tree: Path) -> Callable[[str, Path, Path], list[str]]:
    """`retention run --execute` from `tree`, by path: neither tree shadows the other."""

    def argv(url: str, policy: Path, work: Path) -> list[str]:
        return [
            PYTHON,
            str(tree / "retention" / "__main__.py"),
            "run",
            *run_args(url, policy, work, NOW),
            "--execute",
            "--max-deletes",
            "100000000",
        ]

    return argv


def _baseline(url: str, policy: Path, work: Path) -> list[str]:
    return [PYTHON, str(HERE / "competent.py"), "--base-url", url, "--now", NOW]


def _spread(values: list[float]) -> str:
    return (
        f"median {statistics.median(values):.3f}, min {min(values):.3f}, max {max(values):.3f} ms"
    )


def cpu_per_deletion(sizes: Sizes, tmp: Path) -> Figure:
    rounds = 5 if sizes.cpu_deleted >= 1000 else 1
    calls, due = calls_for_due(sizes.cpu_deleted, seed=SEED, agents=sizes.agents, now=NOW)
    spec = SandboxSpec(seed=SEED, agents=sizes.agents, calls=calls, now=NOW)
    policy = policies.write(tmp, "everything", policies.DELETE_EVERYTHING)
    old_tree = _old_tree(tmp)
    # Each side: its command, and the tree its `retention` is imported from.
    sides: dict[str, tuple[Callable[[str, Path, Path], list[str]], Path | None]] = {
        "tool": (_tool(REPO), REPO),
        "old": (_tool(old_tree), old_tree),
        "async": (_baseline, None),
    }
    per_deletion: dict[str, list[float]] = {name: [] for name in sides}
    for n in range(rounds):
        for name, (argv, tree) in sides.items():
            env = {"CARTESIA_API_KEY": API_KEY, "PYTHONPATH": str(tree or "")}
            with tempfile.TemporaryDirectory(dir=tmp) as scratch, sandbox(spec) as url:
                run = measure(argv(url, policy, Path(scratch)), env=env, workdir=Path(scratch))
                deleted = read_counts(url).deletions
            if run.exit_code != 0 or deleted < due:
                tail = " | ".join(run.stderr.strip().splitlines()[-3:])
                raise CpuBenchError(f"{name}, round {n}: exit {run.exit_code}, {deleted}: {tail}")
            per_deletion[name].append(run.cpu_s / deleted * 1000)
    tool, old, baseline = (statistics.median(per_deletion[k]) for k in ("tool", "old", "async"))
    ratio = tool / old
    return Figure(
        number="3c",
        title="CPU per deletion, tool / tool at a040a79",
        value=ratio,
        unit="x",
        target="<= 0.5",
        met=at_most(ratio, 0.5),
        detail=(
            f"{due} due calls, {rounds} rounds, each side on a fresh sandbox; CPU per "
            f"deletion: tool {_spread(per_deletion['tool'])}; at {BASELINE_COMMIT} "
            f"{_spread(per_deletion['old'])}; asyncio + httpx with Semaphore(32) "
            f"{_spread(per_deletion['async'])}: the tool at {tool / baseline:.2f} of it"
        ),
    )
