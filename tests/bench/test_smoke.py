"""The benchmark command works end to end in its smoke mode (tiny sizes).

No figure is asserted: timings belong in docs/BENCHMARKS.md, not in tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_bench_quick_prints_every_figure() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=230,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line for line in done.stdout.splitlines() if line and not line.startswith("#")]
    numbers = {row.split()[0] for row in rows}
    assert {"1", "2", "3a", "3b", "4", "5", "6"} <= numbers, done.stdout
    assert "n/a" not in done.stdout
