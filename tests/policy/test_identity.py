"""A call belongs to the agent it was listed under: the `agents` rule over all four of
its names (hypothesis, expected answer computed here with fnmatch), the `inconsistent`
skip, and both through `explain` and a real dry run over loopback."""

from __future__ import annotations

import json
from collections.abc import Iterator, MutableMapping
from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from retention.cli import main
from retention.policy.engine import Action, Decision, Reason, decide
from retention.sandbox.app import SandboxApp
from retention.sandbox.data import Dataset, DatasetSpec
from retention.sandbox.server import serve_in_thread
from tests.policy.support import NOW, call, policies

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

IDS = ["agent_1", "agent_2"]
NAMES = ["support-us", "support-eu", "billing"]
PATTERNS = st.lists(
    st.sampled_from(["agent_1", "agent_*", "support-*", "support-us", "billing", "*", "b*"]),
    min_size=1,
    max_size=3,
    unique=True,
)


def _any(patterns: list[str], values: list[str]) -> bool:
    return any(fnmatchcase(v, p) for v in values for p in patterns)


@FAST
@given(
    listed_id=st.sampled_from(IDS),
    listed_name=st.sampled_from([None, "", *NAMES]),
    call_id=st.sampled_from(["", *IDS]),
    call_name=st.sampled_from([None, "", *NAMES]),
    deletion=PATTERNS,
    retention=st.one_of(st.none(), PATTERNS),
)
def test_retention_holds_on_any_name_deletion_needs_all_ids_or_all_names(
    listed_id: str,
    listed_name: str | None,
    call_id: str,
    call_name: str | None,
    deletion: list[str],
    retention: list[str] | None,
) -> None:
    text = (
        f"policies:\n  - {{name: d, delete_after: 1d, match: {{agents: {json.dumps(deletion)}}}}}\n"
    )
    if retention is not None:
        text += (
            f"  - {{name: h, retain_for: forever, match: {{agents: {json.dumps(retention)}}}}}\n"
        )
    got = decide(
        policies(text), call(agent_id=call_id, agent_name=call_name), NOW, listed_id, listed_name
    )
    if call_id and call_id != listed_id:
        assert got == Decision(Action.SKIP, Reason.INCONSISTENT)
        return
    present = [v for v in (listed_id, listed_name, call_id, call_name) if v]
    ids = [listed_id, *([call_id] if call_id else [])]
    names = [n for n in (listed_name, call_name) if n]
    # A deletion needs its ids to agree on matching, or its names (at least one) to.
    deletes = all(_any(deletion, [i]) for i in ids) or (
        bool(names) and all(_any(deletion, [n]) for n in names)
    )
    holds = retention is not None and _any(retention, present)
    if not deletes:
        expected = Decision(Action.KEEP, Reason.NO_DELETION_RULE)
    elif holds:
        expected = Decision(Action.KEEP, Reason.HELD, "d", "h")
    else:
        expected = Decision(Action.DELETE, Reason.DUE, "d")
    assert got == expected


@FAST
@given(listed=st.sampled_from(IDS), own=st.text(min_size=1, max_size=10))
def test_a_call_naming_another_agent_is_never_deleted(listed: str, own: str) -> None:
    policy_set = policies("policies:\n  - {name: all, delete_after: 0d}\n")
    got = decide(policy_set, call(agent_id=own), NOW, listed, None)
    expected = Action.DELETE if own == listed else Action.SKIP
    assert got.action == expected
    if own != listed:
        assert got.reason == Reason.INCONSISTENT


# -- through the command line, against the sandbox over loopback

START = datetime(2026, 3, 1, tzinfo=UTC)


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as done:
        main(argv)
    out, err = capsys.readouterr()
    return int(done.value.code or 0), out, err


class Relabelling(SandboxApp):
    """The sandbox, but listings show chosen calls with another `agent_id`: the identity
    quirk of a hostile API (the sandbox itself refuses to change a call's agent)."""

    relabel: dict[str, str]

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope.get("path") != "/agents/calls":
            await super().__call__(scope, receive, send)
            return
        held: list[MutableMapping[str, Any]] = []

        async def buffer(message: MutableMapping[str, Any]) -> None:
            held.append(message)

        await super().__call__(scope, receive, buffer)
        start, *parts = held
        body = json.loads(b"".join(p.get("body", b"") for p in parts) or b"{}")
        for item in body.get("data", []):
            item["agent_id"] = self.relabel.get(item["id"], item["agent_id"])
        data = json.dumps(body).encode()
        headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(data)).encode()))
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": data})


