"""Random policy documents and random command lines: whatever they say, the
tool answers with an exit code and a message, never a traceback."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from retention.sandbox.data import DatasetSpec
from tests.faults.support import (
    NOW,
    Sandbox,
    invoke,
    running_sandbox,
    write_policies,
)

KEYS = (
    "policies",
    "name",
    "description",
    "delete_after",
    "retain_for",
    "match",
    "agents",
    "regions",
    "statuses",
    "metadata",
    "env",
    "legal_hold",
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(
        [
            "0d",
            "90d",
            "12h",
            "3w",
            "forever",
            "-1d",
            "1y",
            "10 days",
            "US",
            "EU",
            "APAC",
            "*",
            "[",
            "completed",
            "started",
        ]
    ),
    st.text(max_size=12),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=6)), inner, max_size=5),
    ),
    max_leaves=25,
)
POLICY = st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=6)
DURATION = st.builds(
    lambda n, unit: f"{n}{unit}", st.integers(min_value=0, max_value=900), st.sampled_from("hdw")
)
# Well-formed policies with random (valid) contents, so runs get past validation too.
VALID_POLICY = st.fixed_dictionaries(
    {
        "name": st.text("abcdefgh-", min_size=1, max_size=10),
        "delete_after": DURATION,
    },
    optional={
        "match": st.fixed_dictionaries(
            {},
            optional={
                "agents": st.lists(
                    st.sampled_from(["support-*", "billing", "*", "?ales*", "[!x]*"])
                ),
                "regions": st.lists(st.sampled_from(["US", "EU", "APAC"]), min_size=1),
                "statuses": st.lists(st.sampled_from(["completed", "failed"]), min_size=1),
                "metadata": st.dictionaries(
                    st.sampled_from(["env", "tier", "legal_hold", "priority", "x"]),
                    st.one_of(SCALARS, st.lists(SCALARS, max_size=3)),
                    max_size=3,
                ),
            },
        )
    },
)
RETAIN_POLICY = st.builds(
    lambda p, d: {"name": p["name"] + "-hold", "retain_for": d, "match": p.get("match", {})},
    VALID_POLICY,
    st.one_of(DURATION, st.just("forever")),
)
DOCUMENT = st.one_of(
    st.fixed_dictionaries({"policies": st.lists(POLICY, max_size=4)}),
    st.fixed_dictionaries(
        {"policies": st.lists(st.one_of(VALID_POLICY, RETAIN_POLICY), min_size=1, max_size=5)}
    ),
    VALUES,
)


@st.composite
def policy_text(draw: st.DrawFn) -> str:
    text = yaml.safe_dump(draw(DOCUMENT), allow_unicode=True)
    if draw(st.booleans()):  # damage it: cut, or splice in random characters
        cut = draw(st.integers(min_value=0, max_value=len(text)))
        text = text[:cut] + draw(st.text(max_size=8)) + text[cut:]
    return text


@pytest.fixture(scope="module")
def fuzz_sandbox() -> Iterator[Sandbox]:
    with running_sandbox(DatasetSpec(seed=3, agents=2, calls=30, now=NOW)) as running:
        yield running


FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@FUZZ
@given(text=policy_text())
def test_random_policy_documents_never_crash_validate(
    text: str, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "p.yaml"
        path.write_text(text)
        result = invoke(["validate", str(path)], capfd, monkeypatch)
    event(f"exit {result.exit_code}")
    assert result.exit_code in (0, 1, 2), result.stderr[-1500:]
    assert "Traceback" not in result.stderr + result.stdout


@settings(FUZZ, max_examples=25)
@given(text=policy_text())
def test_random_policy_documents_never_crash_a_dry_run(
    text: str,
    fuzz_sandbox: Sandbox,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "p.yaml"
        path.write_text(text)
        argv = ["run", "--policies", str(path), "--base-url", fuzz_sandbox.url]
        result = invoke([*argv, "--audit-log", str(Path(tmp) / "a.jsonl")], capfd, monkeypatch)
    event(f"exit {result.exit_code}")
    assert result.exit_code in (0, 2), result.stderr[-1500:]
    assert "Traceback" not in result.stderr + result.stdout


FLAG_VALUES: dict[str, st.SearchStrategy[str]] = {
    "--rate": st.sampled_from(["1000", "0", "-1", "abc", "nan", "1e9", "0.5", ""]),
    "--concurrency": st.sampled_from(["8", "0", "-3", "1.5", "x", "100000"]),
    "--max-deletes": st.sampled_from(["0", "1", "-1", "lots", "5"]),
    "--now": st.sampled_from(
        [
            "2026-06-01T00:00:00Z",
            "2026-06-01",
            "garbage",
            "",
            "2026-02-30T00:00:00Z",
            "9999-12-31T23:59:59+14:00",
        ]
    ),
    "--report": st.sampled_from(["r.csv", "r.json", "r.md", "r.txt", "r", "nodir/r.csv"]),
    "--shard": st.sampled_from(["0/1", "1/2", "5/3", "0/0", "-1/2", "a/b", "1"]),
    "--base-url": st.sampled_from(["http://example.com", "ftp://x", "not a url", ""]),
    "--api-key-file": st.sampled_from(["/nonexistent/key", "", "."]),
    "--frobnicate": st.just("1"),
}


@st.composite
def command_line(draw: st.DrawFn) -> list[str]:
    argv: list[str] = []
    for name in draw(st.lists(st.sampled_from(sorted(FLAG_VALUES)), max_size=4)):
        argv += [name, draw(FLAG_VALUES[name])]
    if draw(st.booleans()):
        argv.append("--execute")
    if draw(st.booleans()) and argv:  # a flag left without its value
        argv.pop()
    return argv


@settings(FUZZ, max_examples=40)
@given(extra=command_line())
def test_random_command_lines_never_crash(
    extra: list[str],
    fuzz_sandbox: Sandbox,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        monkeypatch.chdir(tmp)
        policies = write_policies(Path(tmp) / "policies")
        argv = ["run", "--policies", str(policies), "--base-url", fuzz_sandbox.url]
        argv += ["--audit-log", str(Path(tmp) / "a.jsonl"), *extra]
        result = invoke(argv, capfd, monkeypatch)
    event(f"exit {result.exit_code}")
    assert result.exit_code in (0, 1, 2, 3), result.stderr[-1500:]
    assert "Traceback" not in result.stderr + result.stdout
    if result.exit_code == 2:
        assert len([ln for ln in result.stderr.splitlines() if ln.strip()]) == 1, result.stderr
