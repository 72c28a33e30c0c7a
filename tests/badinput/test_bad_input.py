"""Every mistake in policies, flags and environment: exit 2, one clear line on
stderr naming the cause, no traceback, and not one DELETE sent."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.faults.support import API_KEY, Sandbox, invoke, run_argv

BAD_POLICIES: dict[str, str] = {
    "yaml-syntax-error": "policies:\n  - name: a\n    delete_after: 3d\n   match: [\n",
    "unknown-key": "policies:\n  - name: a\n    delet_after: 3d\n",
    "both-rules": "policies:\n  - name: a\n    delete_after: 3d\n    retain_for: 5d\n",
    "neither-rule": "policies:\n  - name: a\n    match: {}\n",
    "duration-in-words": "policies:\n  - name: a\n    delete_after: 10 days\n",
    "negative-duration": "policies:\n  - name: a\n    delete_after: -3d\n",
    "unknown-unit": "policies:\n  - name: a\n    delete_after: 3x\n",
    "duration-number": "policies:\n  - name: a\n    delete_after: 30\n",
    "forever-deletion": "policies:\n  - name: a\n    delete_after: forever\n",
    "unknown-region": "policies:\n  - name: a\n    delete_after: 3d\n    match: {regions: [MARS]}",
    # A region in lower case is accepted (`us` is US); these are refused instead.
    "yaml11-boolean": (
        "policies:\n  - name: a\n    retain_for: forever\n    match: {metadata: {hold: yes}}\n"
    ),
    "status-in-other-case": (
        "policies:\n  - name: a\n    delete_after: 3d\n    match: {statuses: [Completed]}\n"
    ),
    "non-terminal-status": (
        "policies:\n  - name: a\n    delete_after: 3d\n    match: {statuses: [started]}\n"
    ),
    "agents-mapping": "policies:\n  - name: a\n    delete_after: 3d\n    match: {agents: {x: 1}}\n",
    "metadata-list": "policies:\n  - name: a\n    delete_after: 3d\n    match: {metadata: [a]}\n",
    "unknown-match-key": "policies:\n  - name: a\n    delete_after: 3d\n    match: {agent: [x]}\n",
    "duplicate-names": (
        "policies:\n  - name: a\n    delete_after: 3d\n  - name: a\n    delete_after: 4d\n"
    ),
    "missing-name": "policies:\n  - delete_after: 3d\n",
    "empty-policy-list": "policies: []\n",
    "empty-file": "",
    "top-level-list": "- name: a\n  delete_after: 3d\n",
    "scalar-document": "just a string\n",
    "policy-is-string": "policies:\n  - support-90d\n",
    "null-policies": "policies:\n",
    "tab-indented": "policies:\n\t- name: a\n\t  delete_after: 3d\n",
}


@dataclass(frozen=True)
class Case:
    argv: list[str]
    env: Mapping[str, str | None]


Builder = Callable[[Path, str, Path], Case]


def base(url: str, policies: Path, tmp: Path, *extra: str) -> list[str]:
    return run_argv(url, policies, tmp / "audit.jsonl", *extra)


KEY = {"CARTESIA_API_KEY": API_KEY}


def flag(*extra: str, env: Mapping[str, str | None] | None = None) -> Builder:
    """A good command line plus `extra` flags (a later flag overrides an earlier one)."""
    return lambda tmp, url, good: Case(base(url, good, tmp, *extra), KEY if env is None else env)


def key_file(content: bytes | None) -> Builder:
    def build(tmp: Path, url: str, good: Path) -> Case:
        path = tmp / "key"
        if content is not None:
            path.write_bytes(content)
        return Case(base(url, good, tmp, "--api-key-file", str(path)), {})

    return build


def policies_at(make: Callable[[Path], Path]) -> Builder:
    return lambda tmp, url, good: Case(base(url, make(tmp), tmp), KEY)


def empty_dir(tmp: Path) -> Path:
    folder = tmp / "empty"
    folder.mkdir()
    (folder / "README.txt").write_text("not a policy file\n")
    return folder


def unreadable_dir(tmp: Path) -> Path:
    folder = tmp / "locked"
    folder.mkdir()
    (folder / "p.yaml").write_text("policies:\n  - name: a\n    delete_after: 3d\n")
    folder.chmod(0)
    return folder


def unreadable_file(tmp: Path) -> Path:
    path = tmp / "locked.yaml"
    path.write_text("policies:\n  - name: a\n    delete_after: 3d\n")
    path.chmod(0)
    return path


def yaml_named_directory(tmp: Path) -> Path:
    folder = tmp / "odd"
    (folder / "looks-like.yaml").mkdir(parents=True)  # unreadable as a file, even for root
    return folder


def dangling_symlink(tmp: Path) -> Path:
    folder = tmp / "links"
    folder.mkdir()
    (folder / "gone.yaml").symlink_to(tmp / "deleted-target.yaml")
    return folder


def binary_file(tmp: Path) -> Path:
    path = tmp / "binary.yaml"
    path.write_bytes(b"\xff\xfe\x00policies\x00\x81")
    return path


def duplicate_across_files(tmp: Path) -> Path:
    folder = tmp / "dupes"
    folder.mkdir()
    for name in ("a.yaml", "b.yml"):
        (folder / name).write_text("policies:\n  - name: same\n    delete_after: 3d\n")
    return folder


CASES: dict[str, Builder] = {
    "no-api-key": flag(env={}),
    "empty-api-key": flag(env={"CARTESIA_API_KEY": ""}),
    "blank-api-key": flag(env={"CARTESIA_API_KEY": "   "}),
    "empty-key-file": key_file(b""),
    "newline-key-file": key_file(b"\n"),
    "missing-key-file": key_file(None),
    "key-file-is-directory": lambda tmp, url, good: Case(
        base(url, good, tmp, "--api-key-file", str(tmp)), {}
    ),
    "api-key-non-ascii": flag(env={"CARTESIA_API_KEY": "sk_car_\u2603snow"}),
    "api-key-with-newline": flag(env={"CARTESIA_API_KEY": "sk_car_abc\nInjected: 1"}),
    "missing-policies-path": policies_at(lambda tmp: tmp / "nowhere"),
    "policies-dir-without-yaml": policies_at(empty_dir),
    "unreadable-policies-dir": policies_at(unreadable_dir),
    "unreadable-policy-file": policies_at(unreadable_file),
    "binary-policy-file": policies_at(binary_file),
    "directory-named-like-a-policy-file": policies_at(yaml_named_directory),
    "dangling-symlink-in-policies-dir": policies_at(dangling_symlink),
    "duplicate-names-across-files": policies_at(duplicate_across_files),
    "http-to-remote-host": flag("--base-url", "http://example.com"),
    "http-to-private-ip": flag("--base-url", "http://10.1.2.3:8080"),
    "base-url-not-a-url": flag("--base-url", "not a url"),
    "base-url-ftp": flag("--base-url", "ftp://127.0.0.1/"),
    "base-url-env-remote-http": lambda tmp, url, good: Case(
        [a for a in base(url, good, tmp) if a not in ("--base-url", url)],
        {**KEY, "CARTESIA_BASE_URL": "http://api.example.org"},
    ),
    "rate-zero": flag("--rate", "0"),
    "rate-negative": flag("--rate", "-1"),
    "rate-words": flag("--rate", "abc"),
    "rate-nan": flag("--rate", "nan"),
    "concurrency-zero": flag("--concurrency", "0"),
    "concurrency-negative": flag("--concurrency", "-4"),
    "concurrency-float": flag("--concurrency", "2.5"),
    "max-deletes-negative": flag("--max-deletes", "-1"),
    "max-deletes-words": flag("--max-deletes", "many"),
    "now-garbage": flag("--now", "yesterday"),
    "now-bad-month": flag("--now", "2026-13-01T00:00:00Z"),
    "now-empty": flag("--now", ""),
    "report-txt": flag("--report", "out.txt"),
    "report-no-extension": flag("--report", "report"),
    "shard-index-too-big": flag("--shard", "5/3"),
    "shard-zero-of-zero": flag("--shard", "0/0"),
    "shard-words": flag("--shard", "a/b"),
    "shard-and-shard-count": flag("--shard", "0/2", "--shard-count", "2"),
    "shard-count-without-job-index": flag("--shard-count", "2"),
    "shard-count-bad-job-index": flag(
        "--shard-count", "2", env={**KEY, "JOB_COMPLETION_INDEX": "two"}
    ),
    "grace-period-negative": flag("--grace-period", "-5"),
    "progress-interval-zero": flag("--progress-interval", "0"),
    "metrics-file-is-directory": flag("--metrics-file", "/"),
    "pushgateway-not-a-url": flag("--pushgateway", "not a url"),
    "unknown-flag": flag("--frobnicate"),
    "flag-missing-value": lambda tmp, url, good: Case([*base(url, good, tmp), "--rate"], KEY),
    "rate-env-garbage": flag(env={**KEY, "RETENTION_RATE": "fast"}),
    "concurrency-env-zero": flag(env={**KEY, "RETENTION_CONCURRENCY": "0"}),
    "audit-log-is-directory": lambda tmp, url, good: Case(
        [*base(url, good, tmp), "--audit-log", str(tmp)], KEY
    ),
}
CASES.update(
    {
        f"policy-{name}": policies_at(
            lambda tmp, text=text: _write(tmp / "bad.yaml", text)  # type: ignore[misc]
        )
        for name, text in BAD_POLICIES.items()
    }
)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def assert_one_clear_line(stderr: str) -> str:
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{stderr[-1500:]}"
    assert "error" in lines[0].lower()
    assert API_KEY not in lines[0]
    return lines[0]


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_exits_2_with_one_line(
    name: str,
    tmp_path: Path,
    no_delete: Sandbox,
    good_policies: Path,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if name.startswith("unreadable") and os.geteuid() == 0:
        pytest.skip("root reads files whatever their mode")
    case = CASES[name](tmp_path, no_delete.url, good_policies)
    monkeypatch.chdir(tmp_path)
    result = invoke(case.argv, capfd, monkeypatch, env=case.env)
    assert result.exit_code == 2, f"exit {result.exit_code}: {result.stderr[-1500:]}"
    assert_one_clear_line(result.stderr)


def test_policy_errors_name_file_and_line(
    tmp_path: Path,
    no_delete: Sandbox,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = _write(tmp_path / "typo.yaml", BAD_POLICIES["unknown-key"])
    result = invoke(base(no_delete.url, path, tmp_path), capfd, monkeypatch, env=KEY)
    assert result.exit_code == 2
    line = assert_one_clear_line(result.stderr)
    assert "typo.yaml" in line and ":3" in line


def test_the_good_command_line_is_good(
    tmp_path: Path,
    sandbox: Sandbox,
    good_policies: Path,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The base every case above breaks works as a dry run (so exit 2 means the mistake)."""
    argv = [a for a in base(sandbox.url, good_policies, tmp_path) if a != "--execute"]
    result = invoke(argv, capfd, monkeypatch, env=KEY)
    assert result.exit_code == 0, result.stderr[-1500:]
