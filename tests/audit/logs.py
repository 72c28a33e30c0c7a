"""Audit logs built line by line for the tests, and the tampering done to them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from retention.audit.chain import GENESIS_HASH, chain_hash, encode_line, seal


def _line(ts: str, run_id: str, event: str, **extra: Any) -> dict[str, Any]:
    return {"ts": ts, "run_id": run_id, "event": event, **extra}


def _call(call_id: str, policy: str = "support-90d") -> dict[str, str]:
    return {"call_id": call_id, "agent_id": "agent_a", "policy": policy}


# Three runs: a clean one, one killed with call c6's intent open, and the next one,
# which resolves c6 at its start under its own run_id. Line numbers are 1-based.
RECORDS: list[dict[str, Any]] = [
    _line("2026-11-01T02:00:00Z", "run-1", "run_started", dry_run=False),  # 1
    _line("2026-11-01T02:00:01Z", "run-1", "delete_requested", **_call("c1")),  # 2
    _line("2026-11-01T02:00:01Z", "run-1", "delete_requested", **_call("c2", "sales-30d")),  # 3
    _line(
        "2026-11-01T02:00:02Z",
        "run-1",
        "deleted",
        redacted_at="2026-11-01T02:00:02.123Z",
        **_call("c2", "sales-30d"),
    ),  # 4
    _line(
        "2026-11-01T02:00:02Z",
        "run-1",
        "deleted",
        redacted_at="2026-11-01T02:00:02Z",
        **_call("c1"),
    ),  # 5
    _line("2026-11-01T02:00:03Z", "run-1", "delete_requested", **_call("c3")),  # 6
    _line("2026-11-01T02:00:03Z", "run-1", "not_found", **_call("c3")),  # 7
    _line("2026-11-01T02:00:04Z", "run-1", "delete_requested", **_call("c4")),  # 8
    _line("2026-11-01T02:00:09Z", "run-1", "failed", error="HTTP 503: gave up", **_call("c4")),  # 9
    _line("2026-11-01T02:00:10Z", "run-1", "run_finished", counts={"deleted": 2}),  # 10
    _line("2026-11-02T02:00:00Z", "run-2", "run_started", dry_run=False),  # 11
    _line("2026-11-02T02:00:01Z", "run-2", "delete_requested", **_call("c5")),  # 12
    _line(
        "2026-11-02T02:00:01Z",
        "run-2",
        "already_redacted",
        redacted_at="2026-10-30T08:00:00+00:00",
        **_call("c5"),
    ),  # 13
    _line("2026-11-02T02:00:02Z", "run-2", "delete_requested", **_call("c6")),  # 14 (killed)
    _line("2026-11-03T02:00:00Z", "run-3", "run_started", dry_run=False),  # 15
    _line(
        "2026-11-03T02:00:00Z",
        "run-3",
        "deleted",
        redacted_at="2026-11-02T02:00:02.5Z",
        **_call("c6"),
    ),  # 16 (recovery)
    _line("2026-11-03T02:00:01Z", "run-3", "delete_requested", **_call("c7")),  # 17
    _line(
        "2026-11-03T02:00:02Z",
        "run-3",
        "deleted",
        redacted_at="2026-11-03T02:00:02Z",
        **_call("c7"),
    ),  # 18
    _line("2026-11-03T02:00:03Z", "run-3", "run_finished", counts={"deleted": 2}),  # 19
    _line("2026-11-04T02:00:00Z", "run-4", "run_started", dry_run=True),  # 20
    _line("2026-11-04T02:00:05Z", "run-4", "run_finished", counts={}),  # 21
]


def sealed_lines(
    records: list[dict[str, Any]], *, previous: str = GENESIS_HASH, seq: int = 0
) -> list[bytes]:
    """Chain records the way a run does and return the encoded lines."""
    out = []
    for record in records:
        seq += 1
        sealed = seal(previous, seq, record)
        previous = sealed["hash"]
        out.append(encode_line(sealed))
    return out


def write(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"".join(lines))
    return path


def edited(line: bytes, **changes: Any) -> bytes:
    """The line with some values changed and its `hash` left as it was."""
    record = json.loads(line)
    record.update(changes)
    return json.dumps(record, sort_keys=True, separators=(",", ":")).encode() + b"\n"


def forged(record: dict[str, Any], *, previous: str, seq: int) -> bytes:
    """A line whose own hash is computed correctly, chained onto `previous`."""
    body = {**record, "seq": seq}
    return encode_line({**body, "hash": chain_hash(previous, body)})


def hash_of(line: bytes) -> str:
    value = json.loads(line)["hash"]
    assert isinstance(value, str)
    return value
