"""`retention audit certificate`: a sweep run against the sandbox over loopback, then the
certificate checked against the sandbox's own record of redactions and against the
dataset written out by hand (never by the policy engine)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from datetime import datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Final

import pytest

from retention.api.models import TERMINAL_STATUSES
from retention.cli import main
from retention.sandbox import Dataset, SandboxApp
from tests.audit.signed import make_key
from tests.e2e.support import (
    API_KEY,
    NOW,
    Outcome,
    Workspace,
    make_dataset,
    run_cli,
    sandbox,
    workspace,
)

__all__ = ["workspace"]  # the fixture, re-exported for pytest

SWEEP: Final = "erase-request-42"
SWEEP_AGENTS: Final = ("sales-outbound", "billing")
# The sweep erases every terminal call of two agents, whatever its age; billing's are
# held by the workspace's `billing-hold` (retain_for: forever).
SWEEP_YAML: Final = f"""\
policies:
  - name: {SWEEP}
    delete_after: 0d
    match:
      agents: {list(SWEEP_AGENTS)}
"""
HOLD_ONLY_YAML: Final = """\
policies:
  - name: billing-hold
    retain_for: forever
    match:
      agents: ["billing*"]
"""


def _eligible(dataset: Dataset, agent_name: str) -> set[str]:
    """Calls of the agent that a 0d rule finds due, by DESIGN.md's rules, by hand."""
    agent_id = next(a.id for a in dataset.agents() if a.name == agent_name)
    due = set()
    for call in dataset.iter_calls(agent_id, transcripts=False):
        origin = call.start_time if call.start_time is not None else call.end_time
        if call.status not in TERMINAL_STATUSES or call.redacted_at is not None:
            continue
        if call.zdr_enabled or origin is None or NOW - origin < timedelta(0):
            continue
        due.add(call.id)
    return due


@pytest.fixture
def dataset() -> Dataset:
    return make_dataset(calls=120)


@pytest.fixture
def url(dataset: Dataset) -> Iterator[str]:
    with sandbox(SandboxApp(dataset, api_key=API_KEY)) as base_url:
        yield base_url


@pytest.fixture
def sweep_file(workspace: Workspace) -> Path:
    path = workspace.root / "sweep.yaml"
    path.write_text(SWEEP_YAML)
    return path


def certificate(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    log: Path,
    *flags: str,
) -> Outcome:
    monkeypatch.setenv("CARTESIA_API_KEY", API_KEY)
    for name in list(os.environ):
        if name.startswith("RETENTION_"):
            monkeypatch.delenv(name)
    capsys.readouterr()
    try:
        main(["audit", "certificate", str(log), *flags])
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    else:  # pragma: no cover - main always exits
        code = 0
    captured = capsys.readouterr()
    return Outcome(code, captured.out, captured.err)


def _sweep(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    workspace: Workspace,
    url: str,
    sweep_file: Path,
    *flags: str,
) -> Outcome:
    return run_cli(capsys, monkeypatch, workspace, url, "--policies", str(sweep_file), *flags)


def test_the_certificate_lists_what_the_sandbox_redacted_under_the_sweep(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    workspace: Workspace,
    url: str,
    sweep_file: Path,
    dataset: Dataset,
) -> None:
    erasable = _eligible(dataset, "sales-outbound")
    held = _eligible(dataset, "billing")
    assert erasable and held  # the dataset exercises both
    assert _sweep(capsys, monkeypatch, workspace, url, sweep_file).code == 0  # dry run
    assert _sweep(capsys, monkeypatch, workspace, url, sweep_file, "--execute").code == 0
    out = workspace.root / "certificate.json"
    outcome = certificate(
        capsys, monkeypatch, workspace.audit_log, "--policy", SWEEP, "--out", str(out)
    )
    assert outcome.code == 0, outcome.err
    cert = json.loads(out.read_text())

    # The sandbox's own record: the calls it redacted, and when.
    redacted_at = {
        call.id: call.redacted_at
        for agent in dataset.agents()
        for call in dataset.iter_calls(agent.id, transcripts=False)
        if call.id in dataset.redacted_ids()
    }
    listed = {row["call_id"]: row for row in cert["erased_calls"]}
    assert set(listed) == erasable == set(redacted_at) & erasable
    for call_id, row in listed.items():
        assert datetime.fromisoformat(row["redacted_at"]) == redacted_at[call_id]
        assert row["event"] == "deleted"
    assert cert["erased"]["calls"] == len(erasable)

    digest = hashlib.sha256(sweep_file.read_bytes()).hexdigest()
    assert [(f["path"], f["sha256"]) for f in cert["policy"]["files"]] == [
        (str(sweep_file), digest)
    ]
    dry, execute = cert["runs"]
    assert (dry["mode"], dry["would_delete"], dry["erased"]) == ("dry run", len(erasable), 0)
    assert (execute["mode"], execute["exit_code"], execute["stopped_by"]) == ("execute", 0, None)
    assert execute["due"] == execute["erased"] == len(erasable)
    assert (execute["failed"], execute["unconfirmed"], execute["not_attempted"]) == (0, 0, 0)
    for run in (dry, execute):
        assert run["held_by"] == {"billing-hold": len(held)}
    assert cert["open_intents"] == {"count": 0, "calls": []}
    assert "no signed checkpoint" in cert["checkpoint"]["note"]
    assert cert["api"] is None
    # The other policy's deletions are not this sweep's.
    others = dataset.redacted_ids() - erasable
    assert others and not others & set(listed)


