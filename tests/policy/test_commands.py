"""`retention validate` and `retention explain` through the real CLI entry point;
explain reads calls from the sandbox over loopback HTTP."""

from __future__ import annotations

import hashlib
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from retention.cli import main
from retention.sandbox.app import SandboxApp
from retention.sandbox.data import Dataset, DatasetSpec
from retention.sandbox.server import serve_in_thread

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 3, 1, tzinfo=UTC)


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as done:
        main(argv)
    out, err = capsys.readouterr()
    return int(done.value.code or 0), out, err


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def test_validate_prints_the_shipped_policies_in_plain_words(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run(["validate", str(REPO / "policies")], capsys)
    assert code == 0, err
    for name in ("default-90d", "failed-30d", "eu-30d", "legal-hold", "enterprise-1y"):
        assert f"\n{name} (" in out
    assert "matches: every call (no conditions)" in out
    assert "keeps them forever, even when a deletion rule is due" in out
    assert "erasure" not in out  # policies/sweeps/ is not read, and says so
    warnings = [line for line in out.splitlines() if line.startswith("warning")]
    sweeps = REPO / "policies" / "sweeps"
    assert warnings == [
        f"warning: {sweeps}: not read (a subdirectory); only a directory's own *.yaml and "
        "*.yml files are"
    ]


def test_validate_the_erasure_sweep_with_the_legal_hold(capsys: pytest.CaptureFixture[str]) -> None:
    sweep = REPO / "policies" / "sweeps" / "erasure-example.yaml"
    code, out, _ = run(["validate", str(sweep), str(REPO / "policies" / "legal-hold.yaml")], capsys)
    assert code == 0
    assert "deletes them as soon as they are completed or failed" in out
    assert "metadata `customer_id` is `cus_1007`" in out


def test_validate_lists_every_problem_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = write(
        tmp_path / "bad.yaml",
        """\
        policies:
          - name: a
            delete_after: 10 days
          - name: b
            retain_for: 1d
            match: {regions: [EUR]}
        """,
    )
    code, out, err = run(["validate", str(bad)], capsys)
    assert code == 2
    assert out == ""
    assert err.splitlines() == [
        f"{bad}:3: policy 'a': delete_after: bad duration `10 days`: did you mean `10d`?",
        f"{bad}:6: policy 'b': match.regions: unknown region `EUR`; regions are US, EU and APAC "
        "(did you mean `EU`?)",
        "2 problems in the policy files",
    ]


def test_validate_warns_about_policies_that_never_take_effect(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policies = write(
        tmp_path / "p.yaml",
        """\
        policies:
          - name: hold-support
            retain_for: forever
            match: {agents: ["support-*"]}
          - name: support-eu-30d
            delete_after: 30d
            match: {agents: support-eu, regions: [EU]}
          - name: support-any-30d
            delete_after: 30d
            match: {regions: [EU], agents: [support-eu]}
          - name: billing-30d
            delete_after: 30d
            match: {agents: ["billing*"]}
          - name: wipe
            delete_after: 0d
        """,
    )
    code, out, _ = run(["validate", str(policies)], capsys)
    assert code == 0
    warnings = [line for line in out.splitlines() if line.startswith("warning: ")]
    assert warnings == [
        f"warning: support-eu-30d ({policies}:5) can never delete anything: every call it "
        f"matches is kept forever by hold-support ({policies}:2)",
        f"warning: support-any-30d ({policies}:8) can never delete anything: every call it "
        f"matches is kept forever by hold-support ({policies}:2)",
        f"warning: a permanent retention rule, hold-support, may override part of wipe "
        f"({policies}:14): their conditions can overlap, and what hold-support ({policies}:2) "
        "matches is kept",
        f"warning: wipe ({policies}:14) deletes every completed or failed call at once "
        "(delete_after 0d, no conditions)",
        f"warning: support-any-30d ({policies}:8) repeats support-eu-30d ({policies}:5): same "
        "rule, same conditions",
    ]
    assert "5 policies (4 deletion, 1 retention) from 1 file, 5 warnings" in out


def test_a_catch_all_hold_shadows_every_deletion(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policies = write(
        tmp_path / "p.yaml",
        """\
        policies:
          - {name: keep-all, retain_for: forever, match: {}}
          - {name: d, delete_after: 1d, match: {metadata: {tier: free}}}
          - {name: h, retain_for: forever, match: {metadata: {tier: "*"}}}
        """,
    )
    code, out, _ = run(["validate", str(policies)], capsys)
    assert code == 0
    assert "warning: d " in out and "kept forever by keep-all" in out


# ---------------------------------------------------------------- explain


@pytest.fixture(scope="module")
def sandbox() -> Iterator[tuple[SandboxApp, str]]:
    app = SandboxApp(Dataset(DatasetSpec(seed=7, agents=3, calls=30, now=NOW)))
    with serve_in_thread(app) as base_url:
        yield app, base_url


@pytest.fixture
def api_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARTESIA_API_KEY", "sk_car_sandbox")
    monkeypatch.delenv("CARTESIA_BASE_URL", raising=False)


def _a_call(app: SandboxApp) -> tuple[str, str, str]:
    agent = app.dataset.agents()[0]
    call = next(iter(app.dataset.iter_calls(agent.id, transcripts=False)))
    return call.id, agent.id, agent.name


EXPLAIN_POLICIES = """\
policies:
  - {name: default-90d, delete_after: 90d}
  - {name: by-name-30d, delete_after: 30d, match: {agents: ["%s", "%s"]}}
  - {name: eu-7d, delete_after: 7d, match: {regions: [EU]}}
  - {name: legal-hold, retain_for: forever, match: {metadata: {legal_hold: true}}}
  - {name: tier-free, delete_after: 1d, match: {metadata: {tier: free}}}
"""


def test_explain_shows_every_policy_and_the_decision_without_personal_data(
    sandbox: tuple[SandboxApp, str],
    api_env: None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    app, base_url = sandbox
    call_id, agent_id, agent_name = _a_call(app)
    app.override_call(
        call_id,
        {
            "status": "completed",
            "start_time": (NOW - timedelta(days=40)).isoformat(),
            "redacted_at": None,
            "zdr_enabled": False,
            "deployment_region": "US",
            "agent_name": None,  # the name comes from GET /agents
            "metadata": {"legal_hold": True, "tier": "secret-tier-value"},
        },
    )
    policies = write(tmp_path / "p.yaml", EXPLAIN_POLICIES % (agent_id, agent_name))
    argv = [
        "explain",
        call_id,
        "--policies",
        str(policies),
        "--now",
        "2026-03-01T00:00:00Z",
        "--base-url",
        base_url,
    ]
    code, out, err = run(argv, capsys)
    assert code == 0, err
    rows = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert f"listed    under agent {agent_id} ({agent_name})" in out
    assert "with its name from GET /agents" in out
    assert "40 days" in out
    assert "not yet due (due in 50 days)" in rows["default-90d"]
    assert rows["by-name-30d"].split()[-1] == "due"
    assert "region US is not EU" in rows["eu-7d"]
    assert "holds it (forever)" in rows["legal-hold"]
    assert "metadata key `tier` did not match" in rows["tier-free"]
    assert "decision: KEEP: by-name-30d is due, but legal-hold still holds the call" in out
    # Never a metadata value, transcript, summary or phone number.
    call = app.dataset.get_call(call_id)
    assert call is not None
    assert "secret-tier-value" not in out + err
    for secret in (call.summary, call.error_message):
        assert not secret or secret not in out
    if call.telephony_params is not None:
        for number in (call.telephony_params.to, call.telephony_params.from_):
            assert not number or number not in out


def test_explain_a_deletion(
    sandbox: tuple[SandboxApp, str],
    api_env: None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    app, base_url = sandbox
    agent = app.dataset.agents()[1]
    call_id = list(app.dataset.iter_calls(agent.id, transcripts=False))[1].id
    app.override_call(
        call_id,
        {
            "status": "failed",
            "start_time": None,
            "end_time": "2025-11-01T00:00:00Z",
            "redacted_at": None,
            "zdr_enabled": False,
            "deployment_region": "APAC",
            "metadata": None,
        },
    )
    policies = write(tmp_path / "p.yaml", EXPLAIN_POLICIES % ("nobody", "nobody"))
    argv = [
        "explain",
        call_id,
        "--policies",
        str(policies),
        "--now",
        "2026-03-01T00:00:00Z",
        "--base-url",
        base_url,
    ]
    code, out, _ = run(argv, capsys)
    assert code == 0
    assert "from end_time" in out
    assert "metadata key `legal_hold` is absent" in out
    assert "decision: DELETE: default-90d is due and no retention rule holds the call" in out


def test_explain_an_unknown_call_or_bad_credentials_exit_2(
    sandbox: tuple[SandboxApp, str],
    api_env: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, base_url = sandbox
    policies = str(REPO / "policies")
    code, _, err = run(
        ["explain", "call_nope", "--policies", policies, "--base-url", base_url], capsys
    )
    assert code == 2
    assert "no call with id call_nope" in err
    monkeypatch.setenv("CARTESIA_API_KEY", "sk_car_wrong")
    code, _, err = run(
        ["explain", "call_nope", "--policies", policies, "--base-url", base_url], capsys
    )
    assert code == 2
    assert "refused the credentials" in err and "sk_car_wrong" not in err


def test_explain_checks_policies_before_any_request(
    tmp_path: Path, api_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = write(tmp_path / "bad.yaml", "policies:\n  - {name: a, delete_after: 1 week}\n")
    # Port 9 on loopback: nothing listens there, and no request is made anyway.
    code, _, err = run(
        ["explain", "c", "--policies", str(bad), "--base-url", "http://127.0.0.1:9"], capsys
    )
    assert code == 2
    assert "bad duration `1 week`: did you mean `1w`?" in err


def test_the_shipped_phone_sweep_validates_and_names_no_number(
    capsys: pytest.CaptureFixture[str],
) -> None:
    sweep = REPO / "policies" / "sweeps" / "erasure-by-phone.yaml"
    code, out, _ = run(["validate", str(sweep), str(REPO / "policies" / "legal-hold.yaml")], capsys)
    assert code == 0
    assert "matches: the call is to or from the hashed phone number given" in out
    assert "request: DSR-2026-118" in out
    digest = "sha256:" + hashlib.sha256(b"+15550104477").hexdigest()
    assert digest in sweep.read_text()
    assert "5550104477" not in out
