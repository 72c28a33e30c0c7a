"""The synthetic log generator writes valid logs, and the verifier streams them: its
memory does not grow with the file (the 1M-line figure is measured in bench/)."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

from retention.audit.synth import synthesize
from retention.audit.verify import verify_log


def test_a_synthetic_log_is_valid_and_holds_recovered_intents(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    count = synthesize(path, 900, calls_per_run=200)
    records = [json.loads(line) for line in path.read_bytes().splitlines()]
    assert count == len(records) >= 900
    summary = verify_log(path)
    assert summary.problem is None, summary.problem
    finished = {r["run_id"] for r in records if r["event"] == "run_finished"}
    assert len(summary.runs) - len(finished) >= 1  # killed runs, resolved by the next


def _peak_while_verifying(path: Path) -> int:
    tracemalloc.start()
    try:
        summary = verify_log(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert summary.intact
    return peak


def test_verifying_ten_times_more_lines_takes_no_more_memory(tmp_path: Path) -> None:
    small, large = tmp_path / "small.jsonl", tmp_path / "large.jsonl"
    synthesize(small, 400, calls_per_run=150)
    synthesize(large, 4000, calls_per_run=150)
    # Only open intents (bounded by work in flight) and one summary per run are kept.
    assert _peak_while_verifying(large) - _peak_while_verifying(small) < 64 * 1024
