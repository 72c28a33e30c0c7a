"""`retention run` end to end over loopback against the sandbox: what it deletes, what it
logs, what it reports, and the exit codes of DESIGN.md."""

from __future__ import annotations

import fcntl
import json
import os
import stat
from collections.abc import Iterator

import pytest

from retention.audit.verify import verify_log
from retention.cli import main
from retention.sandbox import Dataset, SandboxApp
from retention.sandbox.content import PHONE_PREFIX
from tests.e2e.support import (
    API_KEY,
    NOW_TEXT,
    Workspace,
    deletes_sent,
    expected_deletions,
    make_dataset,
    read_audit,
    read_csv,
    requests_sent,
    run_cli,
    sandbox,
    workspace,
)

__all__ = ["workspace"]  # the fixture, re-exported for pytest

Run = pytest.CaptureFixture[str]


@pytest.fixture
def dataset() -> Dataset:
    data = make_dataset()
    # A few billing calls without an agent_name: the name from GET /agents still holds them.
    billing = next(a for a in data.agents() if a.name == "billing")
    for call in list(data.iter_calls(billing.id, transcripts=False))[:5]:
        data.override(call.id, {"agent_name": None})
    return data


@pytest.fixture
def app(dataset: Dataset) -> SandboxApp:
    return SandboxApp(dataset, api_key=API_KEY)


@pytest.fixture
def url(app: SandboxApp) -> Iterator[str]:
    with sandbox(app) as base_url:
        yield base_url


def test_dry_run_sends_no_delete_and_lists_exactly_the_due_calls(
    capsys: Run, monkeypatch: pytest.MonkeyPatch, workspace: Workspace, app: SandboxApp, url: str
) -> None:
    expected = expected_deletions(app.dataset)
    assert expected  # the dataset must give the test something to check

    result = run_cli(capsys, monkeypatch, workspace, url, "--report", str(workspace.report()))

    assert result.code == 0, result.err
    assert deletes_sent(app) == 0
    assert app.dataset.redacted_ids() == frozenset()
    rows = read_csv(workspace.report())
    assert {row["call_id"] for row in rows} == expected
    assert len(rows) == len(expected)
    assert {row["outcome"] for row in rows} == {"would_delete"}
    assert {row["policy"] for row in rows} == {"old-30d"}
    lines = workspace.lines()
    assert [line["event"] for line in lines] == ["run_started", "run_finished"]
    assert lines[0]["dry_run"] is True
    assert lines[1]["counts"]["outcomes"] == {"would_delete": len(expected)}


def test_execute_redacts_exactly_the_due_calls_and_logs_each(
    capsys: Run, monkeypatch: pytest.MonkeyPatch, workspace: Workspace, app: SandboxApp, url: str
) -> None:
    expected = expected_deletions(app.dataset)

    result = run_cli(
        capsys, monkeypatch, workspace, url, "--execute", "--report", str(workspace.report())
    )

    assert result.code == 0, result.err
    assert app.dataset.redacted_ids() == expected
    lines = workspace.lines()
    intents = [line for line in lines if line["event"] == "delete_requested"]
    deleted = {line["call_id"]: line for line in lines if line["event"] == "deleted"}
    assert {line["call_id"] for line in intents} == expected
    assert set(deleted) == expected
    for call_id, line in deleted.items():  # the API's redacted_at, exactly
        call = app.dataset.get_call(call_id, transcript=False)
        assert call is not None and call.redacted_at is not None
        assert line["redacted_at"].replace("Z", "+00:00") == call.redacted_at.isoformat()
    # Each intent was written before its outcome.
    position = {(line["event"], line.get("call_id")): i for i, line in enumerate(lines)}
    assert all(position[("delete_requested", c)] < position[("deleted", c)] for c in expected)
    assert {row["outcome"] for row in read_csv(workspace.report())} == {"deleted"}
    assert verify_log(workspace.audit_log).intact
    assert stat.S_IMODE(workspace.audit_log.stat().st_mode) == 0o600

    # A second run finds nothing left to do.
    before = deletes_sent(app)
    again = run_cli(capsys, monkeypatch, workspace, url, "--execute")
    assert again.code == 0, again.err
    assert deletes_sent(app) == before
    second_run = [line for line in workspace.lines()[len(lines) :]]
    assert [line["event"] for line in second_run] == ["run_started", "run_finished"]
    assert second_run[0]["seq"] == lines[-1]["seq"] + 1  # the chain goes on
    assert verify_log(workspace.audit_log).intact


