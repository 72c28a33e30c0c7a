"""The resume sidecar: start-up reads only the tail, and any doubt means the full scan.

The expected state is computed here from the log's lines (an independent reading);
whatever is done to the sidecar, or to the log under a valid sidecar, a run either
starts from exactly that state or falls back to the full scan (and then agrees with
a log that has no sidecar at all): never a wrong seq/hash, never a lost intent.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from retention.audit.chain import GENESIS_HASH
from retention.audit.resume import resume_path
from retention.audit.rotation import rotate
from retention.audit.writer import AuditLog, AuditLogError
from retention.run.belts import read_history

CASES = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
OUTCOMES = ("deleted", "already_redacted", "not_found", "failed")


def _record(event: str, **keys: Any) -> dict[str, Any]:
    return {"ts": "2026-06-01T00:00:00.000Z", "run_id": "r1", "event": event, **keys}


def _keys(call: str) -> dict[str, str]:
    return {"call_id": call, "agent_id": "a1", "policy": "p"}


def _outcome(event: str, call: str) -> dict[str, Any]:
    extra = (
        {"redacted_at": "2026-06-01T00:00:00Z"} if event in ("deleted", "already_redacted") else {}
    )
    if event == "failed":
        extra = {"error": "boom"}
    return _record(event, **_keys(call), **extra)


# One step of a run's writing: an intent, an outcome for an earlier intent, or a run's end.
step = st.one_of(
    st.tuples(st.just("intent"), st.integers(0, 9)),
    st.tuples(st.sampled_from(OUTCOMES), st.integers(0, 9)),
    st.tuples(st.just("finished"), st.integers(0, 500)),
)
runs = st.lists(st.lists(step, max_size=12), min_size=1, max_size=4)


def _records(steps: list[tuple[str, int]]) -> list[dict[str, Any]]:
    records = [_record("run_started")]
    for kind, n in steps:
        if kind == "intent":
            records.append(_record("delete_requested", **_keys(f"c{n}")))
        elif kind == "finished":
            records.append(
                _record("run_finished", dry_run=False, counts={"outcomes": {"deleted": n}})
            )
        else:
            records.append(_outcome(kind, f"c{n}"))
    return records


@dataclass(frozen=True)
class Expected:
    lines: int
    last_seq: int
    last_hash: str
    open_intents: dict[str, tuple[str, str, str, int]]
    history: tuple[int, ...]


def expected(path: Path) -> Expected:
    """The state a log's lines imply, read here with json (not with the writer's scan)."""
    lines = [json.loads(raw) for raw in path.read_bytes().split(b"\n") if raw]
    open_intents: dict[str, tuple[str, str, str, int]] = {}
    history: list[int] = []
    for line in lines:
        call = line.get("call_id")
        if line["event"] == "delete_requested":
            open_intents[call] = (line["agent_id"], line["policy"], line["run_id"], line["seq"])
        elif line["event"] in OUTCOMES:
            open_intents.pop(call, None)
        elif line["event"] == "run_finished" and line.get("dry_run") is False:
            history.append(line["counts"]["outcomes"]["deleted"])
    last: dict[str, Any] = lines[-1] if lines else {"seq": 0, "hash": GENESIS_HASH}
    return Expected(len(lines), last["seq"], last["hash"], open_intents, tuple(history[-10:]))


def observed(log: AuditLog) -> Expected:
    scan = log.scan
    intents = {
        call: (i.agent_id, i.policy, i.run_id, i.seq) for call, i in scan.open_intents.items()
    }
    return Expected(scan.lines, scan.last_seq, scan.last_hash, intents, tuple(scan.history))


@contextmanager
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as root:
        yield Path(os.path.realpath(root)) / "audit.jsonl"


def write_runs(path: Path, all_steps: list[list[tuple[str, int]]]) -> None:
    for steps in all_steps:
        with AuditLog(path) as log:
            log.append(_records(steps))


def open_state(path: Path) -> tuple[Expected | str, bool, list[str]]:
    """What a run starting on `path` sees (or the error), whether it resumed, and the
    warnings it logged."""
    with capture_logs() as logs:
        try:
            log = AuditLog(path)
            log.open()
        except AuditLogError as err:
            return str(err), False, [entry["event"] for entry in logs]
    try:
        return observed(log), log.resumed, [entry["event"] for entry in logs]
    finally:
        log.close()


def test_a_run_leaves_a_resume_point_and_the_next_reads_only_the_tail(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_runs(path, [[("intent", 1), ("intent", 2), ("deleted", 1), ("finished", 7)]])
    sidecar = resume_path(path)
    assert stat.S_IMODE(sidecar.stat().st_mode) == 0o600
    assert json.loads(sidecar.read_text())["offset"] == path.stat().st_size
    state, resumed, warnings = open_state(path)
    assert resumed and warnings == []
    assert state == expected(path)
    assert isinstance(state, Expected) and set(state.open_intents) == {"c2"}


def test_a_sidecar_with_the_same_content_in_other_bytes_is_not_trusted(tmp_path: Path) -> None:
    """A lost newline (a torn write) or added spaces keep the JSON and its digest: the
    sidecar is still not the bytes the writer wrote, so the full scan runs instead."""
    path = tmp_path / "audit.jsonl"
    write_runs(path, [[("intent", 1), ("finished", 2)]])
    sidecar = resume_path(path)
    original = sidecar.read_bytes()
    assert original.endswith(b"\n")
    for damaged in (original[:-1], original.replace(b":", b": ", 1), b" " + original):
        sidecar.write_bytes(damaged)
        state, resumed, _ = open_state(path)
        assert not resumed, damaged[:40]
        assert state == expected(path)


def test_lines_a_killed_run_appended_after_the_point_are_read(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_runs(path, [[("intent", 1), ("finished", 3)]])
    # A killed run: its lines reach the file, its resume point never does.
    with AuditLog(path) as log:
        lines = log.seal_records(_records([("intent", 4), ("intent", 5), ("deleted", 5)]))
        log.write_lines(lines)
        log._write_failed = True  # as if killed before its end: no new point
    with path.open("ab") as raw:
        raw.write(b'{"event":"delete_requ')  # and a torn last line
    state, resumed, warnings = open_state(path)
    assert resumed and warnings == ["audit.torn_line_moved"]
    assert state == expected(path)
    assert isinstance(state, Expected) and set(state.open_intents) == {"c1", "c4"}


def test_rotation_keeps_the_point_and_the_history(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_runs(path, [[("finished", n)] for n in (5, 6, 7)] + [[("intent", 9)]])
    with AuditLog(path) as log:
        assert rotate(log, run_id="r") is not None
    state, resumed, warnings = open_state(path)
    assert resumed and warnings == []
    assert isinstance(state, Expected)
    assert state.last_seq == 8 and set(state.open_intents) == {"c9"}
    # The surge guard's history survives the rotation without reading the segment.
    shutil.move(str(path) + ".000001.gz", tmp_path / "elsewhere.gz")
    with AuditLog(path) as log:
        assert log.resumed
        assert read_history(log).counts == (5, 6, 7)


def test_a_symlinked_or_open_sidecar_is_not_trusted(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_runs(path, [[("intent", 1)]])
    sidecar = resume_path(path)
    real = tmp_path / "elsewhere"
    sidecar.rename(real)
    sidecar.symlink_to(real)
    state, resumed, warnings = open_state(path)
    assert not resumed and warnings == ["audit.resume_mismatch"]
    assert state == expected(path)
    assert not sidecar.is_symlink()  # the run replaced the link with its own file
    os.chmod(sidecar, 0o644)
    state, resumed, warnings = open_state(path)
    assert not resumed and warnings == ["audit.resume_mismatch"]


@CASES
@given(
    all_steps=runs,
    cut=st.integers(0, 10_000),
    flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(1, 255)), min_size=1, max_size=3),
    field=st.sampled_from(["offset", "lines", "last_seq", "last_hash", "open_intents", "inode"]),
    how=st.sampled_from(["truncate", "flip", "field", "empty", "swap"]),
)
def test_any_damage_to_the_sidecar_means_the_right_state_or_the_full_scan(
    all_steps: list[list[tuple[str, int]]],
    cut: int,
    flips: list[tuple[int, int]],
    field: str,
    how: str,
) -> None:
    with scratch() as path:
        write_runs(path, all_steps)
        sidecar = resume_path(path)
        original = sidecar.read_bytes()
        raw = bytearray(original)
        if how == "truncate":
            raw = raw[: cut % len(raw)]
        elif how == "flip":
            for at, xor in flips:
                raw[at % len(raw)] ^= xor
        elif how == "empty":
            raw = bytearray()
        elif how == "swap":  # the sidecar of another log, of another length
            with scratch() as other:
                write_runs(other, [*all_steps, [("intent", 3)]])
                raw = bytearray(resume_path(other).read_bytes())
        else:
            body = json.loads(raw)
            body[field] = (
                [["c0", "a1", "p", "r1", 1, "", 1]]
                if field == "open_intents"
                else "0" * 64
                if field == "last_hash"
                else body[field] + 1
            )
            raw = bytearray(json.dumps(body).encode())
        sidecar.write_bytes(bytes(raw))
        state, resumed, _ = open_state(path)
        assert state == expected(path)
        assert not resumed or bytes(raw) == original, f"a {how} sidecar was trusted"


@CASES
@given(
    all_steps=runs,
    after=runs,
    cut=st.integers(0, 10_000),
    how=st.sampled_from(["crash_append", "truncate", "replace_same_inode", "replace_new_file"]),
)
def test_any_change_to_the_log_under_a_valid_sidecar_agrees_with_a_full_scan(
    all_steps: list[list[tuple[str, int]]],
    after: list[list[tuple[str, int]]],
    cut: int,
    how: str,
) -> None:
    with scratch() as path, scratch() as bare:
        write_runs(path, all_steps)
        content = path.read_bytes()
        if how == "crash_append":  # lines of a run that never wrote its point
            with AuditLog(path) as log:
                log.write_lines(log.seal_records([r for s in after for r in _records(s)]))
                log._write_failed = True
        elif how == "truncate":
            with path.open("r+b") as raw:
                raw.truncate(cut % (len(content) + 1))
        else:  # another log, written over this one or renamed in its place
            write_runs(bare, after)
            other = bare.read_bytes()
            bare.unlink()
            os.unlink(resume_path(bare))
            if how == "replace_same_inode":
                path.write_bytes(other)
            else:
                fresh = path.with_name("fresh")
                fresh.write_bytes(other)
                os.chmod(fresh, 0o600)
                fresh.replace(path)
        shutil.copyfile(path, bare)  # the same log with no sidecar: the full scan's answer
        state, _, _ = open_state(path)
        reference, _, _ = open_state(bare)
        assert state == reference
        if not isinstance(state, str):
            complete = path.read_bytes()
            assert complete.endswith(b"\n") or not complete
            assert state == expected(path)
