"""Verify reads a rotated log (numbered gzip segments, then the live file) as one chain,
and names the segment that is missing, out of order or altered. The segments here are
cut and compressed by the test itself, not by the rotation code."""

from __future__ import annotations

import gzip
import itertools
import tracemalloc
from pathlib import Path

import pytest

from retention.audit.segments import SegmentsError
from retention.audit.signing import load_public_keys
from retention.audit.synth import synthesize
from retention.audit.verify import verify_log
from retention.cli import main
from tests.audit.logs import RECORDS, edited, sealed_lines
from tests.audit.signed import make_key, rechain, signed_log


def split(directory: Path, lines: list[bytes], cuts: list[int], name: str = "audit.jsonl") -> Path:
    """Segments 1.. hold lines[cuts[i-1]:cuts[i]]; the live file holds the rest."""
    bounds = [0, *cuts]
    for number, (start, end) in enumerate(itertools.pairwise(bounds), 1):
        with gzip.open(directory / f"{name}.{number:06d}.gz", "wb") as out:
            out.write(b"".join(lines[start:end]))
    live = directory / name
    live.write_bytes(b"".join(lines[bounds[-1] :]))
    return live


@pytest.fixture
def lines() -> list[bytes]:
    return sealed_lines(RECORDS)


def test_a_rotated_log_verifies_as_one_chain(tmp_path: Path, lines: list[bytes]) -> None:
    live = split(tmp_path, lines, [5, 10, 15])
    summary = verify_log(live)
    assert summary.problem is None, summary.problem
    assert summary.lines == len(lines) == 21
    assert summary.last_seq == 21
    assert [(f.path.name, f.lines) for f in summary.files] == [
        ("audit.jsonl.000001.gz", 5),
        ("audit.jsonl.000002.gz", 5),
        ("audit.jsonl.000003.gz", 5),
        ("audit.jsonl", 6),
    ]
    # The intent of line 14 (segment 3) is answered by line 16 (the live file).
    assert summary.outcomes["deleted"] == 4


def test_a_directory_or_a_list_of_files_is_the_same_log(tmp_path: Path, lines: list[bytes]) -> None:
    live = split(tmp_path, lines, [7, 14])
    assert verify_log(tmp_path).intact
    segments = sorted(tmp_path.glob("*.gz"), reverse=True)  # any order: sorted by number
    assert verify_log([*segments, live]).intact
    # The segments alone end on an intent still open: that is reported, not a break.
    alone = verify_log(segments)
    assert alone.problem is not None and alone.problem.kind == "unresolved_intent"


def test_a_removed_segment_is_named(tmp_path: Path, lines: list[bytes]) -> None:
    live = split(tmp_path, lines, [5, 10, 15])
    (tmp_path / "audit.jsonl.000002.gz").unlink()
    problem = verify_log(live).problem
    assert problem is not None and problem.kind == "segment"
    assert problem.file == "audit.jsonl.000003.gz" and problem.line == 1
    assert "audit.jsonl.000002.gz is missing" in str(problem)


def test_a_removed_first_segment_is_caught(tmp_path: Path, lines: list[bytes]) -> None:
    live = split(tmp_path, lines, [5, 10])
    (tmp_path / "audit.jsonl.000001.gz").unlink()
    problem = verify_log(live).problem
    assert problem is not None and problem.kind == "segment"
    assert problem.file == "audit.jsonl.000002.gz"
    assert "starts at seq 6, but the chain expects seq 1" in problem.detail


def test_a_removed_last_segment_is_caught_at_the_live_file(
    tmp_path: Path, lines: list[bytes]
) -> None:
    live = split(tmp_path, lines, [5, 10])
    (tmp_path / "audit.jsonl.000002.gz").unlink()
    problem = verify_log(live).problem
    assert problem is not None and problem.kind == "segment"
    assert (problem.file, problem.line) == ("audit.jsonl", 1)
    assert "starts at seq 11, but the chain expects seq 6" in problem.detail


def test_two_swapped_segments_are_caught(tmp_path: Path, lines: list[bytes]) -> None:
    live = split(tmp_path, lines, [5, 10, 15])
    first, second = tmp_path / "audit.jsonl.000001.gz", tmp_path / "audit.jsonl.000002.gz"
    held = first.read_bytes()
    first.write_bytes(second.read_bytes())
    second.write_bytes(held)
    problem = verify_log(live).problem
    assert problem is not None and problem.kind == "segment"
    assert (problem.file, problem.line) == ("audit.jsonl.000001.gz", 1)
    assert "out of order" in problem.detail


def test_a_line_edited_inside_a_segment_is_caught(tmp_path: Path, lines: list[bytes]) -> None:
    tampered = list(lines)
    tampered[6] = edited(lines[6], call_id="c9")  # line 7: segment 2's second line
    live = split(tmp_path, tampered, [5, 10, 15])
    problem = verify_log(live).problem
    assert problem is not None and problem.kind == "hash"
    assert (problem.file, problem.line) == ("audit.jsonl.000002.gz", 2)


