"""The tamper matrix and `--api` on a REAL log: `retention run` processes against the
sandbox — a run stopped by --max-deletes, a run SIGKILLed mid-deletion, the next run
resolving its open intents, a dry run — then the log is verified, tampered with, and
proven against the sandbox API."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from retention.audit.chain import GENESIS_HASH, seal
from retention.audit.synth import ChainWriter
from retention.audit.verify import verify_log
from retention.cli import main
from retention.sandbox import SandboxApp, serve_in_thread
from retention.sandbox.faults import Faults
from tests.audit.logs import edited, forged, hash_of, write
from tests.e2e.support import (
    API_KEY,
    NOW_TEXT,
    POLICY_YAML,
    clean_env,
    first_run_cap,
    make_dataset,
    spawn,
)


@dataclass(frozen=True)
class RealLog:
    app: SandboxApp
    url: str
    path: Path
    lines: list[bytes]
    records: list[dict[str, Any]]


def _run(tmp: Path, url: str, log: Path, *flags: str) -> subprocess.Popen[bytes]:
    args = ["run", "--policies", str(tmp / "policies.yaml"), "--audit-log", str(log)]
    args += ["--base-url", url, "--now", NOW_TEXT, *flags, *first_run_cap(flags)]
    env = clean_env(CARTESIA_API_KEY=API_KEY)
    proc: subprocess.Popen[bytes] = spawn(args, env=env, cwd=tmp, stdout=subprocess.DEVNULL)
    return proc


def _intents(log: Path) -> int:
    return log.read_bytes().count(b'"event":"delete_requested"') if log.exists() else 0


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealLog]:
    tmp = tmp_path_factory.mktemp("real-log")
    (tmp / "policies.yaml").write_text(POLICY_YAML)
    log = tmp / "audit.jsonl"
    app = SandboxApp(make_dataset(calls=240, agents=4), api_key=API_KEY)
    with serve_in_thread(app) as url:
        first = _run(tmp, url, log, "--execute", "--max-deletes", "15")
        assert first.wait(60) == 3, first.stderr.read() if first.stderr else ""
        before = _intents(log)
        app.faults = Faults(latency_ms=400)  # slow DELETEs, so the kill lands mid-flight
        killed = _run(tmp, url, log, "--execute", "--concurrency", "4")
        deadline = time.monotonic() + 60
        while _intents(log) <= before and time.monotonic() < deadline:
            time.sleep(0.02)
        killed.send_signal(signal.SIGKILL)
        killed.wait(10)
        app.faults = Faults()
        # A short request timeout keeps recovery's settle window (for DELETEs the killed
        # run still had on the way) short.
        third = _run(tmp, url, log, "--execute", "--timeout", "2")
        assert third.wait(60) == 0, third.stderr.read() if third.stderr else ""
        dry = _run(tmp, url, log)
        assert dry.wait(60) == 0, dry.stderr.read() if dry.stderr else ""
        lines = log.read_bytes().splitlines(keepends=True)
        yield RealLog(app, url, log, lines, [json.loads(line) for line in lines])


def _index(real: RealLog, event: str) -> int:
    """The 0-based index of the first line of this event."""
    return next(i for i, record in enumerate(real.records) if record["event"] == event)


@pytest.mark.slow
def test_the_real_log_verifies_and_holds_a_recovered_intent(real: RealLog) -> None:
    summary = verify_log(real.path)
    assert summary.problem is None, summary.problem
    assert summary.lines == len(real.lines)
    starts = [r for r in real.records if r["event"] == "run_started"]
    assert [r["dry_run"] for r in starts] == [False, False, False, True]
    assert len(summary.runs) == 4
    killed_run = starts[1]["run_id"]
    assert killed_run not in {r["run_id"] for r in real.records if r["event"] == "run_finished"}
    # Outcomes written by a later run than their intent: the killed run's, resolved.
    open_by: dict[str, str] = {}
    recovered_from: set[str] = set()
    for r in real.records:
        if r["event"] == "delete_requested":
            open_by[r["call_id"]] = r["run_id"]
        elif "call_id" in r:
            intent_run = open_by.pop(r["call_id"])
            if intent_run != r["run_id"]:
                recovered_from.add(intent_run)
    assert recovered_from == {killed_run}
    assert not open_by
    redactions = sum(r["event"] in ("deleted", "already_redacted") for r in real.records)
    assert summary.redactions == redactions > 15


def _swap(lines: list[bytes], i: int) -> list[bytes]:
    out = list(lines)
    out[i], out[i + 1] = out[i + 1], out[i]
    return out


Tamper = Callable[[RealLog], tuple[list[bytes], int, str]]


def _edit_redacted_at(real: RealLog) -> tuple[list[bytes], int, str]:
    i = _index(real, "deleted")
    lines = list(real.lines)
    lines[i] = edited(lines[i], redacted_at="2020-01-01T00:00:00Z")
    return lines, i + 1, "hash"


def _delete_line(real: RealLog) -> tuple[list[bytes], int, str]:
    i = _index(real, "delete_requested") + 3
    return [*real.lines[:i], *real.lines[i + 1 :]], i + 1, "seq"


def _swap_lines(real: RealLog) -> tuple[list[bytes], int, str]:
    i = _index(real, "deleted")
    return _swap(real.lines, i), i + 1, "seq"


def _insert_forged(real: RealLog) -> tuple[list[bytes], int, str]:
    i = _index(real, "deleted")
    fake = forged(real.records[i] | {"call_id": "call_forged"}, previous=GENESIS_HASH, seq=i + 1)
    return [*real.lines[:i], fake, *real.lines[i:]], i + 1, "hash"


def _insert_chained_forgery(real: RealLog) -> tuple[list[bytes], int, str]:
    # Sealed onto the true previous line: only the next genuine line can expose it.
    i = _index(real, "deleted")
    fake = forged(real.records[i], previous=hash_of(real.lines[i - 1]), seq=i + 1)
    return [*real.lines[:i], fake, *real.lines[i:]], i + 2, "seq"


def _truncate(real: RealLog) -> tuple[list[bytes], int, str]:
    i = len(real.lines) // 2
    return [*real.lines[:i], real.lines[i][: len(real.lines[i]) // 2]], i + 1, "truncated"


def _append_wrong_seq(real: RealLog) -> tuple[list[bytes], int, str]:
    last = real.records[-1]
    extra = seal(last["hash"], last["seq"] + 2, real.records[-1] | {"run_id": "forged"})
    return [*real.lines, json.dumps(extra).encode() + b"\n"], len(real.lines) + 1, "seq"


def _continue_with_orphan(real: RealLog) -> tuple[list[bytes], int, str]:
    # A correctly chained outcome for a call no intent asked for.
    import io

    out = io.BytesIO()
    last = real.records[-1]
    writer = ChainWriter(out, previous_hash=last["hash"], seq=last["seq"])
    writer.write(
        {
            "ts": "2026-06-01T00:00:00Z",
            "run_id": "forged",
            "event": "deleted",
            "call_id": "call_x",
            "agent_id": "agent_x",
            "policy": "old-30d",
            "redacted_at": "2026-06-01T00:00:00Z",
        }
    )
    return [*real.lines, out.getvalue()], len(real.lines) + 1, "orphan_outcome"


TAMPERING: dict[str, Tamper] = {
    "edit a value": _edit_redacted_at,
    "delete a line": _delete_line,
    "swap two lines": _swap_lines,
    "insert a forged line": _insert_forged,
    "insert a forged line chained correctly": _insert_chained_forgery,
    "truncate mid-line": _truncate,
    "append a line with a wrong seq": _append_wrong_seq,
    "append a chained outcome with no intent": _continue_with_orphan,
}


@pytest.mark.parametrize("name", list(TAMPERING))
def test_tampering_with_the_real_log_is_caught_at_its_line(
    real: RealLog, tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    lines, line, kind = TAMPERING[name](real)
    path = write(tmp_path / "audit.jsonl", lines)
    summary = verify_log(path)
    assert summary.problem is not None
    assert (summary.problem.line, summary.problem.kind) == (line, kind)
    with pytest.raises(SystemExit) as exit_info:
        main(["audit", "verify", str(path)])
    out, err = capsys.readouterr()
    assert exit_info.value.code == 1
    assert f"BROKEN at line {line}: " in out
    assert "Traceback" not in out + err


def test_the_real_log_is_confirmed_by_the_api_until_a_call_is_changed(
    real: RealLog, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CARTESIA_API_KEY", API_KEY)
    args = ["audit", "verify", str(real.path), "--api", "--base-url", real.url]
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    out, _ = capsys.readouterr()
    assert exit_info.value.code == 0, out
    assert "INTACT and CONFIRMED by the API" in out

    victim = real.records[_index(real, "deleted")]
    before = real.app.dataset.get_call(victim["call_id"], transcript=False)
    assert before is not None and before.redacted_at is not None
    real.app.override_call(victim["call_id"], {"redacted_at": None})
    try:
        with pytest.raises(SystemExit) as exit_info:
            main(args)
    finally:
        real.app.override_call(victim["call_id"], {"redacted_at": before.redacted_at})
    out, err = capsys.readouterr()
    assert exit_info.value.code == 1
    assert f"call {victim['call_id']} logged {victim['redacted_at']}, API shows null" in out
    assert "1 mismatched" in out and "Traceback" not in out + err
