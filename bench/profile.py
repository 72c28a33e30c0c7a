"""Where the tool's CPU goes: `retention run` under py-spy against a sandbox in
another process, summarised as the share of samples in each function.

    .venv/bin/pip install -e '.[profile]'   # py-spy, kept out of the test extra
    .venv/bin/python -m bench.profile execute --calls 4000
    .venv/bin/python -m bench.profile dry-run --calls 50000
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path

from bench import policies
from bench.cases import ENV
from bench.procs import SandboxSpec, measure, retention_argv, sandbox
from bench.sizes import NOW


def frame_key(frame: str) -> str:
    """`function (path/file.py:line)` -> `function file.py`."""
    name, _, where = frame.partition(" (")
    return f"{name} {where.split(':')[0].rsplit('/', 1)[-1]}".strip()


def summarise(raw: Path, top: int) -> list[tuple[float, str]]:
    """Inclusive share of samples per function, from py-spy's raw (collapsed) output."""
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        samples = int(count)
        total += samples
        for key in {frame_key(frame) for frame in stack.split(";")}:
            inclusive[key] += samples
    return [(n / max(total, 1), key) for key, n in inclusive.most_common(top)]


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile")
    parser.add_argument("mode", choices=["dry-run", "execute"])
    parser.add_argument("--calls", type=int, default=4000)
    parser.add_argument("--top", type=int, default=50)
    args = parser.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        print("py-spy is not installed: .venv/bin/pip install -e '.[profile]'", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as tmp:
        work = Path(tmp)
        text = policies.DELETE_EVERYTHING if args.mode == "execute" else policies.TWENTY
        policy = policies.write(work, "policies", text)
        raw = work / "profile.txt"
        flags = ["--execute", "--max-deletes", "100000000"] if args.mode == "execute" else []
        with sandbox(SandboxSpec(agents=10, calls=args.calls, now=NOW)) as url:
            run = retention_argv(
                "run", "--policies", str(policy), "--base-url", url, "--now", NOW,
                "--audit-log", str(work / "audit.jsonl"), *flags,
            )  # fmt: skip
            argv = [spy, "record", "-o", str(raw), "-f", "raw", "-r", "200", "--", *run]
            measured = measure(argv, env=ENV, workdir=work)
        if measured.exit_code != 0:
            print(measured.stderr[-2000:], file=sys.stderr)
            return 1
        print(f"# {args.mode} over {args.calls} calls: {measured.wall_s:.1f} s wall")
        for share, key in summarise(raw, args.top):
            print(f"{share:6.1%}  {key}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
