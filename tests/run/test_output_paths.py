"""No output may name the audit log, its lock or torn file, a policy, or another output:
exit 2, naming the flag, before any request and before the log is touched."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from retention.audit.paths import OutputPathError, check_outputs
from retention.audit.writer import AuditLog
from retention.cli import main
from retention.errors import ExitCode
from retention.sandbox import SandboxApp
from tests.e2e.support import (
    API_KEY,
    Workspace,
    make_dataset,
    requests_sent,
    run_cli,
    sandbox,
    workspace,
)
from tests.run.spellings import ALL, DIRECTORY_TRICKS, NO_HARD_LINK, Trick, spell, tricks

__all__ = ["workspace"]  # a fixture

SPELLINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
RUN_OUTPUTS = ("--report", "--metrics-file")
KEPT = (
    "audit.jsonl",
    "audit.jsonl.lock",
    "audit.jsonl.torn",
    "audit.jsonl.resume",
    "policies.yaml",
)
# Names next to the kept files that are other files: never refused.
NEAR_MISSES = (
    "audit.jsonl.csv",
    "audit.json",
    "audit.jsonl.locks",
    ".audit.jsonl.lock",
    "audit.jsonl.torn.md",
    "audit.jsonl.resume.tmp",
    "policies.yaml.prom",
    "report.csv",
)


@contextmanager
def _scratch(*, exists: bool) -> Iterator[Path]:
    """`logs/` holding the audit log and its sidecars (as files when `exists`), the
    policy file, and `links/` for other names."""
    with tempfile.TemporaryDirectory() as root:
        base = Path(os.path.realpath(root))
        (base / "logs").mkdir()
        (base / "links").mkdir()
        (base / "logs" / "policies.yaml").write_text("policies: []\n")
        if exists:
            for name in KEPT[:3]:
                (base / "logs" / name).write_bytes(b"")
        yield base


@SPELLINGS
@given(
    flag=st.sampled_from(RUN_OUTPUTS),
    kept=st.sampled_from(KEPT),
    exists=st.booleans(),
    out_steps=tricks(ALL),
    log_steps=st.lists(st.sampled_from(NO_HARD_LINK), max_size=3),
)
def test_an_output_naming_a_kept_file_by_any_name_is_refused(
    flag: str, kept: str, exists: bool, out_steps: list[Trick], log_steps: list[Trick]
) -> None:
    with _scratch(exists=exists) as root:
        target = root / "logs" / kept
        if not target.exists():
            out_steps = [step for step in out_steps if step != "hardlink"] or ["dot"]
        output = spell(target, out_steps, root / "links")
        audit_log = spell(root / "logs" / "audit.jsonl", log_steps, root / "links")
        policy = root / "logs" / "policies.yaml"
        others = {name: None for name in RUN_OUTPUTS if name != flag}
        with pytest.raises(OutputPathError) as refused:
            check_outputs(audit_log, {flag: output, **others}, policies=[policy])
        assert refused.value.exit_code == ExitCode.BAD_INPUT
        assert str(refused.value).startswith(f"{flag} {output}: names ")


@SPELLINGS
@given(
    name=st.sampled_from(NEAR_MISSES),
    exists=st.booleans(),
    out_steps=tricks(ALL),
    log_steps=st.lists(st.sampled_from(NO_HARD_LINK), max_size=3),
)
def test_an_output_naming_another_file_passes(
    name: str, exists: bool, out_steps: list[Trick], log_steps: list[Trick]
) -> None:
    with _scratch(exists=exists) as root:
        target = root / "logs" / name
        if exists:
            target.write_bytes(b"")
        else:
            out_steps = [step for step in out_steps if step != "hardlink"] or ["dot"]
        output = spell(target, out_steps, root / "links")
        audit_log = spell(root / "logs" / "audit.jsonl", log_steps, root / "links")
        check_outputs(
            audit_log,
            {"--report": output, "--metrics-file": None},
            policies=[root / "logs" / "policies.yaml"],
        )


@SPELLINGS
@given(steps=tricks(DIRECTORY_TRICKS), exists=st.booleans())
def test_two_outputs_naming_one_file_are_refused(steps: list[Trick], exists: bool) -> None:
    with _scratch(exists=False) as root:
        report = root / "logs" / "out.json"
        if exists:
            report.write_bytes(b"")
        again = spell(report, steps, root / "links")
        with pytest.raises(OutputPathError) as refused:
            check_outputs(root / "logs" / "audit.jsonl", {"--report": report, "-m": again})
        assert str(refused.value).startswith(f"-m {again}: names the same file as --report")


# -- every command that writes a file, end to end -------------------------------------


def _existing_log(space: Workspace) -> bytes:
    with AuditLog(space.audit_log) as log:
        log.append([{"ts": "2026-06-01T00:00:00.000Z", "run_id": "r0", "event": "run_started"}])
    return space.audit_log.read_bytes()


def _name_for(space: Workspace, how: str) -> Path:
    """Another name for a file the run must keep, made as an operator might."""
    log = space.audit_log
    if how == "symlink to the log":
        (space.root / "r.csv").symlink_to(log)
        return space.root / "r.csv"
    if how == "hard link to the log":
        os.link(log, space.root / "m.prom")
        return space.root / "m.prom"
    if how == "symlink to the lock":
        (space.root / "r.json").symlink_to(log.with_name(log.name + ".lock"))
        return space.root / "r.json"
    if how == "the torn file through ..":
        (space.root / "sub").mkdir()
        return space.root / "sub" / ".." / (log.name + ".torn")
    assert how == "the policy file"
    return space.policies


@pytest.mark.parametrize(
    ("flag", "how"),
    [
        ("--report", "symlink to the log"),
        ("--metrics-file", "hard link to the log"),
        ("--report", "symlink to the lock"),
        ("--metrics-file", "the torn file through .."),
        ("--metrics-file", "the policy file"),
    ],
)
def test_a_run_whose_output_names_a_kept_file_exits_2_before_anything(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    workspace: Workspace,
    flag: str,
    how: str,
) -> None:
    before = _existing_log(workspace)
    policy = workspace.policies.read_bytes()
    output = _name_for(workspace, how)
    app = SandboxApp(make_dataset(calls=40), api_key=API_KEY)
    with sandbox(app) as url:
        result = run_cli(capsys, monkeypatch, workspace, url, "--execute", flag, str(output))
    assert result.code == ExitCode.BAD_INPUT
    fatal = json.loads(result.err.strip().splitlines()[-1])  # stderr is not a terminal
    assert fatal["event"] == "run.fatal" and fatal["exit_code"] == ExitCode.BAD_INPUT
    if flag == "--metrics-file" and output.suffix != ".prom":
        # Refused even earlier: the textfile collector reads only *.prom.
        assert fatal["error"].startswith(f"{flag}: {output}: must end in .prom")
    else:
        assert fatal["error"].startswith(f"{flag} {output}: names ")
    assert requests_sent(app) == 0
    assert workspace.audit_log.read_bytes() == before
    assert workspace.policies.read_bytes() == policy
    assert not (workspace.root / "audit.jsonl.torn").exists()


def test_a_run_with_two_outputs_on_one_file_exits_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, workspace: Workspace
) -> None:
    app = SandboxApp(make_dataset(calls=40), api_key=API_KEY)
    out = workspace.root / "out.json"
    (workspace.root / "metrics.prom").symlink_to(out)  # a .prom name for the same file
    metrics = str(workspace.root / "metrics.prom")
    with sandbox(app) as url:
        result = run_cli(
            capsys, monkeypatch, workspace, url, "--report", str(out), "--metrics-file", metrics
        )
    assert result.code == ExitCode.BAD_INPUT
    assert "--metrics-file" in result.err and "the same file as --report" in result.err
    assert requests_sent(app) == 0
    assert not workspace.audit_log.exists()  # the log was never opened


@pytest.mark.parametrize("how", ["symlink to the log", "hard link", "symlink to the lock"])
def test_audit_verify_never_writes_its_report_over_the_log(
    capsys: pytest.CaptureFixture[str], workspace: Workspace, how: str
) -> None:
    before = _existing_log(workspace)
    log = workspace.audit_log
    report = workspace.root / ("evidence.json" if how == "hard link" else "evidence.md")
    if how == "hard link":
        os.link(log, report)
    else:
        report.symlink_to(log if how == "symlink to the log" else log.with_name(log.name + ".lock"))
    with pytest.raises(SystemExit) as exit_info:
        main(["audit", "verify", str(log), "--report", str(report)])
    out, err = capsys.readouterr()
    assert exit_info.value.code == ExitCode.BAD_INPUT
    assert out == ""
    assert err.startswith(f"retention: error: --report {report}: names ")
    assert log.read_bytes() == before
