"""The verifier against hand-built logs: the untouched log holds; each kind of
tampering is caught at the line where the chain breaks."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from retention.audit.chain import GENESIS_HASH
from retention.audit.verify import verify_log
from tests.audit.logs import RECORDS, edited, forged, hash_of, sealed_lines, write

LINES = sealed_lines(RECORDS)
LAST = len(LINES)


def test_untouched_log_verifies_and_summarises(tmp_path: Path) -> None:
    summary = verify_log(write(tmp_path / "audit.jsonl", LINES))
    assert summary.problem is None, summary.problem
    assert summary.lines == summary.last_seq == 21
    assert summary.last_hash == hash_of(LINES[-1])
    assert list(summary.runs) == ["run-1", "run-2", "run-3", "run-4"]
    assert [run.dry_run for run in summary.runs.values()] == [False, False, False, True]
    assert summary.runs["run-2"].finished_at is None  # killed
    assert summary.runs["run-3"].outcomes == {"deleted": 2}  # its own c7 and c6 recovered
    assert summary.outcomes == {"deleted": 4, "already_redacted": 1, "not_found": 1, "failed": 1}
    assert summary.by_policy["sales-30d"] == {"deleted": 1}
    assert summary.first_redacted_at == datetime(2026, 10, 30, 8, tzinfo=UTC)
    assert summary.last_redacted_at == datetime(2026, 11, 3, 2, 0, 2, tzinfo=UTC)
    assert summary.redactions == 5


def _swap(lines: list[bytes], i: int) -> list[bytes]:
    out = list(lines)
    out[i], out[i + 1] = out[i + 1], out[i]
    return out


def _forged_off_chain(lines: list[bytes]) -> list[bytes]:
    # Correct own hash, but chained from genesis instead of line 7's hash.
    fake = forged(RECORDS[7], previous=GENESIS_HASH, seq=8)
    return [*lines[:7], fake, *lines[7:]]


def _forged_on_chain(lines: list[bytes]) -> list[bytes]:
    # A perfect forgery of line 8 still breaks the link to the genuine line after it.
    fake = forged(RECORDS[7] | {"call_id": "c99"}, previous=hash_of(lines[6]), seq=8)
    return [*lines[:7], fake, *lines[7:]]


def _wrong_seq_appended(lines: list[bytes]) -> list[bytes]:
    extra = forged(RECORDS[19] | {"run_id": "run-5"}, previous=hash_of(lines[-1]), seq=LAST + 2)
    return [*lines, extra]


TAMPERING: dict[str, tuple[Callable[[list[bytes]], list[bytes]], int, str]] = {
    "edit a value": (
        lambda ls: [*ls[:4], edited(ls[4], redacted_at="2026-11-01T03:00:00Z"), *ls[5:]],
        5,
        "hash",
    ),
    "edit the policy of an intent": (
        lambda ls: [*ls[:1], edited(ls[1], policy="legal-hold"), *ls[2:]],
        2,
        "hash",
    ),
    "delete a line": (lambda ls: [*ls[:8], *ls[9:]], 9, "seq"),
    "delete the first line": (lambda ls: ls[1:], 1, "seq"),
    "swap two lines": (lambda ls: _swap(ls, 11), 12, "seq"),
    "insert a forged line off the chain": (_forged_off_chain, 8, "hash"),
    "insert a perfectly chained forged line": (_forged_on_chain, 9, "seq"),
    "truncate mid-line": (lambda ls: [*ls[:12], ls[12][:40]], 13, "truncated"),
    "append a line with a wrong seq": (_wrong_seq_appended, LAST + 1, "seq"),
    "garbage in the middle": (lambda ls: [*ls[:5], b"{not json\n", *ls[6:]], 6, "bad_json"),
    "a line that is not an object": (lambda ls: [*ls[:5], b"[1,2]\n", *ls[6:]], 6, "bad_json"),
}


@pytest.mark.parametrize("name", list(TAMPERING))
def test_tampering_is_caught_at_the_right_line(tmp_path: Path, name: str) -> None:
    tamper, line, kind = TAMPERING[name]
    summary = verify_log(write(tmp_path / "audit.jsonl", tamper(LINES)))
    assert summary.problem is not None
    assert (summary.problem.line, summary.problem.kind) == (line, kind)
    assert str(summary.problem).startswith(f"line {line}: ")


def test_a_missing_line_is_named_as_such(tmp_path: Path) -> None:
    summary = verify_log(write(tmp_path / "audit.jsonl", [*LINES[:8], *LINES[10:]]))
    assert summary.problem is not None
    assert "expected 9, found 11" in summary.problem.detail
    assert "2 lines are missing" in summary.problem.detail


def test_file_digest_covers_every_byte_even_past_a_break(tmp_path: Path) -> None:
    import hashlib

    lines = [*LINES[:3], edited(LINES[3], policy="x"), *LINES[4:]]
    path = write(tmp_path / "audit.jsonl", lines)
    summary = verify_log(path)
    assert summary.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert summary.lines == LAST
    assert summary.last_seq == 3  # the chain was checked up to the break


# Logs a run could never write, sealed correctly: the chain holds, the content does not.
def _resealed(records: list[dict[str, object]]) -> list[bytes]:
    return sealed_lines(records)


def test_an_intent_never_resolved_is_reported_at_the_intent(tmp_path: Path) -> None:
    records = [*RECORDS[:15], *RECORDS[16:]]  # drop run-3's recovery of c6 (line 14)
    summary = verify_log(write(tmp_path / "a.jsonl", _resealed(records)))
    assert summary.problem is not None
    assert (summary.problem.line, summary.problem.kind) == (14, "unresolved_intent")
    assert "c6" in summary.problem.detail


def test_the_earliest_of_several_open_intents_is_named(tmp_path: Path) -> None:
    records = [r for i, r in enumerate(RECORDS, 1) if i not in (7, 16)]  # c3 and c6 open
    summary = verify_log(write(tmp_path / "a.jsonl", _resealed(records)))
    assert summary.problem is not None
    assert summary.problem.line == 6
    assert "1 more open intents" in summary.problem.detail


def test_a_second_outcome_for_one_intent_is_an_error(tmp_path: Path) -> None:
    records = [*RECORDS[:7], RECORDS[6], *RECORDS[7:]]  # not_found for c3, twice
    summary = verify_log(write(tmp_path / "a.jsonl", _resealed(records)))
    assert summary.problem is not None
    assert (summary.problem.line, summary.problem.kind) == (8, "orphan_outcome")


def test_an_outcome_with_no_intent_is_an_error(tmp_path: Path) -> None:
    records = [r for i, r in enumerate(RECORDS, 1) if i != 17]  # c7's intent gone
    summary = verify_log(write(tmp_path / "a.jsonl", _resealed(records)))
    assert summary.problem is not None
    assert (summary.problem.line, summary.problem.kind) == (17, "orphan_outcome")


def test_an_outcome_must_name_its_intents_policy(tmp_path: Path) -> None:
    records = list(RECORDS)
    records[6] = records[6] | {"policy": "other"}
    summary = verify_log(write(tmp_path / "a.jsonl", _resealed(records)))
    assert summary.problem is not None
    assert (summary.problem.line, summary.problem.kind) == (7, "intent_mismatch")


def test_a_repeated_intent_leaves_the_first_unresolved(tmp_path: Path) -> None:
    records = [*RECORDS[:2], RECORDS[1], *RECORDS[2:]]  # c1 requested twice, one outcome
    summary = verify_log(write(tmp_path / "a.jsonl", _resealed(records)))
    assert summary.problem is not None
    assert (summary.problem.line, summary.problem.kind) == (2, "unresolved_intent")


@pytest.mark.parametrize(
    ("line", "change"),
    [
        (2, {"call_id": None}),
        (1, {"ts": "2026-11-01 02:00:00"}),
        (1, {"ts": "2026-11-01T04:00:00+02:00"}),
        (1, {"event": "purged"}),
        (5, {"redacted_at": "yesterday"}),
    ],
)
def test_sealed_lines_with_bad_values_are_reported(
    tmp_path: Path, line: int, change: dict[str, object]
) -> None:
    records = list(RECORDS)
    records[line - 1] = records[line - 1] | change
    summary = verify_log(write(tmp_path / "a.jsonl", _resealed(records)))
    assert summary.problem is not None
    assert (summary.problem.line, summary.problem.kind) == (line, "bad_value")


def test_a_missing_event_key_is_reported(tmp_path: Path) -> None:
    records = list(RECORDS)
    records[8] = {k: v for k, v in records[8].items() if k != "error"}
    summary = verify_log(write(tmp_path / "a.jsonl", _resealed(records)))
    assert summary.problem is not None
    assert (summary.problem.line, summary.problem.kind) == (9, "missing_key")
    assert "'error'" in summary.problem.detail


def test_the_earliest_error_wins_over_a_later_chain_break(tmp_path: Path) -> None:
    records = [r for i, r in enumerate(RECORDS, 1) if i != 17]  # orphan outcome at 17
    lines = _resealed(records)
    lines[18] = edited(lines[18], run_id="run-x")  # and a hash break at line 19
    summary = verify_log(write(tmp_path / "a.jsonl", lines))
    assert summary.problem is not None
    assert summary.problem.line == 17


def test_duplicate_keys_and_nan_are_not_json_we_accept(tmp_path: Path) -> None:
    dup = LINES[0].replace(b'{"dry_run":false,', b'{"dry_run":true,"dry_run":false,')
    assert dup != LINES[0]
    summary = verify_log(write(tmp_path / "a.jsonl", [dup, *LINES[1:]]))
    assert summary.problem is not None
    assert (summary.problem.line, summary.problem.kind) == (1, "bad_json")


def test_an_empty_file_is_an_intact_empty_log(tmp_path: Path) -> None:
    summary = verify_log(write(tmp_path / "a.jsonl", []))
    assert summary.problem is None
    assert summary.lines == 0 and summary.last_hash == GENESIS_HASH


def test_a_monster_line_is_reported_and_still_digested(tmp_path: Path) -> None:
    import hashlib

    from retention.audit.reader import MAX_LINE_BYTES

    monster = b'{"x":"' + b"a" * MAX_LINE_BYTES + b'"}\n'
    path = write(tmp_path / "a.jsonl", [*LINES[:3], monster, *LINES[3:]])
    summary = verify_log(path)
    assert summary.problem is not None
    assert (summary.problem.line, summary.problem.kind) == (4, "bad_json")
    assert summary.lines == len(LINES) + 1
    assert summary.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert summary.size == path.stat().st_size


def test_deeply_nested_brackets_are_bad_json_not_a_crash(tmp_path: Path) -> None:
    nested = b"[" * 100_000 + b"]" * 100_000 + b"\n"
    summary = verify_log(write(tmp_path / "a.jsonl", [*LINES[:2], nested, *LINES[2:]]))
    assert summary.problem is not None
    assert (summary.problem.line, summary.problem.kind) == (3, "bad_json")


def test_a_redacted_at_without_offset_is_read_as_utc(tmp_path: Path) -> None:
    # The log keeps the API's value verbatim; an offset-less one is UTC, not damage.
    records = list(RECORDS)
    records[4] = records[4] | {"redacted_at": "2026-10-29T23:30:00"}
    summary = verify_log(write(tmp_path / "a.jsonl", _resealed(records)))
    assert summary.problem is None, summary.problem
    assert summary.first_redacted_at == datetime(2026, 10, 29, 23, 30, tzinfo=UTC)