def _personal_values(dataset: Dataset) -> set[str]:
    values: set[str] = set()
    for call in dataset.iter_all_calls(transcripts=True):
        for value in (call.metadata or {}).values():
            if isinstance(value, str) and len(value) >= 6:
                values.add(value)
        phone = call.telephony_params
        if phone is not None:
            values.update(v for v in (phone.to, phone.from_) if v)
        if call.summary:
            values.add(call.summary)
        for turn in call.transcript if isinstance(call.transcript, list) else []:
            if isinstance(turn, dict) and len(str(turn.get("text", ""))) >= 12:
                values.add(str(turn["text"]))
    return values


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.rows = 0
        self.open: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in ("meta", "br"):
            self.open.append(tag)
        self.rows += tag == "tr"

    def handle_endtag(self, tag: str) -> None:
        assert self.open.pop() == tag


def test_no_personal_value_reaches_any_format_and_the_api_read_confirms_each_call(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    workspace: Workspace,
    url: str,
    sweep_file: Path,
    dataset: Dataset,
) -> None:
    personal = _personal_values(dataset)  # before the run erases them
    assert len(personal) > 100
    erasable = _eligible(dataset, "sales-outbound")
    assert _sweep(capsys, monkeypatch, workspace, url, sweep_file, "--execute").code == 0
    texts = {}
    for suffix in ("md", "html", "json"):
        out = workspace.root / f"certificate.{suffix}"
        flags = ("--policy", SWEEP, "--api", "--base-url", url, "--out", str(out))
        outcome = certificate(capsys, monkeypatch, workspace.audit_log, *flags)
        assert outcome.code == 0, outcome.err
        texts[suffix] = out.read_text()
    for suffix, text in texts.items():
        leaked = [value for value in personal if value in text]
        assert not leaked, (suffix, leaked[:3])
    api = json.loads(texts["json"])["api"]
    assert (api["checked"], api["confirmed"]) == (len(erasable), len(erasable))
    assert {row["api"] for row in json.loads(texts["json"])["erased_calls"]} == {"confirmed"}
    tags = _Tags()
    tags.feed(texts["html"])
    assert not tags.open
    assert tags.rows >= len(erasable) + 1
    assert texts["md"].count("| confirmed |") == len(erasable)


def test_a_call_the_api_no_longer_shows_redacted_is_named_and_exits_1(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    workspace: Workspace,
    url: str,
    sweep_file: Path,
    dataset: Dataset,
) -> None:
    assert _sweep(capsys, monkeypatch, workspace, url, sweep_file, "--execute").code == 0
    undone = sorted(_eligible_before(dataset))[0]
    dataset.override(undone, {"redacted_at": None})
    out = workspace.root / "certificate.json"
    flags = ("--policy", SWEEP, "--api", "--base-url", url, "--out", str(out))
    outcome = certificate(capsys, monkeypatch, workspace.audit_log, *flags)
    assert outcome.code == 1
    assert "does not confirm 1 of" in outcome.err
    rows = {row["call_id"]: row for row in json.loads(out.read_text())["erased_calls"]}
    assert rows[undone]["api"] == "not_redacted"
    assert {row["api"] for cid, row in rows.items() if cid != undone} == {"confirmed"}


def _eligible_before(dataset: Dataset) -> set[str]:
    """The sweep's erased calls, read back from the sandbox's record."""
    agent_id = next(a.id for a in dataset.agents() if a.name == "sales-outbound")
    mine = {call.id for call in dataset.iter_calls(agent_id, transcripts=False)}
    return mine & dataset.redacted_ids()