@pytest.fixture
def api_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARTESIA_API_KEY", "sk_car_sandbox")
    monkeypatch.delenv("CARTESIA_BASE_URL", raising=False)
    for name in ("RETENTION_POLICIES", "RETENTION_CONCURRENCY", "RETENTION_RATE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def relabelling() -> Iterator[tuple[Relabelling, str]]:
    app = Relabelling(Dataset(DatasetSpec(seed=11, agents=2, calls=40, now=START)))
    app.relabel = {}
    with serve_in_thread(app) as url:
        yield app, url


def _old_completed(app: SandboxApp, agent_index: int, position: int) -> tuple[str, str, str]:
    agent = app.dataset.agents()[agent_index]
    call_id = list(app.dataset.iter_calls(agent.id, transcripts=False))[position].id
    app.override_call(
        call_id,
        {
            "status": "completed",
            "start_time": (START - timedelta(days=200)).isoformat(),
            "redacted_at": None,
            "zdr_enabled": False,
        },
    )
    return call_id, agent.id, agent.name


def test_explain_judges_the_call_under_its_agent_and_keeps_it_when_names_disagree(
    relabelling: tuple[Relabelling, str],
    api_env: None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    app, url = relabelling
    call_id, agent_id, agent_name = _old_completed(app, 0, 0)
    app.override_call(call_id, {"agent_name": "renamed-long-ago", "metadata": None})
    policy_file = tmp_path / "p.yaml"
    policy_file.write_text(
        "policies:\n"
        f"  - {{name: by-agent, delete_after: 1d, "
        f'match: {{agents: ["{agent_name}"]}}}}\n'
        '  - {name: old-name-hold, retain_for: 1h, match: {agents: "renamed-*"}}\n'
    )
    argv = ["explain", call_id, "--policies", str(policy_file), "--base-url", url]
    code, out, err = _run([*argv, "--now", "2026-03-01T00:00:00Z"], capsys)
    assert code == 0, err
    assert f"listed    under agent {agent_id} ({agent_name})" in out
    assert "call's agent_name `renamed-long-ago` is not" in out
    assert "decision: KEEP: no deletion rule matches this call" in out
    # The same call through a dry run: kept as well (the report lists selected calls).
    report = tmp_path / "r.csv"
    code, _, err = _run(
        [
            "run",
            "--policies",
            str(policy_file),
            "--audit-log",
            str(tmp_path / "a.jsonl"),
            "--base-url",
            url,
            "--now",
            "2026-03-01T00:00:00Z",
            "--report",
            str(report),
        ],
        capsys,
    )
    assert code == 0, err
    selected = report.read_text()
    assert "by-agent" in selected  # the agent's other old calls are selected ...
    assert call_id not in selected  # ... but not this one


def test_a_dry_run_counts_inconsistent_and_unclear_calls_and_warns_with_ids_only(
    relabelling: tuple[Relabelling, str],
    api_env: None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    app, url = relabelling
    odd_id, listed_id, _ = _old_completed(app, 0, 1)
    other = app.dataset.agents()[1].id
    app.relabel[odd_id] = other
    unclear_id, _, _ = _old_completed(app, 1, 2)
    app.override_call(unclear_id, {"metadata": {"legal_hold": ["secret-list-value"]}})
    policy_file = tmp_path / "p.yaml"
    policy_file.write_text(
        "policies:\n  - {name: all-1d, delete_after: 1d}\n"
        "  - {name: legal-hold, retain_for: forever, match: {metadata: {legal_hold: true}}}\n"
    )
    report, metrics = tmp_path / "r.json", tmp_path / "m.prom"
    code, out, err = _run(
        [
            "run",
            "--policies",
            str(policy_file),
            "--audit-log",
            str(tmp_path / "a.jsonl"),
            "--base-url",
            url,
            "--now",
            "2026-03-01T00:00:00Z",
            "--report",
            str(report),
            "--metrics-file",
            str(metrics),
        ],
        capsys,
    )
    assert code == 0, err
    skipped = json.loads(report.read_text())["skipped"]
    assert skipped["inconsistent"] == 1
    assert skipped["unclear_metadata"] == 1
    prom = metrics.read_text()
    assert 'retention_run_calls_skipped{mode="dry_run",reason="inconsistent"} 1.0' in prom
    assert 'retention_run_calls_skipped{mode="dry_run",reason="unclear_metadata"} 1.0' in prom
    warnings = [json.loads(line) for line in err.splitlines() if "run.inconsistent_call" in line]
    assert len(warnings) == 1
    assert warnings[0]["call_id"] == odd_id
    assert warnings[0]["agent_id"] == listed_id
    assert warnings[0]["call_agent_id"] == other
    assert "secret-list-value" not in out + err
