"""The two-step schedule for cron and systemd: plan nightly into the review folder,
apply the newest approved plan the next night (before the new plan), never both at once."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

from tests.ops.test_schedules import _run_command_interface
from tests.ops.test_systemd import INSTALLED_BINARY, UNITS, analyze_verify, unit

ROOT = Path(__file__).resolve().parents[2]
CRONTAB = ROOT / "cron" / "retention-review.cron"
REVIEW = "/var/lib/cartesia-retention/review"
STEPS = ("apply", "plan")


def jobs() -> dict[str, tuple[int, str]]:
    """step -> (hour, shell command) of each cron entry."""
    found = {}
    for line in CRONTAB.read_text().splitlines():
        if not line or line.startswith("#") or re.match(r"^[A-Z_]+=", line):
            continue
        _, hour, _, _, _, user, command = line.split(None, 6)
        assert user == "retention"
        step = re.search(r"exec retention (\w+)", command)
        assert step is not None
        found[step.group(1)] = (int(hour), command)
    return found


def test_the_crontab_applies_before_it_plans_under_one_lock() -> None:
    entries = jobs()
    assert set(entries) == set(STEPS)
    assert entries["apply"][0] < entries["plan"][0]
    for step, (_, command) in entries.items():
        assert command.startswith("flock -n -E 6 /var/lib/cartesia-retention/cron.lock ")
        assert f"--review-dir {REVIEW}" in command
        assert ("--execute" in command) == (step == "apply")
        assert re.search(r"(?<!\\)%", command) is None  # cron's % must be escaped
        checked = subprocess.run(
            ["sh", "-n", "-c", command.replace("\\%", "%")], capture_output=True, text=True
        )
        assert checked.returncode == 0, checked.stderr
        flags, _ = _run_command_interface(step)
        args = command.split(f"exec retention {step}", 1)[1].split("'", 1)[0]
        used = set(re.findall(r"(--[a-z0-9-]+)", args))
        assert used <= flags, used - flags
    assert "sk_car_" not in CRONTAB.read_text()


def test_the_systemd_units_run_the_same_steps_as_the_crontab() -> None:
    entries = jobs()
    hours = {}
    for step in STEPS:
        service = unit(UNITS / f"cartesia-retention-{step}.service")["Service"]
        argv = shlex.split(service["ExecStart"])
        assert argv[:2] == [INSTALLED_BINARY, step]
        for flag, value in zip(argv[2::2], argv[3::2], strict=False):
            if flag.startswith("--") and not value.startswith("--"):
                assert f"{flag} {value}" in entries[step][1], flag
        assert ("--execute" in argv) == (step == "apply")
        writable = service["ReadWritePaths"].split()
        assert any(REVIEW.startswith(d + "/") for d in writable)
        timer = unit(UNITS / f"cartesia-retention-{step}.timer")["Timer"]
        assert timer["Persistent"] == "true"
        hours[step] = int(timer["OnCalendar"].split()[1].split(":")[0])
    assert hours == {step: entries[step][0] for step in STEPS}


def test_systemd_analyze_verify_finds_nothing_in_the_two_step_units(tmp_path: Path) -> None:
    names = [f"cartesia-retention-{step}.{kind}" for step in STEPS for kind in ("service", "timer")]
    analyze_verify(
        tmp_path, [UNITS / name for name in [*names, "cartesia-retention-failed@.service"]]
    )
