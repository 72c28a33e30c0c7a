"""`retention audit verify` from the command line: exit status, one-line errors, reports."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from retention.cli import main
from tests.audit.logs import RECORDS, edited, hash_of, sealed_lines, write

LINES = sealed_lines(RECORDS)


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(["audit", "verify", *args])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    code = exit_info.value.code
    assert isinstance(code, int)
    return code, out, err


def test_an_intact_log_exits_0_with_its_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path / "audit.jsonl", LINES)
    code, out, _ = _run(capsys, str(path))
    assert code == 0
    assert "verdict     INTACT" in out
    assert f"last hash {hash_of(LINES[-1])}" in out
    assert "run-2  2026-11-02T02:00:00Z -> unfinished  execute" in out
    assert "run-4  2026-11-04T02:00:00Z -> 2026-11-04T02:00:05Z  dry run" in out
    assert "redacted_at first 2026-10-30T08:00:00Z, last 2026-11-03T02:00:02Z" in out
    assert "support-90d: already_redacted=1 deleted=3 failed=1 not_found=1" in out


def test_a_broken_log_exits_1_naming_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path / "audit.jsonl", [*LINES[:6], edited(LINES[6], call_id="c9"), *LINES[7:]])
    code, out, err = _run(capsys, str(path))
    assert code == 1
    assert "BROKEN at line 7: hash mismatch" in out
    assert f"{path}: line 7: hash mismatch" in err


@pytest.mark.parametrize("name", ["missing.jsonl", "."])
def test_a_missing_or_unreadable_file_exits_2_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    code, out, err = _run(capsys, str(tmp_path / name))
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("retention: error: ")


def test_a_report_of_unknown_format_exits_2_before_reading(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _run(capsys, str(tmp_path / "nope.jsonl"), "--report", str(tmp_path / "e.pdf"))
    assert code == 2
    assert "--report" in err and ".md or .json" in err


def test_json_evidence_names_the_digest_chain_end_and_counts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path / "audit.jsonl", LINES)
    report = tmp_path / "evidence.json"
    code, _, _ = _run(capsys, str(path), "--report", str(report))
    assert code == 0
    data = json.loads(report.read_text())
    assert data["log"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert data["log"]["lines"] == data["log"]["last_seq"] == len(LINES)
    assert data["log"]["last_hash"] == hash_of(LINES[-1])
    assert data["verdict"]["intact"] is True
    assert data["outcomes"] == {"already_redacted": 1, "deleted": 4, "failed": 1, "not_found": 1}
    assert [run["run_id"] for run in data["runs"]] == ["run-1", "run-2", "run-3", "run-4"]
    assert data["api_check"] is None
    assert data["tool"]["version"]
    # Free text from the log (a `failed` line's error) is never copied.
    assert "gave up" not in report.read_text()


def test_markdown_evidence_of_a_broken_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path / "audit.jsonl", [*LINES[:3], *LINES[4:]])
    report = tmp_path / "evidence.md"
    code, _, _ = _run(capsys, str(path), "--report", str(report))
    assert code == 1
    text = report.read_text()
    assert "BROKEN at line 4: seq gap: expected 4, found 5 (a line is missing)" in text
    assert hashlib.sha256(path.read_bytes()).hexdigest() in text
    assert "| run-1 |" in text