def test_nothing_sensitive_reaches_output_audit_log_or_reports(
    capsys: Run, monkeypatch: pytest.MonkeyPatch, workspace: Workspace, app: SandboxApp, url: str
) -> None:
    outputs = []
    for extension in ("csv", "json", "md"):
        result = run_cli(
            capsys, monkeypatch, workspace, url, "--report", str(workspace.report(extension))
        )
        outputs += [result.out, result.err]
    result = run_cli(capsys, monkeypatch, workspace, url, "--execute")
    outputs += [result.out, result.err]
    texts = [
        *outputs,
        workspace.audit_log.read_text(),
        *(workspace.report(ext).read_text() for ext in ("csv", "json", "md")),
    ]
    secrets = {API_KEY, PHONE_PREFIX}
    generated = make_dataset()  # the same dataset, unredacted: its sensitive text
    for call in generated.iter_all_calls():
        secrets.update(text for text in (call.summary, call.error_message) if text)
        for turn in call.transcript or []:  # type: ignore[attr-defined]
            secrets.add(json.dumps(turn)[:60])
    for text in texts:
        leaked = [secret for secret in secrets if secret in text]
        assert not leaked, leaked[:3]


def test_json_and_markdown_reports_total_by_policy_agent_and_region(
    capsys: Run, monkeypatch: pytest.MonkeyPatch, workspace: Workspace, app: SandboxApp, url: str
) -> None:
    expected = expected_deletions(app.dataset)
    calls = {c.id: c for c in app.dataset.iter_all_calls(transcripts=False)}

    assert (
        run_cli(capsys, monkeypatch, workspace, url, "--report", str(workspace.report("json"))).code
        == 0
    )
    totals = json.loads(workspace.report("json").read_text())

    assert totals["dry_run"] is True
    assert totals["totals"]["selected"] == len(expected)
    assert totals["selected_by_policy"]["old-30d"]["total"] == len(expected)
    by_region: dict[str, int] = {}
    by_agent: dict[str, int] = {}
    for call_id in expected:
        region = calls[call_id].deployment_region or "unknown"
        by_region[region] = by_region.get(region, 0) + 1
        by_agent[calls[call_id].agent_id] = by_agent.get(calls[call_id].agent_id, 0) + 1
    assert {r: v["total"] for r, v in totals["selected_by_region"].items()} == by_region
    assert {a["agent_id"]: a["total"] for a in totals["selected_by_agent"]} == by_agent
    held = sum(1 for c in calls.values() if c.agent_id in _billing(app.dataset))
    assert 0 < totals["kept"]["by_retention_policy"]["billing-hold"] <= held
    assert totals["totals"]["scanned"] == len(calls)

    assert (
        run_cli(capsys, monkeypatch, workspace, url, "--report", str(workspace.report("md"))).code
        == 0
    )
    markdown = workspace.report("md").read_text()
    assert "| old-30d |" in markdown and "billing-hold" in markdown


def _billing(dataset: Dataset) -> set[str]:
    return {a.id for a in dataset.agents() if a.name.startswith("billing")}


def test_max_deletes_stops_cleanly_with_exit_3(
    capsys: Run, monkeypatch: pytest.MonkeyPatch, workspace: Workspace, app: SandboxApp, url: str
) -> None:
    expected = expected_deletions(app.dataset)

    result = run_cli(capsys, monkeypatch, workspace, url, "--execute", "--max-deletes", "10")

    assert result.code == 3, result.err
    assert deletes_sent(app) == 10
    assert len(app.dataset.redacted_ids()) == 10
    assert workspace.lines()[-1]["stopped_by"] == "max_deletes"
    assert verify_log(workspace.audit_log).intact
    # The next run goes on from there.
    assert run_cli(capsys, monkeypatch, workspace, url, "--execute").code == 0
    assert app.dataset.redacted_ids() == expected


