"""`python -m bench`: run the benchmarks, print the table, optionally record it.

.venv/bin/python -m bench                 # full figures, 3 rounds each (most of an hour here)
.venv/bin/python -m bench --quick         # smoke mode: tiny sizes, proves it works
.venv/bin/python -m bench --only rate,engine --write docs/BENCHMARKS.md
.venv/bin/python -m bench --only startup --repeat 5   # median, min, max of 5 rounds
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path

from bench import adaptive, apply_memory, cases, cpu_delete, inprocess, listing, startup
from bench.figures import (
    Figure,
    command_line,
    machine,
    results_section,
    text_table,
    write_results,
)
from bench.sizes import FULL, QUICK, Sizes

Benchmark = Callable[[Sizes, Path], Figure | list[Figure]]

BENCHMARKS: dict[str, tuple[str, str, Benchmark]] = {
    "rate": ("1", "rate efficiency", cases.rate_efficiency),
    "speed": ("2", "speed vs competent and naive scripts", cases.speed_vs_naive),
    "cpu": ("3", "CPU per call vs SDK", cases.cpu_per_call),
    "cpu-delete": ("3c", "CPU per deletion vs older commit", cpu_delete.cpu_per_deletion),
    "memory": ("4", "peak RSS, large / small dry run", cases.memory_flat),
    "engine": ("5", "policy engine", inprocess.policy_engine),
    "audit": ("6", "audit verify peak RSS", inprocess.audit_verify),
    "segments": ("7", "audit verify peak RSS, 10 segments", inprocess.audit_verify_segments),
    "startup": ("8", "start-up, 1M-line audit log / empty", startup.startup_time),
    "shards": ("9", "shard balance over 64 agents", startup.shard_balance),
    "scaleout": ("10", "scale-out, 1/2/4 shards", startup.scale_out),
    "apply-memory": ("11", "peak RSS of plan + apply / dry run", apply_memory.apply_memory),
    "adaptive": ("12", "adaptive concurrency", adaptive.adaptive_concurrency),
    "listing": ("13", "listing at the serial-cursor bound", listing.listing_at_the_bound),
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    parser.add_argument(
        "--only",
        default=",".join(BENCHMARKS),
        help=f"comma-separated subset of: {', '.join(BENCHMARKS)}",
    )
    parser.add_argument("--write", type=Path, help="record the table in this Markdown file")
    parser.add_argument(
        "--repeat",
        type=int,
        help="rounds per repeated figure (median, min, max); default 3, 1 with --quick",
    )
    args = parser.parse_args(argv)
    unknown = set(args.only.split(",")) - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = QUICK if args.quick else FULL
    if args.repeat is not None:
        sizes = dataclasses.replace(sizes, repeats=max(1, args.repeat))
    machine_line = machine()
    print(f"# {machine_line}", flush=True)
    figures: list[Figure] = []
    failed = False
    for key in args.only.split(","):
        number, title, benchmark = BENCHMARKS[key]
        print(f"# running {key} ...", flush=True)
        with tempfile.TemporaryDirectory(prefix=f"bench-{key}-") as tmp:
            try:
                produced = benchmark(sizes, Path(tmp))
            except Exception as err:  # one broken benchmark must not hide the others
                failed = True
                traceback.print_exc(file=sys.stderr)
                produced = Figure(number, title, None, "x", "-", None, f"failed: {err}")
        for figure in produced if isinstance(produced, list) else [produced]:
            figures.append(figure)
            print(f"#   {figure.title}: {figure.shown} ({figure.verdict})", flush=True)
    print()
    print(text_table(figures))
    after = os.getloadavg()
    machine_line += f"; after it {after[0]:.2f} / {after[1]:.2f} / {after[2]:.2f}"
    print(f"\n# {machine_line}")
    if args.write:
        write_results(args.write, results_section(figures, command_line(), machine_line))
        print(f"\nrecorded in {args.write}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
