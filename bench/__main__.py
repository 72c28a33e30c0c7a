"""`python -m bench`: run the benchmarks, print the table, optionally record it.

.venv/bin/python -m bench                 # full figures (about 8 minutes on 2 cores)
.venv/bin/python -m bench --quick         # smoke mode: tiny sizes, proves it works
.venv/bin/python -m bench --only rate,engine --write docs/BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path

from bench import adaptive, cases, inprocess, listing
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
    "speed": ("2", "speed vs naive script", cases.speed_vs_naive),
    "cpu": ("3", "CPU per call vs SDK", cases.cpu_per_call),
    "memory": ("4", "peak RSS, large / small dry run", cases.memory_flat),
    "engine": ("5", "policy engine", inprocess.policy_engine),
    "audit": ("6", "audit verify peak RSS", inprocess.audit_verify),
    "segments": ("7", "audit verify peak RSS, 10 segments", inprocess.audit_verify_segments),
    "adaptive": ("8", "adaptive concurrency", adaptive.adaptive_concurrency),
    "listing": ("9", "listing at the serial-cursor bound", listing.listing_at_the_bound),
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
    args = parser.parse_args(argv)
    unknown = set(args.only.split(",")) - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = QUICK if args.quick else FULL
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