def test_a_segment_recompressed_after_a_rebuilt_chain_is_caught_by_a_signature(
    tmp_path: Path,
) -> None:
    signer, public = make_key(tmp_path, "key")
    lines = signed_log(RECORDS, {9: signer, 18: signer})  # checkpoints after lines 10 and 19
    live = split(tmp_path, lines, [11, 21])
    assert verify_log(live).intact
    # Rewrite segment 1 with an edit and every hash after it recomputed, segment 2 too.
    forged = rechain([edited(lines[4], redacted_at="2026-11-01T09:00:00Z"), *lines[5:]])
    rebuilt = rechain([*lines[:4], *forged])
    split(tmp_path, rebuilt, [11, 21])
    problem = verify_log(live, keys=load_public_keys([public])).problem
    assert problem is not None and problem.kind == "checkpoint"
    assert (problem.file, problem.line) == ("audit.jsonl.000001.gz", 11)


def test_compressed_bytes_edited_in_a_segment_are_caught(
    tmp_path: Path, lines: list[bytes]
) -> None:
    live = split(tmp_path, lines, [5, 10, 15])
    target = tmp_path / "audit.jsonl.000002.gz"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit inside the deflate stream
    target.write_bytes(bytes(data))
    problem = verify_log(live).problem
    assert problem is not None and problem.kind in ("segment", "hash", "bad_json")
    assert problem.file == "audit.jsonl.000002.gz"


def test_a_segment_cut_short_is_caught(tmp_path: Path, lines: list[bytes]) -> None:
    live = split(tmp_path, lines, [5, 10, 15])
    target = tmp_path / "audit.jsonl.000003.gz"
    target.write_bytes(target.read_bytes()[:-12])  # the gzip trailer and some data gone
    problem = verify_log(live).problem
    assert problem is not None and problem.kind == "segment"
    assert problem.file == "audit.jsonl.000003.gz"
    assert "damaged" in problem.detail


def test_segments_of_two_logs_in_one_directory_are_refused(
    tmp_path: Path, lines: list[bytes]
) -> None:
    split(tmp_path, lines, [5], name="a.jsonl")
    split(tmp_path, lines, [5], name="b.jsonl")
    with pytest.raises(SegmentsError, match="2 logs"):
        verify_log(tmp_path)


def test_the_cli_takes_a_directory_and_names_the_broken_segment(
    tmp_path: Path, lines: list[bytes], capsys: pytest.CaptureFixture[str]
) -> None:
    split(tmp_path, lines, [5, 10, 15])
    (tmp_path / "audit.jsonl.000002.gz").unlink()
    with pytest.raises(SystemExit) as exit_info:
        main(["audit", "verify", str(tmp_path)])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "audit.jsonl.000003.gz line 1" in err and "000002.gz is missing" in err


def _segmented(directory: Path, total: int) -> Path:
    """A synthetic log of `total` lines, cut into ten gzip segments and a live file."""
    whole = directory / "whole.jsonl"
    count = synthesize(whole, total, calls_per_run=2_000)
    lines = whole.read_bytes().splitlines(keepends=True)
    whole.unlink()
    step = count // 10
    return split(directory, lines, [step * i for i in range(1, 11)])


def _peak(live: Path, total: int) -> int:
    tracemalloc.start()
    try:
        summary = verify_log(live)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert summary.intact, summary.problem
    assert len(summary.files) == 11
    assert summary.lines == summary.last_seq >= total
    return peak


@pytest.mark.slow
def test_verifying_ten_segments_of_ten_times_more_lines_takes_no_more_memory(
    tmp_path: Path,
) -> None:
    small, large = tmp_path / "small", tmp_path / "large"
    small.mkdir()
    large.mkdir()
    small_live, large_live = _segmented(small, 10_000), _segmented(large, 100_000)
    # Only open intents, one summary per run and one per file are kept.
    assert _peak(large_live, 100_000) - _peak(small_live, 10_000) < 64 * 1024


def test_archived_segments_and_the_log_beside_its_newest_verify_together(
    tmp_path: Path, lines: list[bytes]
) -> None:
    here, archive = tmp_path / "here", tmp_path / "archive"
    here.mkdir()
    archive.mkdir()
    live = split(here, lines, [5, 10, 15])
    for segment in sorted(here.glob("*.gz")):  # every segment copied away...
        (archive / segment.name).write_bytes(segment.read_bytes())
    for number in (1, 2):  # ...and all but the newest removed from beside the log
        (here / f"audit.jsonl.{number:06d}.gz").unlink()
    assert not verify_log(live).intact
    summary = verify_log([archive, live])
    assert summary.problem is None, summary.problem
    assert [f.segment for f in summary.files] == [1, 2, 3, None]
    (archive / "audit.jsonl.000003.gz").write_bytes(b"not the same")
    with pytest.raises(SegmentsError, match="different content"):
        verify_log([archive, live])