def test_a_stopped_sweep_shows_its_pending_calls(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    workspace: Workspace,
    url: str,
    sweep_file: Path,
    dataset: Dataset,
) -> None:
    erasable = _eligible(dataset, "sales-outbound")
    # Only the sweep deletes here (and billing stays held), so every DELETE is the sweep's.
    workspace.policies.write_text(HOLD_ONLY_YAML)
    flags = ("--execute", "--max-deletes", "3", "--concurrency", "1")
    assert _sweep(capsys, monkeypatch, workspace, url, sweep_file, *flags).code == 3
    out = workspace.root / "certificate.json"
    outcome = certificate(
        capsys, monkeypatch, workspace.audit_log, "--policy", SWEEP, "--out", str(out)
    )
    assert outcome.code == 0, outcome.err
    cert = json.loads(out.read_text())
    [run] = cert["runs"]
    assert (run["exit_code"], run["stopped_by"]) == (3, "max_deletes")
    assert run["erased"] == len(cert["erased_calls"]) == len(_eligible_before(dataset)) == 3
    # The run stops when a worker takes a fourth due call; the listing stops with it.
    assert 4 <= run["due"] <= len(erasable)
    assert run["not_attempted"] == run["due"] - 3
    assert (run["failed"], run["unconfirmed"]) == (0, 0)


def test_the_signed_checkpoint_that_covers_the_sweep_is_named_with_its_key(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    workspace: Workspace,
    url: str,
    sweep_file: Path,
    tmp_path: Path,
) -> None:
    signer, public = make_key(tmp_path, "key")
    flags = ("--execute", "--signing-key", str(signer.path))
    assert _sweep(capsys, monkeypatch, workspace, url, sweep_file, *flags).code == 0
    lines = workspace.lines()
    last = lines[-1]
    assert last["event"] == "checkpoint"
    out = workspace.root / "certificate.json"
    cert_flags = ("--policy", SWEEP, "--public-key", str(public), "--out", str(out))
    outcome = certificate(capsys, monkeypatch, workspace.audit_log, *cert_flags)
    assert outcome.code == 0, outcome.err
    point = json.loads(out.read_text())["checkpoint"]
    assert (point["seq"], point["covers_seq"], point["key"]) == (
        last["seq"],
        last["covers_seq"],
        signer.key_id,
    )
    assert point["signature"] == f"signature checked against {public}"


def _sweep_log(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    workspace: Workspace,
    url: str,
    sweep_file: Path,
) -> bytes:
    assert _sweep(capsys, monkeypatch, workspace, url, sweep_file, "--execute").code == 0
    return workspace.audit_log.read_bytes()


@pytest.mark.parametrize("target", ["log", "lock", "key"])
def test_an_output_naming_the_log_its_lock_or_a_key_is_refused(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    workspace: Workspace,
    url: str,
    sweep_file: Path,
    tmp_path: Path,
    target: str,
) -> None:
    before = _sweep_log(capsys, monkeypatch, workspace, url, sweep_file)
    _, public = make_key(tmp_path, "key")
    named = {
        "log": workspace.audit_log,
        "lock": workspace.root / "audit.jsonl.lock",
        "key": public,
    }[target]
    kept = named.read_bytes()
    flags = ("--policy", SWEEP, "--public-key", str(public), "--out", str(named))
    outcome = certificate(capsys, monkeypatch, workspace.audit_log, *flags)
    assert outcome.code == 2
    assert outcome.err.count("\n") == 1 and "Traceback" not in outcome.err
    assert "--out" in outcome.err
    assert named.read_bytes() == kept
    assert workspace.audit_log.read_bytes() == before


def test_an_unknown_policy_exits_2_with_a_suggestion(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    workspace: Workspace,
    url: str,
    sweep_file: Path,
) -> None:
    _sweep_log(capsys, monkeypatch, workspace, url, sweep_file)
    out = workspace.root / "certificate.md"
    outcome = certificate(
        capsys, monkeypatch, workspace.audit_log, "--policy", "erase-request-24", "--out", str(out)
    )
    assert outcome.code == 2
    assert outcome.err.count("\n") == 1
    assert f"did you mean {SWEEP!r}?" in outcome.err
    assert not out.exists()


def test_a_broken_log_gives_no_certificate(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    workspace: Workspace,
    url: str,
    sweep_file: Path,
) -> None:
    lines = _sweep_log(capsys, monkeypatch, workspace, url, sweep_file).splitlines(keepends=True)
    record: dict[str, Any] = json.loads(lines[3])
    record["agent_id"] = "agent_forged"
    lines[3] = json.dumps(record, sort_keys=True, separators=(",", ":")).encode() + b"\n"
    workspace.audit_log.write_bytes(b"".join(lines))
    out = workspace.root / "certificate.md"
    outcome = certificate(
        capsys, monkeypatch, workspace.audit_log, "--policy", SWEEP, "--out", str(out)
    )
    assert outcome.code == 1
    assert "line 4" in outcome.err and "no certificate" in outcome.err
    assert not out.exists()
