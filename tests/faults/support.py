"""What the fault and bad-input tests share: a sandbox in a thread, the CLI run
in-process as a user runs it, the expected deletions computed by hand from the
dataset (never by the policy engine), and a reader for the audit log."""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Final

import pytest

from retention.api.models import TERMINAL_STATUSES, Call
from retention.cli import main
from retention.sandbox.app import SandboxApp
from retention.sandbox.data import Dataset, DatasetSpec
from retention.sandbox.faults import Behaviour, Faults
from retention.sandbox.server import serve_in_thread

API_KEY: Final = "sk_car_sandbox"
NOW_TEXT: Final = "2026-06-01T00:00:00Z"
NOW: Final = datetime.fromisoformat("2026-06-01T00:00:00+00:00")

# Deletes US/EU calls after 30 days and failed calls after a week, except under a legal hold.
POLICY_YAML: Final = """\
policies:
  - name: us-eu-30d
    delete_after: 30d
    match:
      regions: [US, EU]
  - name: failed-7d
    delete_after: 7d
    match:
      statuses: [failed]
  - name: legal-hold
    retain_for: forever
    match:
      metadata:
        legal_hold: true
"""


def due_by_hand(call: Call, now: datetime = NOW) -> bool:
    """POLICY_YAML, written out from DESIGN.md's rules without the engine."""
    origin = call.start_time if call.start_time is not None else call.end_time
    if call.status not in TERMINAL_STATUSES or call.redacted_at is not None:
        return False
    if call.zdr_enabled or origin is None:
        return False
    age = now - origin
    due = (call.deployment_region in ("US", "EU") and age >= timedelta(days=30)) or (
        call.status == "failed" and age >= timedelta(days=7)
    )
    held = call.metadata is not None and str(call.metadata.get("legal_hold")).lower() == "true"
    return due and not held


def expected_ids(spec: DatasetSpec, now: datetime = NOW) -> frozenset[str]:
    """Due calls of a fresh dataset built from `spec`."""
    return frozenset(
        c.id for c in Dataset(spec).iter_all_calls(transcripts=False) if due_by_hand(c, now)
    )


def glob_any(value: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatchcase(value, p) for p in patterns)


@dataclass
class Sandbox:
    app: SandboxApp
    url: str

    @property
    def dataset(self) -> Dataset:
        return self.app.dataset

    def redactions(self) -> dict[str, datetime]:
        """Every call the sandbox redacted (that is still visible), with its `redacted_at`."""
        found: dict[str, datetime] = {}
        for call_id in self.dataset.redacted_ids():
            call = self.dataset.get_call(call_id, transcript=False)
            if call is not None and call.redacted_at is not None:
                found[call_id] = call.redacted_at
        return found

    def count(self, route_prefix: str, status: int | None = None) -> int:
        return sum(
            n
            for (route, answered), n in self.app.stats.requests.items()
            if route.startswith(route_prefix) and status in (None, answered)
        )


@contextmanager
def running_sandbox(
    spec: DatasetSpec, faults: Faults | None = None, behaviour: Behaviour | None = None
) -> Iterator[Sandbox]:
    app = SandboxApp(Dataset(spec), faults or Faults(), behaviour=behaviour or Behaviour())
    with serve_in_thread(app) as url:
        yield Sandbox(app, url)


@dataclass(frozen=True)
class Result:
    exit_code: int
    stdout: str
    stderr: str


def invoke(
    argv: list[str],
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    env: Mapping[str, str | None] | None = None,
) -> Result:
    """Run `retention ARGV` in this process as the console script does.

    Any exception escaping `main` (a traceback for a user) fails the test."""
    capfd.readouterr()
    with monkeypatch.context() as patch:
        for name in [n for n in os.environ if n.startswith(("RETENTION_", "CARTESIA_"))]:
            patch.delenv(name)
        for name, value in (env if env is not None else {"CARTESIA_API_KEY": API_KEY}).items():
            if value is None:
                patch.delenv(name, raising=False)
            else:
                patch.setenv(name, value)
        try:
            main(argv)
        except SystemExit as done:
            code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
        else:
            code = 0
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
    out, err = capfd.readouterr()
    return Result(code, out, err)


def run_argv(
    url: str, policies: Path, audit_log: Path, *extra: str, execute: bool = True
) -> list[str]:
    argv = [
        "run",
        "--policies",
        str(policies),
        "--base-url",
        url,
        "--now",
        NOW_TEXT,
        "--audit-log",
        str(audit_log),
        # The first-run safety belt: a cap far above any dataset (a later flag overrides it).
        *(("--max-deletes", "100000000") if execute else ()),
        *extra,
    ]
    return [*argv, "--execute"] if execute else argv


def write_policies(directory: Path, text: str = POLICY_YAML) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "policies.yaml"
    path.write_text(text)
    return path


def audit_records(path: Path) -> list[dict[str, Any]]:
    """Every line of the audit log, each a complete JSON object."""
    if not path.exists():
        return []
    data = path.read_bytes()
    assert not data or data.endswith(b"\n"), "the audit log ends in a torn line"
    return [json.loads(line) for line in data.splitlines()]


def logged_redactions(records: list[dict[str, Any]]) -> dict[str, set[datetime]]:
    """call_id -> every `redacted_at` the log records for it (deleted / already_redacted)."""
    found: dict[str, set[datetime]] = {}
    for record in records:
        if record.get("event") in ("deleted", "already_redacted"):
            when = datetime.fromisoformat(str(record["redacted_at"]).replace("Z", "+00:00"))
            found.setdefault(record["call_id"], set()).add(when)
    return found


@contextmanager
def when(condition: Callable[[], bool], action: Callable[[], object]) -> Iterator[threading.Event]:
    """Do `action` once `condition` holds (polled from a thread) while the body runs."""
    done, stop = threading.Event(), threading.Event()

    def watch() -> None:
        while not stop.is_set():
            if condition():
                action()
                done.set()
                return
            stop.wait(0.002)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield done
    finally:
        stop.set()
        watcher.join()