def test_shards_split_the_agents_without_overlap(
    capsys: Run, monkeypatch: pytest.MonkeyPatch, workspace: Workspace, app: SandboxApp, url: str
) -> None:
    seen: list[set[str]] = []
    for index in range(3):
        report = workspace.root / f"shard{index}.csv"
        flags = ["--shard", f"{index}/3", "--report", str(report)]
        if index == 0:  # a ceiling given is shared out; without one, each shard adapts
            flags += ["--concurrency", "32"]
        result = run_cli(capsys, monkeypatch, workspace, url, *flags)
        assert result.code == 0, result.err
        seen.append({row["call_id"] for row in read_csv(report)})
    assert set().union(*seen) == expected_deletions(app.dataset)
    assert sum(len(s) for s in seen) == len(expected_deletions(app.dataset))
    started = [line for line in workspace.lines() if line["event"] == "run_started"]
    assert [line["shard"] for line in started] == ["0/3", "1/3", "2/3"]
    assert started[0]["options"]["concurrency"] == 32 // 3
    assert started[1]["options"]["concurrency"] is None


def test_wrong_key_is_refused_before_anything_with_exit_2(
    capsys: Run, monkeypatch: pytest.MonkeyPatch, workspace: Workspace, app: SandboxApp, url: str
) -> None:
    result = run_cli(capsys, monkeypatch, workspace, url, "--execute", key="sk_car_wrong")

    assert result.code == 2
    assert "credentials refused by the API" in result.err
    assert "sk_car_wrong" not in result.err + result.out
    assert requests_sent(app) == 1  # GET /agents only
    assert workspace.audit_log.read_text() == ""


class _RevokeAfter:
    """ASGI wrapper: the sandbox revokes the key after `n` DELETEs (a key rotated mid-run)."""

    def __init__(self, app: SandboxApp, n: int) -> None:
        self.app, self.n = app, n

    async def __call__(self, scope: dict[str, object], receive: object, send: object) -> None:
        if scope.get("type") == "http" and scope.get("method") == "DELETE":
            self.n -= 1
            if self.n < 0:
                self.app.revoke_key()
        await self.app(scope, receive, send)  # type: ignore[arg-type]


@pytest.mark.slow
def test_credentials_refused_mid_run_stop_at_once_with_exit_4(
    capsys: Run, monkeypatch: pytest.MonkeyPatch, workspace: Workspace, app: SandboxApp
) -> None:
    from retention.sandbox.server import serve_in_thread

    with serve_in_thread(_RevokeAfter(app, 20)) as url:  # type: ignore[arg-type]
        result = run_cli(capsys, monkeypatch, workspace, url, "--execute", "--concurrency", "4")

    assert result.code == 4, result.err
    refused = sum(n for (_r, status), n in app.stats.requests.items() if status == 401)
    assert 1 <= refused <= 4 + 4  # only what was already in flight (workers and listers)
    lines = workspace.lines()
    assert lines[-1]["event"] == "run_finished"
    assert lines[-1]["stopped_by"] == "credentials"
    # A DELETE answered 401 cannot be confirmed (the GET would be refused too): its
    # intent stays open, never `failed`; with the key back, the next run settles it.
    refused_deletes = sum(
        n for (r, status), n in app.stats.requests.items() if status == 401 and "DELETE" in r
    )
    opened = {line["call_id"] for line in lines if line["event"] == "delete_requested"}
    settled = {line["call_id"] for line in lines if "call_id" in line} - opened
    assert not settled
    outcomes = [line for line in lines if line["event"] in ("failed", "deleted", "not_found")]
    assert len(opened) - len(outcomes) == refused_deletes
    app.restore_key()
    with serve_in_thread(app) as url:
        again = run_cli(capsys, monkeypatch, workspace, url, "--execute")
    assert again.code == 0, again.err
    assert verify_log(workspace.audit_log).intact  # every intent got its outcome


