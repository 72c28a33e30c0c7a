"""The command line's defaults are RunSettings' (and the belts', the forecast's, apply's):
what `--help` shows is what a run given no flag does."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import click
import pytest

from retention.cli import cli
from retention.plan.command import DEFAULT_MAX_PLAN_AGE
from retention.run.belts import SurgeGuard
from retention.run.command import RunSettings
from retention.run.forecast import parse_horizon

SETTINGS_DEFAULTS = {
    f.name: f.default
    for f in dataclasses.fields(RunSettings)
    if f.default is not dataclasses.MISSING
}
# option name -> RunSettings field of the same meaning
SAME_FIELD = ["audit_log", "grace_period", "progress_interval", "timeout"]


def option_defaults(command: str) -> dict[str, Any]:
    """What the command is given with no flag at all (None: unset)."""
    found = cli.commands[command]
    assert isinstance(found, click.Command)
    return dict(found.make_context(command, [], resilient_parsing=True).params)


@pytest.fixture(autouse=True)
def no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Options read RETENTION_* and CARTESIA_* variables: none of them here."""

    for name in list(os.environ):
        if name.startswith(("RETENTION_", "CARTESIA_")):
            monkeypatch.delenv(name)


@pytest.mark.parametrize("command", ["run", "plan", "apply"])
def test_the_command_line_shows_the_settings_defaults(command: str) -> None:
    shown = option_defaults(command)
    for name in SAME_FIELD:
        if name in shown:
            assert shown[name] == SETTINGS_DEFAULTS[name], name
    assert parse_horizon(shown["horizon"]) == SETTINGS_DEFAULTS["horizon_days"]
    # Options that are not set by default stay unset: a ceiling, a cap, a report.
    for name in ["concurrency", "rate", "max_deletes", "report"]:
        if name in shown:
            assert shown[name] is None and SETTINGS_DEFAULTS[name] is None, name


def test_the_belts_and_apply_defaults_are_the_ones_shown() -> None:
    shown = option_defaults("run")
    guard = SurgeGuard()
    assert (shown["surge_floor"], shown["surge_factor"]) == (guard.floor, guard.factor)
    assert option_defaults("apply")["max_plan_age"] == DEFAULT_MAX_PLAN_AGE
