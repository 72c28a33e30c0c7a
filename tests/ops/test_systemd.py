"""The systemd service and timer: what systemd itself says of them, and what they run."""

from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "cron" / "systemd"
SERVICE = UNITS / "cartesia-retention.service"
TIMER = UNITS / "cartesia-retention.timer"
FAILED = UNITS / "cartesia-retention-failed@.service"
INSTALLED_BINARY = "/opt/cartesia-retention/bin/retention"


def unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read_string(path.read_text())
    return parser


def analyze_verify(tmp_path: Path, sources: list[Path]) -> None:
    """`systemd-analyze verify` of these units finds nothing (skipped without systemd)."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:  # containers rarely have systemd; the static tests below still run
        pytest.skip("systemd-analyze not found (Debian package systemd)")
    retention = str(Path(sys.executable).parent / "retention")
    for source in sources:
        # verify checks that ExecStart's binary exists: point it at this install's.
        text = source.read_text().replace(INSTALLED_BINARY, retention)
        (tmp_path / source.name).write_text(text)
    result = subprocess.run(
        [analyze, "verify", "--man=no", *sorted(str(p) for p in tmp_path.iterdir())],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
        timeout=120,
    )
    # Unknown or misspelt keys are only warnings: any output at all is a failure.
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


def test_systemd_analyze_verify_finds_nothing(tmp_path: Path) -> None:
    analyze_verify(tmp_path, [SERVICE, TIMER, FAILED])


def test_timer_is_persistent_and_starts_the_service() -> None:
    timer = unit(TIMER)["Timer"]
    assert timer["Persistent"] == "true"  # a night missed while off runs at boot
    assert timer["OnCalendar"]
    assert timer.get("Unit", SERVICE.name) == SERVICE.name
    assert unit(TIMER)["Install"]["WantedBy"] == "timers.target"


def test_a_failed_run_starts_the_mail_unit() -> None:
    on_failure = unit(SERVICE)["Unit"]["OnFailure"]
    assert on_failure == "cartesia-retention-failed@%n.service"
    command = unit(FAILED)["Service"]["ExecStart"]
    assert "/usr/sbin/sendmail" in command and "%i" in command


def test_service_runs_the_same_job_as_the_cron_entry() -> None:
    service = unit(SERVICE)["Service"]
    assert service["Type"] == "oneshot"
    assert service["User"] == "retention"
    assert service["EnvironmentFile"] == "/etc/cartesia-retention/retention.env"
    argv = shlex.split(service["ExecStart"])
    assert argv[:3] == [INSTALLED_BINARY, "run", "--execute"]
    cron = (ROOT / "cron" / "retention.cron").read_text()
    for flag, value in zip(argv[3::2], argv[4::2], strict=True):
        assert f"{flag} {value}" in cron, f"{flag} {value} differs from the cron entry"
    # Everything it writes is writable under ProtectSystem=strict.
    writable = service["ReadWritePaths"].split()
    for flag in ("--audit-log", "--report", "--metrics-file"):
        path = argv[argv.index(flag) + 1]
        assert any(path.startswith(d + "/") for d in writable), path


def test_the_stop_timeout_outlasts_the_run_s_grace_period() -> None:
    service = unit(SERVICE)["Service"]
    assert service["KillMode"] == "mixed"
    assert int(service["TimeoutStopSec"]) > 20  # RETENTION_GRACE_PERIOD's default