def test_a_second_run_on_a_locked_audit_log_is_refused_with_exit_6(
    capsys: Run, monkeypatch: pytest.MonkeyPatch, workspace: Workspace, app: SandboxApp, url: str
) -> None:
    lock = workspace.audit_log.with_name(workspace.audit_log.name + ".lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        result = run_cli(capsys, monkeypatch, workspace, url, "--execute")
    finally:
        os.close(fd)
    assert result.code == 6
    assert str(lock) in result.err and "another run holds the lock" in result.err
    assert requests_sent(app) == 0


class _FailDeletes:
    """ASGI wrapper: DELETEs of the chosen calls answer 503 every time."""

    def __init__(self, app: SandboxApp, call_ids: set[str]) -> None:
        self.app, self.call_ids = app, call_ids

    async def __call__(self, scope: dict[str, object], receive: object, send: object) -> None:
        path = str(scope.get("path", ""))
        if scope.get("method") == "DELETE" and path.rsplit("/", 1)[-1] in self.call_ids:
            await send({"type": "http.response.start", "status": 503, "headers": []})  # type: ignore[operator]
            await send({"type": "http.response.body", "body": b"{}"})  # type: ignore[operator]
            return
        await self.app(scope, receive, send)  # type: ignore[arg-type]


def test_failed_deletions_are_logged_and_exit_1(
    capsys: Run, monkeypatch: pytest.MonkeyPatch, workspace: Workspace, app: SandboxApp
) -> None:
    """Retries exhausted: `failed` with a short cause, the run goes on, exit 1."""
    from retention.api.retry import RetryPolicy
    from retention.policy.load import load_policies
    from retention.run.command import RunSettings, run_command
    from retention.sandbox.server import serve_in_thread
    from retention.settings import parse_now

    expected = expected_deletions(app.dataset)
    doomed = set(sorted(expected)[:3])
    with serve_in_thread(_FailDeletes(app, doomed)) as url:  # type: ignore[arg-type]
        code = run_command(
            RunSettings(
                policies=load_policies([workspace.policies]),
                api_key=API_KEY,
                base_url=url,
                now=parse_now(NOW_TEXT),
                execute=True,
                audit_log=workspace.audit_log,
                retry=RetryPolicy(max_attempts=2, base_delay=0.001, max_delay=0.002),
            )
        )
    assert code == 1
    failed = {line["call_id"]: line for line in workspace.lines() if line["event"] == "failed"}
    # A 503 may have been answered after the DELETE took effect: the call is read again,
    # found unredacted, and only then called failed.
    assert set(failed) == doomed
    assert all(line["error"] == "gave up after 2 attempts: HTTP 503" for line in failed.values())
    assert app.dataset.redacted_ids() == expected - doomed
    assert verify_log(workspace.audit_log).intact


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--shard", "3/3"], "--shard"),
        (["--shard", "a/b"], "--shard"),
        (["--report", "out.xlsx"], "--report"),
        (["--now", "yesterday"], "--now"),
        (["--concurrency", "0"], "--concurrency"),
        (["--base-url", "http://api.example.com"], "not loopback"),
        (["--policies", "/nonexistent/policies"], "nonexistent"),
    ],
)
def test_bad_input_exits_2_with_one_line_before_any_request(
    capsys: Run,
    monkeypatch: pytest.MonkeyPatch,
    workspace: Workspace,
    app: SandboxApp,
    url: str,
    flags: list[str],
    message: str,
) -> None:
    result = run_cli(capsys, monkeypatch, workspace, url, "--execute", *flags)
    assert result.code == 2
    assert message in result.err
    assert len(result.err.strip().splitlines()) == 1
    assert requests_sent(app) == 0


def test_missing_key_exits_2(
    capsys: Run, monkeypatch: pytest.MonkeyPatch, workspace: Workspace, app: SandboxApp, url: str
) -> None:
    result = run_cli(capsys, monkeypatch, workspace, url, key=None)
    assert result.code == 2
    assert "CARTESIA_API_KEY" in result.err
    assert requests_sent(app) == 0


def test_options_come_from_the_environment(
    capsys: Run, monkeypatch: pytest.MonkeyPatch, workspace: Workspace, app: SandboxApp, url: str
) -> None:
    report = workspace.report("json")
    env_log = workspace.root / "from-env.jsonl"
    monkeypatch.setenv("RETENTION_AUDIT_LOG", str(env_log))
    monkeypatch.setenv("CARTESIA_API_KEY", API_KEY)
    monkeypatch.setenv("CARTESIA_BASE_URL", url)
    monkeypatch.setenv("RETENTION_MAX_DELETES", "5")
    monkeypatch.setenv("RETENTION_CONCURRENCY", "3")
    monkeypatch.setenv("RETENTION_RATE", "50")
    monkeypatch.setenv("RETENTION_REPORT", str(report))
    monkeypatch.chdir(workspace.root)
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--policies", str(workspace.policies), "--now", NOW_TEXT, "--execute"])
    assert exit_.value.code == 3
    started = read_audit(env_log)[0]
    assert started["options"]["concurrency"] == 3
    assert started["options"]["rate"] == 50
    assert started["options"]["max_deletes"] == 5
    assert json.loads(report.read_text())["totals"]["outcomes"] == {"deleted": 5}
    assert deletes_sent(app) == 5
    assert not (workspace.root / "retention-audit.jsonl").exists()
