"""The entry point's error mapping: one line and the error's exit code, no traceback,
also for user errors that surface from inside a task group."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from retention.cli import cli, main
from retention.errors import ExitCode, UserError


@pytest.fixture
def raising_command() -> Iterator[str]:
    """A command on the real group that fails as concurrent code does: in a group."""

    @cli.command("raise-in-group", hidden=True)
    def _raise() -> None:
        first = UserError("cannot read the audit log", where="audit.jsonl")
        raise BaseExceptionGroup("tasks", [ExceptionGroup("inner", [first, UserError("x")])])

    try:
        yield "raise-in-group"
    finally:
        cli.commands.pop("raise-in-group")


def test_user_errors_from_a_task_group_end_in_one_line(
    raising_command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main([raising_command])
    assert exited.value.code == ExitCode.BAD_INPUT
    err = capsys.readouterr().err
    assert err == "retention: error: audit.jsonl: cannot read the audit log\n"


def test_a_group_holding_anything_else_is_not_hidden() -> None:
    @cli.command("raise-mixed", hidden=True)
    def _raise() -> None:
        raise ExceptionGroup("tasks", [UserError("x"), RuntimeError("bug")])

    try:
        with pytest.raises(ExceptionGroup):
            main(["raise-mixed"])
    finally:
        cli.commands.pop("raise-mixed")


def test_bad_flags_are_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["run", "--rate", "nan"])
    assert exited.value.code == ExitCode.BAD_INPUT
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "--rate" in err


@pytest.mark.parametrize("call_id", ["../agents", "a/b", "a?b", "a#b", "a%2F", "a b", "x" * 129])
def test_explain_refuses_an_unusable_call_id_before_anything(
    call_id: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # No key and an unreachable base URL: the id is refused first, before either is used.
    monkeypatch.delenv("CARTESIA_API_KEY", raising=False)
    with pytest.raises(SystemExit) as exited:
        main(["explain", call_id, "--base-url", "http://127.0.0.1:9"])
    assert exited.value.code == ExitCode.BAD_INPUT
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("retention: error: CALL_ID: not a usable call id")


def test_a_runs_fatal_line_is_json_off_a_terminal_and_text_on_one(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import json
    import os
    import pty

    args = ["run", "--policies", "no-such-policies.yaml"]
    with pytest.raises(SystemExit) as exited:
        main(args)
    assert exited.value.code == ExitCode.BAD_INPUT
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines, "no output"
    records = [json.loads(line) for line in lines]  # every line: one JSON object
    assert records[-1]["event"] == "run.fatal"
    assert records[-1]["level"] == "error"
    assert records[-1]["exit_code"] == ExitCode.BAD_INPUT
    assert "no-such-policies.yaml" in records[-1]["error"]

    leader, follower = pty.openpty()
    with os.fdopen(follower, "w") as terminal:
        monkeypatch.setattr("sys.stderr", terminal)
        with pytest.raises(SystemExit):
            main(args)
        terminal.flush()
    text = os.read(leader, 4096).decode()
    os.close(leader)
    assert text.startswith("retention: error: ") and "no-such-policies.yaml" in text
