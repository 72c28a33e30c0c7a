"""The README says only what is true: its commands, exit codes, metrics and files."""

from __future__ import annotations

import re
from pathlib import Path

from retention.errors import ExitCode
from retention.run.metrics import RunExtras, build_registry
from retention.run.stats import RunStats

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
DEMO_COMMAND = "python3 -m venv .venv && .venv/bin/pip install -q -e . && .venv/bin/retention demo"


def section(title: str, level: int = 2) -> str:
    marks = "#" * level
    match = re.search(
        rf"^{marks} {re.escape(title)}\n(.*?)(?=^#{{1,{level}}} |\Z)", README, re.M | re.S
    )
    assert match is not None, f"README has no section {title!r}"
    return match.group(1)


def code_blocks(text: str) -> list[str]:
    return [block.strip() for block in re.findall(r"^```[a-z]*\n(.*?)^```", text, re.M | re.S)]


def test_quickstart_is_exactly_two_commands() -> None:
    blocks = code_blocks(section("Quickstart"))
    assert len(blocks) == 2
    assert all("\n" not in block for block in blocks)
    assert blocks[0] == DEMO_COMMAND


def test_quickstart_test_command_is_what_ci_runs() -> None:
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    ci_command = ci_lines[-1]
    assert ci_command.startswith("python3 -m venv .venv")
    assert code_blocks(section("Quickstart"))[1] == ci_command


def test_quickstart_test_command_installs_the_lock_with_hashes() -> None:
    command = code_blocks(section("Quickstart"))[1]
    assert ".venv/bin/pip install -q -r requirements/lock.txt && " in command
    # The project itself, without resolving anything beyond the lock.
    assert ".venv/bin/pip install -q --no-deps --no-build-isolation -e . && " in command


def test_exit_code_table_matches_the_code() -> None:
    rows = re.findall(r"^\| (\d+) \| ", section("Exit codes", level=3), re.M)
    assert [int(code) for code in rows] == sorted(int(code) for code in ExitCode)


def test_metric_table_lists_exactly_what_is_exported() -> None:
    stats = RunStats(dry_run=False)
    stats.exit_code = 0
    registry = build_registry(stats, extra=RunExtras(policies=("p",), audit_bytes=1))
    exported = {metric.name for metric in registry.collect()}
    documented = set(re.findall(r"^\| `(retention_\w+)` \|", section("Metrics", level=3), re.M))
    assert documented == exported


def test_files_named_in_the_readme_exist() -> None:
    named = set(re.findall(r"`((?:cron|policies|docs|requirements)/[\w./-]*|Dockerfile)`", README))
    assert named
    for name in named:
        assert (ROOT / name).exists(), name


def _command_lines() -> list[str]:
    """Shell lines in the README's code blocks that call `retention`."""
    lines: list[str] = []
    for block in code_blocks(README):
        joined = block.replace("\\\n", " ")
        for line in joined.splitlines():
            for part in re.split(r"&&|\|", line):
                words = part.split("#")[0].split()
                while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
                    words.pop(0)  # VAR=value before the command
                if words and words[0].endswith("retention") and words[0] != "cartesia-retention":
                    lines.append(" ".join(words[1:]))
    return lines


def test_commands_in_the_readme_exist_with_their_flags() -> None:
    import click

    from retention.cli import cli

    lines = _command_lines()
    assert "demo" in lines
    for line in lines:
        command: click.Command = cli
        words = line.split()
        while isinstance(command, click.Group) and words and words[0] in command.commands:
            command = command.commands[words.pop(0)]
        assert command is not cli, f"unknown command in README: retention {line}"
        known = {opt for p in command.params for opt in getattr(p, "opts", [])} | {"--help"}
        flags = {w.split("=")[0] for w in words if w.startswith("--")}
        assert flags <= known, f"retention {line}: unknown {sorted(flags - known)}"


def test_contents_links_point_at_sections() -> None:
    headings = {
        re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-")
        for h in re.findall(r"^#{2,3} (.+)$", README, re.M)
    }
    anchors = set(re.findall(r"\]\(#([\w-]+)\)", README))
    assert anchors and anchors <= headings, anchors - headings
