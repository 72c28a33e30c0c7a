"""Shared by the end-to-end tests of `retention run`: a sandbox, the CLI run in-process
as a user runs it, the expected deletions computed by hand from the dataset (never by
the policy engine), and readers for the audit log and the CSV report."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from fnmatch import fnmatchcase
from pathlib import Path
from typing import IO, Any, Final

import pytest

from retention.api.models import TERMINAL_STATUSES
from retention.cli import main
from retention.sandbox import Dataset, DatasetSpec, SandboxApp, serve_in_thread

API_KEY: Final = "sk_car_sandbox"
NOW_TEXT: Final = "2026-06-01T00:00:00Z"
NOW: Final = datetime.fromisoformat("2026-06-01T00:00:00+00:00")

# Terminal calls older than 30 days are deleted, except those of billing agents (held).
POLICY_YAML: Final = """\
policies:
  - name: old-30d
    delete_after: 30d
  - name: billing-hold
    retain_for: forever
    match:
      agents: ["billing*"]
"""


def expected_deletions(dataset: Dataset, now: datetime = NOW) -> set[str]:
    """POLICY_YAML, written out by hand from DESIGN.md's rules. Agents match by the
    name GET /agents gives (a call's own agent_name may be null)."""
    names = {agent.id: agent.name for agent in dataset.agents()}
    due: set[str] = set()
    for call in dataset.iter_all_calls(transcripts=False):
        origin = call.start_time if call.start_time is not None else call.end_time
        if call.status not in TERMINAL_STATUSES or call.redacted_at is not None:
            continue
        if call.zdr_enabled or origin is None or now - origin < timedelta(days=30):
            continue
        agent_name = call.agent_name or names.get(call.agent_id, "")
        if fnmatchcase(agent_name, "billing*") or fnmatchcase(call.agent_id, "billing*"):
            continue
        due.add(call.id)
    return due


def make_dataset(calls: int = 400, agents: int = 6, seed: int = 7) -> Dataset:
    return Dataset(DatasetSpec(seed=seed, agents=agents, calls=calls, now=NOW))


@dataclass
class Outcome:
    code: int
    out: str
    err: str


@dataclass
class Workspace:
    """A run's files, in a temporary directory."""

    root: Path

    @property
    def policies(self) -> Path:
        return self.root / "policies.yaml"

    @property
    def audit_log(self) -> Path:
        return self.root / "audit.jsonl"

    def report(self, extension: str = "csv") -> Path:
        return self.root / f"report.{extension}"

    def lines(self) -> list[dict[str, Any]]:
        return read_audit(self.audit_log)


def read_audit(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    space = Workspace(tmp_path)
    space.policies.write_text(POLICY_YAML)
    return space


@contextmanager
def sandbox(app: SandboxApp) -> Iterator[str]:
    with serve_in_thread(app) as url:
        yield url


def run_cli(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    space: Workspace,
    url: str,
    *flags: str,
    key: str | None = API_KEY,
) -> Outcome:
    """`retention run` in-process, as a user would type it; returns its exit status."""
    monkeypatch.delenv("CARTESIA_BASE_URL", raising=False)
    for name in list(os.environ):
        if name.startswith("RETENTION_"):
            monkeypatch.delenv(name)
    if key is None:
        monkeypatch.delenv("CARTESIA_API_KEY", raising=False)
    else:
        monkeypatch.setenv("CARTESIA_API_KEY", key)
    args = [
        "run",
        "--policies",
        str(space.policies),
        "--audit-log",
        str(space.audit_log),
        "--base-url",
        url,
        "--now",
        NOW_TEXT,
        *flags,
        *first_run_cap(flags),
    ]
    capsys.readouterr()
    try:
        main(args)
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    else:  # pragma: no cover - main always exits
        code = 0
    captured = capsys.readouterr()
    return Outcome(code, captured.out, captured.err)


# The safety belts refuse an uncapped first execute run (exit 2): tests of the run's
# other rules cap it far above any dataset they use (tests/plan test the belts).
NO_CAP: Final = ("--max-deletes", "100000000")


def first_run_cap(flags: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """NO_CAP for an execute run that gives no --max-deletes of its own."""
    return NO_CAP if "--execute" in flags and "--max-deletes" not in flags else ()


def deletes_sent(app: SandboxApp) -> int:
    return sum(n for (route, _), n in app.stats.requests.items() if route.startswith("DELETE"))


def requests_sent(app: SandboxApp) -> int:
    return sum(app.stats.requests.values())


# -- subprocesses, for signals ----------------------------------------------------


def spawn(args: list[str], *, env: dict[str, str], cwd: Path, stdout: IO[bytes] | int) -> Any:
    return subprocess.Popen(
        [sys.executable, "-m", "retention", *args],
        env=env,
        cwd=cwd,
        stdout=stdout,
        stderr=subprocess.PIPE,
    )


def start_sandbox_process(
    tmp: Path, *, calls: int, latency_ms: float, seed: int = 7, agents: int = 6
) -> tuple[Any, str]:
    """`retention sandbox` in its own process; returns it and its base URL."""
    out = (tmp / "sandbox.out").open("wb")
    proc = spawn(
        [
            "sandbox",
            "--port",
            "0",
            "--seed",
            str(seed),
            "--agents",
            str(agents),
            "--calls",
            str(calls),
            "--now",
            NOW_TEXT,
            "--latency-ms",
            str(latency_ms),
        ],
        env=clean_env(),
        cwd=tmp,
        stdout=out,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        text = (tmp / "sandbox.out").read_text()
        if text.startswith("serving "):
            return proc, text.split()[1]
        if proc.poll() is not None:
            raise RuntimeError(f"sandbox exited: {proc.stderr.read().decode()[:500]}")
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("sandbox did not start")


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("RETENTION_", "CARTESIA_", "JOB_COMPLETION"))
    }
    env.update(extra)
    return env


def wait_for_lines(path: Path, count: int, proc: Any, timeout: float = 60) -> None:
    """Until the audit log has `count` lines (or the process ended)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_bytes().count(b"\n") >= count:
            return
        if proc.poll() is not None:
            return
        time.sleep(0.02)
    raise AssertionError(f"{path} never reached {count} lines")
