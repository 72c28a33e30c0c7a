"""Ids from the API or the audit log never reach a URL unless they are plain ids.

A listing that carries ids with path or URL characters (or too long) has those
calls skipped (`invalid_id`) with a warning that does not repeat the id; an agent
whose id is not plain is not listed (exit 1: its calls were not examined); an open
intent with such an id is closed as `failed` instead of stopping every later run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from retention.api.ids import is_valid_id
from retention.audit.writer import AuditLog
from retention.policy.load import load_policies
from retention.run.command import RunSettings, run_command
from retention.run.recovery import INVALID_ID
from retention.sandbox.app import SandboxApp
from retention.sandbox.data import Dataset, DatasetSpec
from retention.sandbox.server import serve_in_thread
from tests.faults.support import API_KEY, NOW, audit_records, write_policies
from tests.run.rewrite import Rewriting

CATCH_ALL: Final = "policies:\n  - name: everything\n    delete_after: 0d\n    match: {}\n"
BAD_IDS: Final = ("../x", "a/b", "a?b=1", "a#b", "a%2Fb", "a b", "tab\tid", "x" * 129, "", "..")


def _settings(url: str, tmp: Path, report: Path | None = None) -> RunSettings:
    return RunSettings(
        policies=load_policies([write_policies(tmp / "p", CATCH_ALL)]),
        api_key=API_KEY,
        base_url=url,
        now=NOW,
        execute=True,
        audit_log=tmp / "audit.jsonl",
        report=report,
        handle_signals=False,
    )


def _mangle_calls(bad: list[str]) -> Any:
    """Give the first calls of the first page of each listing the ids in `bad` (never
    the last call of a page, whose id is the next page's cursor)."""

    def rewrite(path: str, body: dict[str, Any]) -> dict[str, Any]:
        if path == "/agents/calls":
            data = body["data"]
            for i, bad_id in enumerate(bad[: max(0, len(data) - 1)]):
                data[i]["id"] = bad_id
        return body

    return rewrite


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    bad=st.lists(
        st.one_of(
            st.sampled_from(BAD_IDS),
            st.text(min_size=1, max_size=140).filter(lambda s: not is_valid_id(s)),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_calls_with_unusable_ids_are_skipped_and_never_sent(
    bad: list[str], tmp_path_factory: pytest.TempPathFactory, capfd: pytest.CaptureFixture[str]
) -> None:
    tmp = tmp_path_factory.mktemp("ids")
    inner = SandboxApp(Dataset(DatasetSpec(seed=3, agents=1, calls=12, now=NOW)))
    original = {c.id for c in inner.dataset.iter_all_calls(transcripts=False)}
    app = Rewriting(inner, _mangle_calls(bad))
    capfd.readouterr()
    with serve_in_thread(app) as url:
        code = run_command(_settings(url, tmp, tmp / "report.json"))
    _out, err = capfd.readouterr()
    assert code == 0
    report = json.loads((tmp / "report.json").read_text())
    assert report["skipped"]["invalid_id"] == len(bad)
    records = audit_records(tmp / "audit.jsonl")
    sent = {r["call_id"] for r in records if r["event"] == "delete_requested"}
    assert all(is_valid_id(call_id) for call_id in sent)
    assert sent <= original
    assert err.count("run.invalid_call_id") == len(bad)
    for bad_id in bad:
        if len(bad_id) >= 3:  # a short id is found inside anything; a long one is not
            assert json.dumps(bad_id)[1:-1] not in err
    # The calls listed under the bad ids were never deleted under their real ids either.
    redacted = inner.dataset.redacted_ids()
    assert len(original - redacted) >= len(bad)


def test_an_agent_with_an_unusable_id_is_not_listed(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    inner = SandboxApp(Dataset(DatasetSpec(seed=3, agents=2, calls=12, now=NOW)))

    def rewrite(path: str, body: dict[str, Any]) -> dict[str, Any]:
        if path == "/agents":
            body["summaries"][0]["id"] = "agent/../../admin"
        return body

    app = Rewriting(inner, rewrite)
    capfd.readouterr()
    with serve_in_thread(app) as url:
        code = run_command(_settings(url, tmp_path))
    _out, err = capfd.readouterr()
    assert code == 1  # one agent's calls were not examined
    assert "run.agent_skipped" in err
    assert "admin" not in err
    listed = sum(n for (route, _), n in inner.stats.requests.items() if "/agents/calls" in route)
    assert listed >= 1  # the other agent was listed


def test_an_open_intent_with_an_unusable_id_is_closed_as_failed(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    with AuditLog(log) as audit:
        audit.append(
            [
                {
                    "ts": "2026-05-31T00:00:00.000Z",
                    "run_id": "r0",
                    "event": "delete_requested",
                    "call_id": "../../etc",
                    "agent_id": "agent_x",
                    "policy": "everything",
                }
            ]
        )
    inner = SandboxApp(Dataset(DatasetSpec(seed=3, agents=1, calls=6, now=NOW)))
    with serve_in_thread(inner) as url:
        assert run_command(_settings(url, tmp_path)) == 0
        # The next run starts clean: nothing is left open.
        assert run_command(_settings(url, tmp_path)) == 0
    records = audit_records(log)
    closing = [r for r in records if r.get("call_id") == "../../etc"]
    assert [r["event"] for r in closing] == ["delete_requested", "failed"]
    assert closing[1]["error"] == INVALID_ID
