"""Intents left open by a killed run are resolved from the API at the next start; a
rejected DELETE is answered by reading the call again, never by retrying it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from retention.audit.verify import verify_log
from retention.run.audit import AuditLog
from retention.run.pipeline import NO_LONGER_TERMINAL
from retention.run.recovery import NOT_DELETED
from retention.sandbox import SandboxApp
from retention.sandbox.faults import Behaviour
from retention.sandbox.server import serve_in_thread
from tests.e2e.support import (
    API_KEY,
    Workspace,
    expected_deletions,
    make_dataset,
    run_cli,
    sandbox,
    workspace,
)

__all__ = ["workspace"]

Run = pytest.CaptureFixture[str]


def _events(space: Workspace, call_id: str) -> list[dict[str, Any]]:
    return [line for line in space.lines() if line.get("call_id") == call_id]


def test_open_intents_of_a_killed_run_are_resolved_from_the_api(
    capsys: Run, monkeypatch: pytest.MonkeyPatch, workspace: Workspace
) -> None:
    app = SandboxApp(make_dataset(), api_key=API_KEY)
    due = sorted(expected_deletions(app.dataset))
    done_by_api, never_sent = due[0], due[1]
    at = datetime(2026, 5, 31, 23, 59, 59, 123456, tzinfo=UTC)
    app.dataset.redact(done_by_api, at)  # the killed run's DELETE went through
    with AuditLog(workspace.audit_log) as log:  # what the killed run had written
        log.append(
            {
                "ts": "2026-05-31T23:59:58.000Z",
                "run_id": "killed",
                "event": "delete_requested",
                "call_id": call_id,
                "agent_id": "agent_x",
                "policy": "old-30d",
            }
            for call_id in (done_by_api, never_sent, "call_unknown")
        )

    with sandbox(app) as url:
        result = run_cli(capsys, monkeypatch, workspace, url, "--execute")

    assert result.code == 0, result.err
    recovered = _events(workspace, done_by_api)[1]
    assert recovered["event"] == "deleted"
    assert datetime.fromisoformat(recovered["redacted_at"]) == at
    assert [e["event"] for e in _events(workspace, never_sent)] == [
        "delete_requested",
        "failed",  # the killed run's intent: it never took effect...
        "delete_requested",
        "deleted",  # ...so this run decided the call afresh and deleted it
    ]
    assert _events(workspace, never_sent)[1]["error"] == NOT_DELETED
    assert _events(workspace, "call_unknown")[1]["event"] == "not_found"
    assert verify_log(workspace.audit_log).intact


class _ChangeBeforeDelete:
    """ASGI wrapper: just before the sandbox sees a DELETE of `call_id`, change the call."""

    def __init__(self, app: SandboxApp, call_id: str, fields: dict[str, object] | None) -> None:
        self.app, self.call_id, self.fields = app, call_id, fields

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope.get("method") == "DELETE" and scope["path"].endswith(self.call_id):
            if self.fields is None:
                self.app.dataset.redact(self.call_id, datetime.now(UTC))
            else:
                self.app.dataset.override(self.call_id, self.fields)
        await self.app(scope, receive, send)


@pytest.mark.parametrize(
    ("fields", "event"),
    [(None, "already_redacted"), ({"status": "active"}, "failed")],
    ids=["redacted-meanwhile", "no-longer-terminal"],
)
def test_a_rejected_delete_reads_the_call_again(
    capsys: Run,
    monkeypatch: pytest.MonkeyPatch,
    workspace: Workspace,
    fields: dict[str, object] | None,
    event: str,
) -> None:
    app = SandboxApp(make_dataset(), api_key=API_KEY, behaviour=Behaviour(redelete_status=409))
    target = sorted(expected_deletions(app.dataset))[0]
    with serve_in_thread(_ChangeBeforeDelete(app, target, fields)) as url:  # type: ignore[arg-type]
        result = run_cli(capsys, monkeypatch, workspace, url, "--execute")

    outcome = _events(workspace, target)[1]
    assert outcome["event"] == event
    deletes = sum(n for (route, _s), n in app.stats.requests.items() if route.startswith("DELETE"))
    assert deletes == len(expected_deletions(make_dataset()))  # one DELETE each, no retry
    if event == "already_redacted":
        call = app.dataset.get_call(target, transcript=False)
        assert call is not None and call.redacted_at is not None
        assert datetime.fromisoformat(outcome["redacted_at"]) == call.redacted_at
        assert result.code == 0, result.err
    else:
        assert outcome["error"] == NO_LONGER_TERMINAL
        assert result.code == 1
    assert verify_log(workspace.audit_log).intact
