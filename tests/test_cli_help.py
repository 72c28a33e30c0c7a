"""What `--help` tells an operator, and how a bad environment value is reported."""

from __future__ import annotations

import json
import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from retention.cli import cli, main
from retention.errors import ExitCode

RUN = cli.commands["run"]
# Options of `run` that no environment variable sets: --execute must be typed (a
# variable left in an env file must never turn dry runs into deletions); --base-url's
# variable is read with the key (its help names it); --now is for tests and replays.
RUN_OPTIONS_WITHOUT_VARIABLE = {"--execute", "--now", "--base-url", "--help"}


def help_text(*args: str) -> str:
    result = CliRunner().invoke(cli, [*args, "--help"], terminal_width=100)
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())  # unwrapped: one space between words


@pytest.mark.parametrize("command", [(), ("run",)], ids=["retention", "run"])
def test_help_lists_every_exit_code(command: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [*command, "--help"], terminal_width=100)
    listed = re.findall(r"^ +(\d) +\S", result.output.split("Exit codes:")[1], re.M)
    assert [int(code) for code in listed] == [int(code) for code in ExitCode]


def test_run_help_names_each_option_s_environment_variable() -> None:
    text = help_text("run")
    for param in RUN.params:
        if not isinstance(param, click.Option):
            continue
        if param.envvar is None:
            assert set(param.opts) <= RUN_OPTIONS_WITHOUT_VARIABLE, param.opts
            continue
        assert isinstance(param.envvar, str)
        assert re.search(rf"\[env var: {param.envvar}[;\]]", text), param.envvar
    assert "CARTESIA_BASE_URL" in text  # --base-url's variable, in its help


def test_the_policies_variable_documents_and_uses_its_separator(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert "RETENTION_POLICIES takes several, separated by ':'" in help_text("run")
    monkeypatch.setenv("RETENTION_POLICIES", "policies:/etc/retention/holds.yaml")
    context = RUN.make_context("run", [])
    assert context.params["policy_paths"] == (
        Path("policies"),
        Path("/etc/retention/holds.yaml"),
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("RETENTION_RATE", "abc"),
        ("RETENTION_CONCURRENCY", "0"),
        ("RETENTION_MAX_DELETES", "-1"),
        ("RETENTION_TIMEOUT", "nan"),
        ("RETENTION_SHARD_COUNT", "two"),
    ],
)
def test_a_bad_environment_value_names_the_variable_not_the_flag(
    variable: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(click.UsageError) as raised:
        RUN.make_context("run", [])
    message = raised.value.format_message()
    assert message.startswith(f"{variable}: ")
    assert repr(value) in message or value in message
    assert "--" not in message


def test_the_fatal_line_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RETENTION_RATE", "abc")
    with pytest.raises(SystemExit) as exited:
        main(["run"])
    assert exited.value.code == ExitCode.BAD_INPUT
    [line] = capsys.readouterr().err.splitlines()  # stderr is not a terminal: JSON
    assert json.loads(line)["error"] == "RETENTION_RATE: 'abc' is not a valid float range."


def test_a_bad_flag_value_names_the_flag_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RETENTION_RATE", raising=False)
    with pytest.raises(click.BadParameter) as raised:
        RUN.make_context("run", ["--rate", "abc"])
    message = raised.value.format_message()
    assert message.startswith("Invalid value for '--rate': ")
    assert "RETENTION_RATE" not in message


def test_every_sandbox_option_has_help() -> None:
    options = [p for p in cli.commands["sandbox"].params if isinstance(p, click.Option)]
    assert options
    for option in options:
        assert option.help, f"{option.opts} has no help text"
        assert option.help.strip()[-1] == ".", f"{option.opts}: help is not a sentence"
