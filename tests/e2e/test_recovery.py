"""Intents left open by a killed run are resolved from the API at the next start; a
rejected DELETE is answered by reading the call again, never by retrying it."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

import pytest

from retention.audit.verify import verify_log
from retention.audit.writer import AuditLog
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


def killed_run_intents(space: Workspace, call_ids: list[str], ts: str) -> None:
    """What a killed run leaves behind: `delete_requested` lines with no outcome."""
    with AuditLog(space.audit_log) as log:
        log.append(
            {
                "ts": ts,
                "run_id": "killed",
                "event": "delete_requested",
                "call_id": call_id,
                "agent_id": "agent_x",
                "policy": "old-30d",
            }
            for call_id in call_ids
        )


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
    killed_run_intents(
        workspace, [done_by_api, never_sent, "call_unknown"], "2026-05-31T23:59:58.000Z"
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
    # Redacted by someone else just before our DELETE, answered 409: the 409 shows our
    # DELETE reached the server, which could have been the one to redact it, so the
    # outcome is `deleted` (README's table), with the API's `redacted_at` either way.
    [(None, "deleted"), ({"status": "active"}, "failed")],
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
    if event == "deleted":
        call = app.dataset.get_call(target, transcript=False)
        assert call is not None and call.redacted_at is not None
        assert datetime.fromisoformat(outcome["redacted_at"]) == call.redacted_at
        assert result.code == 0, result.err
    else:
        assert outcome["error"] == NO_LONGER_TERMINAL
        assert result.code == 1
    assert verify_log(workspace.audit_log).intact


class _RevokeOnRead:
    """ASGI wrapper: the key is revoked as recovery reads its first call (after GET /agents)."""

    def __init__(self, app: SandboxApp) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope.get("method") == "GET" and "/calls/" in scope.get("path", ""):
            self.app.revoke_key()
        await self.app(scope, receive, send)


@pytest.mark.parametrize("open_intents", [1, 3])
def test_credentials_refused_during_recovery_stop_with_exit_4(
    capsys: Run, monkeypatch: pytest.MonkeyPatch, workspace: Workspace, open_intents: int
) -> None:
    app = SandboxApp(make_dataset(), api_key=API_KEY)
    due = sorted(expected_deletions(app.dataset))[:open_intents]
    with AuditLog(workspace.audit_log) as log:
        log.append(
            {
                "ts": "2026-05-31T23:59:58.000Z",
                "run_id": "killed",
                "event": "delete_requested",
                "call_id": call_id,
                "agent_id": "agent_x",
                "policy": "old-30d",
            }
            for call_id in due
        )

    with serve_in_thread(_RevokeOnRead(app)) as url:  # type: ignore[arg-type]
        result = run_cli(capsys, monkeypatch, workspace, url, "--execute")

    assert result.code == 4, result.err
    assert "Traceback" not in result.err
    assert not any(route.startswith("DELETE") for route, _s in app.stats.requests)
    last = workspace.lines()[-1]
    assert last["event"] == "run_finished"
    assert last["stopped_by"] == "credentials"
    assert last["exit_code"] == 4


def test_a_killed_runs_delete_that_lands_late_is_still_recorded(
    capsys: Run, monkeypatch: pytest.MonkeyPatch, workspace: Workspace
) -> None:
    """Killed a moment ago, the earlier run's DELETE is still on its way through the API:
    the first read shows nothing, the redaction lands a little later. The rerun waits out
    the settle window (its request timeout) before calling it not deleted, so the log
    records the redaction the API made, with the API's time."""
    app = SandboxApp(make_dataset(), api_key=API_KEY)
    in_flight = sorted(expected_deletions(app.dataset))[0]
    at = datetime(2026, 5, 31, 23, 59, 59, 500000, tzinfo=UTC)
    just_now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    killed_run_intents(workspace, [in_flight], just_now)
    lands = threading.Timer(0.4, app.dataset.redact, args=(in_flight, at))
    with sandbox(app) as url:
        lands.start()
        try:
            result = run_cli(capsys, monkeypatch, workspace, url, "--execute", "--timeout", "1.5")
        finally:
            lands.cancel()

    assert result.code == 0, result.err
    events = _events(workspace, in_flight)
    assert [e["event"] for e in events] == ["delete_requested", "deleted"]
    assert datetime.fromisoformat(events[1]["redacted_at"]) == at
    assert verify_log(workspace.audit_log).intact
