"""Prometheus export, checked against a Pushgateway stand-in over loopback and
by parsing the textfile back with prometheus_client's own parser."""

from __future__ import annotations

import base64
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from retention.audit.events import Outcome
from retention.run.metrics import LAST_SUCCESS, MetricsExportError, export_metrics
from retention.run.stats import RunStats
from tests.e2e.support import API_KEY as SANDBOX_KEY
from tests.e2e.support import NOW_TEXT, Workspace, workspace  # noqa: F401

API_KEY = "sk_car_metrics_must_never_carry_this"


@dataclass
class Push:
    method: str
    path: str
    headers: dict[str, str]
    body: str


@dataclass
class Gateway:
    """What a Pushgateway keeps: per group, the latest exposition of each metric name.
    PUT replaces the group; POST replaces only the names it carries."""

    url: str
    pushes: list[Push] = field(default_factory=list)
    groups: dict[str, dict[str, str]] = field(default_factory=dict)
    status: int = 200

    def group_text(self, path: str) -> str:
        return "".join(self.groups.get(path, {}).values())


def _by_name(text: str) -> dict[str, str]:
    chunks: dict[str, str] = {}
    for line in text.splitlines(keepends=True):
        name = line.split()[2] if line.startswith("# ") else line.split("{")[0].split()[0]
        chunks[name] = chunks.get(name, "") + line
    return chunks


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    state = Gateway(url="")

    class Handler(BaseHTTPRequestHandler):
        def _record(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length).decode()
            state.pushes.append(Push(self.command, self.path, dict(self.headers), body))
            if state.status == 200:
                group = {} if self.command == "PUT" else state.groups.get(self.path, {})
                state.groups[self.path] = {**group, **_by_name(body)}
            self.send_response(state.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_PUT = _record
        do_POST = _record

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _stats(*, exit_code: int, finished: float, dry_run: bool = False) -> RunStats:
    stats = RunStats(dry_run=dry_run, started_unix=finished - 12.5)
    stats.finished_unix = finished
    stats.agents = 3
    stats.scanned = 40
    stats.due = 9
    stats.record_outcome("support-90d", Outcome.DELETED)
    stats.record_outcome("support-90d", Outcome.DELETED)
    stats.record_outcome("sales-30d", Outcome.FAILED)
    stats.skipped.update({"not_terminal": 4, "zdr": 2})
    stats.kept.update({"held": 5})
    stats.requests = 60
    stats.retries = 7
    stats.throttled = 3
    stats.transport_errors = 4
    stats.deletes_resent = 1
    stats.limit_cuts = 2
    stats.exit_code = exit_code
    return stats


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _value(text: str, name: str, **labels: str) -> float | None:
    return _samples(text).get((name, tuple(sorted(labels.items()))))


def test_push_path_and_values_for_a_shard(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CARTESIA_API_KEY", API_KEY)
    export_metrics(
        _stats(exit_code=0, finished=1_700_000_000.0),
        pushgateway=gateway.url,
        metrics_file=None,
        shard="1/4",
    )
    [push] = gateway.pushes
    shard_b64 = base64.urlsafe_b64encode(b"1/4").decode()
    assert push.path == f"/metrics/job/retention/mode/execute/shard@base64/{shard_b64}"
    assert push.method == "POST"  # pushadd: keeps metric names this push does not carry
    assert "authorization" not in {k.lower() for k in push.headers}
    assert API_KEY not in push.body and API_KEY not in str(push.headers)

    body = push.body
    assert _value(body, "retention_run_calls_scanned") == 40
    assert _value(body, "retention_run_calls_due") == 9
    assert _value(body, "retention_run_calls_acted", outcome="deleted") == 2
    assert _value(body, "retention_run_calls_acted", outcome="failed") == 1
    assert _value(body, "retention_run_calls_acted", outcome="not_found") == 0
    assert _value(body, "retention_run_calls_failed") == 1
    assert _value(body, "retention_run_calls_skipped", reason="not_terminal") == 4
    assert _value(body, "retention_run_calls_skipped", reason="zdr") == 2
    assert _value(body, "retention_run_calls_skipped", reason="no_timestamp") == 0
    assert _value(body, "retention_run_calls_kept", reason="held") == 5
    assert _value(body, "retention_run_calls_kept", reason="not_yet_due") == 0
    assert _value(body, "retention_run_requests") == 60
    assert _value(body, "retention_run_retries") == 7
    assert _value(body, "retention_run_throttled") == 3
    assert _value(body, "retention_run_transport_errors") == 4
    assert _value(body, "retention_run_deletes_resent") == 1
    assert _value(body, "retention_run_limit_cuts") == 2
    assert _value(body, "retention_run_duration_seconds") == 12.5
    assert _value(body, "retention_run_exit_code") == 0
    assert _value(body, "retention_run_dry_run") == 0
    assert _value(body, LAST_SUCCESS) == 1_700_000_000.0


def test_without_shard_the_group_is_the_job(gateway: Gateway) -> None:
    export_metrics(
        _stats(exit_code=0, finished=1.0), pushgateway=gateway.url, metrics_file=None, job="nightly"
    )
    assert [p.path for p in gateway.pushes] == ["/metrics/job/nightly/mode/execute"]


def test_last_success_survives_a_failed_run_on_the_gateway(gateway: Gateway) -> None:
    export_metrics(_stats(exit_code=0, finished=1000.0), pushgateway=gateway.url, metrics_file=None)
    export_metrics(_stats(exit_code=1, finished=2000.0), pushgateway=gateway.url, metrics_file=None)
    kept = gateway.group_text("/metrics/job/retention/mode/execute")
    assert _value(kept, LAST_SUCCESS) == 1000.0
    assert _value(kept, "retention_run_exit_code") == 1
    assert _value(kept, "retention_run_finished_timestamp_seconds") == 2000.0
    assert LAST_SUCCESS not in gateway.pushes[1].body


def test_textfile_parses_and_carries_last_success_over_a_failure(tmp_path: Path) -> None:
    path = tmp_path / "retention.prom"
    export_metrics(
        _stats(exit_code=0, finished=1000.0), pushgateway=None, metrics_file=path, shard="0/2"
    )
    first = path.read_text()
    group = {"mode": "execute", "shard": "0/2"}
    assert _value(first, LAST_SUCCESS, **group) == 1000.0
    assert _value(first, "retention_run_dry_run", **group) == 0

    export_metrics(
        _stats(exit_code=4, finished=2000.0), pushgateway=None, metrics_file=path, shard="0/2"
    )
    second = path.read_text()
    assert _value(second, LAST_SUCCESS, **group) == 1000.0
    assert _value(second, "retention_run_exit_code", **group) == 4
    # Written through a temp file renamed into place: nothing else is left behind.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["retention.prom"]


def test_textfile_of_a_failed_first_run_has_no_last_success(tmp_path: Path) -> None:
    path = tmp_path / "retention.prom"
    export_metrics(_stats(exit_code=1, finished=5.0), pushgateway=None, metrics_file=path)
    text = path.read_text()
    assert LAST_SUCCESS not in {name for name, _ in _samples(text)}
    assert _value(text, "retention_run_exit_code", mode="execute") == 1


def test_gateway_errors_are_typed_and_do_not_stop_the_textfile(
    gateway: Gateway, tmp_path: Path
) -> None:
    gateway.status = 500
    url = gateway.url.replace("http://", "http://ops:hunter2@")
    path = tmp_path / "retention.prom"
    with pytest.raises(MetricsExportError) as caught:
        export_metrics(_stats(exit_code=0, finished=1.0), pushgateway=url, metrics_file=path)
    message = str(caught.value)
    assert "HTTP 500" in message
    assert "hunter2" not in message and "ops" not in message
    # User info in the URL becomes a basic-auth header, never part of the request path.
    [push] = gateway.pushes
    assert push.headers["Authorization"] == "Basic " + base64.b64encode(b"ops:hunter2").decode()
    assert _value(path.read_text(), "retention_run_calls_scanned", mode="execute") == 40


def test_unreachable_gateway_and_unwritable_file_are_both_reported(tmp_path: Path) -> None:
    with pytest.raises(MetricsExportError) as caught:
        export_metrics(
            _stats(exit_code=0, finished=1.0),
            pushgateway="http://127.0.0.1:9",  # discard port: nothing listens
            metrics_file=tmp_path / "missing-dir" / "retention.prom",
        )
    message = str(caught.value)
    assert "cannot push metrics to http://127.0.0.1:9" in message
    assert "cannot write metrics file" in message


def test_nothing_configured_is_a_no_op() -> None:
    export_metrics(_stats(exit_code=0, finished=1.0), pushgateway=None, metrics_file=None)


def test_extra_reasons_are_exported_too(tmp_path: Path) -> None:
    stats = _stats(exit_code=0, finished=1.0)
    stats.skipped = Counter({"unknown_status": 1})
    path = tmp_path / "m.prom"
    export_metrics(stats, pushgateway=None, metrics_file=path)
    text = path.read_text()
    assert _value(text, "retention_run_calls_skipped", reason="unknown_status", mode="execute") == 1


def test_a_real_dry_run_exports_to_both_targets(
    gateway: Gateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datetime import UTC, datetime

    from retention.cli import cli
    from retention.sandbox.app import SandboxApp
    from retention.sandbox.data import Dataset, DatasetSpec
    from retention.sandbox.faults import Faults
    from retention.sandbox.server import serve_in_thread

    now = datetime(2026, 3, 1, tzinfo=UTC)
    dataset = Dataset(DatasetSpec(seed=3, agents=3, calls=120, now=now))
    listed = sum(dataset.call_count(agent.id) for agent in dataset.agents())
    monkeypatch.setenv("CARTESIA_API_KEY", "sk_car_sandbox")
    prom = tmp_path / "retention.prom"
    # Connections dropped mid-answer: retried, and counted as transport errors.
    app = SandboxApp(dataset, Faults(drop_rate=0.5), rng_seed=0)
    with serve_in_thread(app) as base_url:
        code = cli.main(
            [
                "run",
                "--policies",
                str(Path(__file__).resolve().parents[2] / "policies"),
                "--base-url",
                base_url,
                "--now",
                "2026-03-01T00:00:00Z",
                "--audit-log",
                str(tmp_path / "audit.jsonl"),
                "--metrics-file",
                str(prom),
                "--pushgateway",
                gateway.url,
                "--shard",
                "0/1",
            ],
            standalone_mode=False,
        )
    assert code == 0
    [push] = gateway.pushes
    assert push.path.startswith("/metrics/job/retention/mode/dry_run/shard@base64/")
    for text, labels in ((push.body, {}), (prom.read_text(), {"mode": "dry_run", "shard": "0/1"})):
        assert _value(text, "retention_run_calls_scanned", **labels) == listed
        assert _value(text, "retention_run_dry_run", **labels) == 1
        assert _value(text, "retention_run_exit_code", **labels) == 0
        assert _value(text, "retention_run_calls_acted", outcome="deleted", **labels) == 0
        dropped = sum(app.stats.dropped.values())
        assert _value(text, "retention_run_transport_errors", **labels) == dropped > 0
        assert _value(text, "retention_run_deletes_resent", **labels) == 0  # no DELETE
        # Only an execute run sets last-success: a dry run never refreshes it.
        assert LAST_SUCCESS not in {name for name, _ in _samples(text)}


def test_dry_and_execute_runs_keep_separate_groups_in_the_textfile(tmp_path: Path) -> None:
    path = tmp_path / "retention.prom"
    export_metrics(_stats(exit_code=0, finished=1000.0), pushgateway=None, metrics_file=path)
    export_metrics(_stats(exit_code=1, finished=2000.0), pushgateway=None, metrics_file=path)
    export_metrics(
        _stats(exit_code=0, finished=3000.0, dry_run=True), pushgateway=None, metrics_file=path
    )
    text = path.read_text()
    # The failed execute run is not masked by the later dry run that exited 0.
    assert _value(text, "retention_run_exit_code", mode="execute") == 1
    assert _value(text, LAST_SUCCESS, mode="execute") == 1000.0
    assert _value(text, "retention_run_exit_code", mode="dry_run") == 0
    assert _value(text, LAST_SUCCESS, mode="dry_run") is None
    # Each name's HELP/TYPE once: what node_exporter's parser demands.
    assert text.count("# TYPE retention_run_exit_code ") == 1


def test_per_policy_gauges_and_audit_log_size(tmp_path: Path) -> None:
    audit = tmp_path / "audit.jsonl"
    audit.write_bytes(b"x" * 1234)
    path = tmp_path / "retention.prom"
    export_metrics(
        _stats(exit_code=0, finished=1.0),
        pushgateway=None,
        metrics_file=path,
        policies=["support-90d", "sales-30d", "unused"],
        audit_log=audit,
    )
    text = path.read_text()
    matched = "retention_run_policy_calls_matched"
    deleted = "retention_run_policy_calls_deleted"
    assert _value(text, matched, mode="execute", policy="support-90d") == 2
    assert _value(text, deleted, mode="execute", policy="support-90d") == 2
    assert _value(text, matched, mode="execute", policy="sales-30d") == 1
    assert _value(text, deleted, mode="execute", policy="sales-30d") == 0
    assert _value(text, matched, mode="execute", policy="unused") == 0
    assert _value(text, "retention_audit_log_bytes", mode="execute") == 1234


def _cli(space: Workspace, url: str, *flags: str) -> int:
    from retention.cli import main

    try:
        main(
            [
                "run",
                "--policies",
                str(space.policies),
                "--audit-log",
                str(space.audit_log),
                "--base-url",
                url,
                "--now",
                NOW_TEXT,
                *flags,
            ]
        )
    except SystemExit as exit_:
        return int(exit_.code or 0)
    return 0


def test_a_metrics_file_not_ending_in_prom_exits_2(
    workspace: Workspace,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CARTESIA_API_KEY", SANDBOX_KEY)
    target = workspace.root / "retention.txt"
    assert _cli(workspace, "http://127.0.0.1:9", "--metrics-file", str(target)) == 2
    err = capsys.readouterr().err
    assert "--metrics-file" in err and ".prom" in err
    assert not target.exists()


def test_refused_and_locked_runs_push_their_exit_codes(
    gateway: Gateway,
    workspace: Workspace,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from retention.audit.writer import AuditLog
    from retention.sandbox import SandboxApp
    from tests.e2e.support import make_dataset, sandbox

    monkeypatch.setenv("CARTESIA_API_KEY", SANDBOX_KEY)
    prom = workspace.root / "retention.prom"
    targets = ("--pushgateway", gateway.url, "--metrics-file", str(prom), "--execute")
    group = "/metrics/job/retention/mode/execute"
    with sandbox(SandboxApp(make_dataset(calls=20, agents=2))) as url:
        # A policy file that does not parse: exit 2 before anything starts.
        good = workspace.policies.read_text()
        workspace.policies.write_text("policies: [")
        assert _cli(workspace, url, *targets) == 2
        assert _value(gateway.group_text(group), "retention_run_exit_code") == 2
        assert _value(prom.read_text(), "retention_run_exit_code", mode="execute") == 2
        workspace.policies.write_text(good)
        # Another run holds the audit log: exit 6.
        with AuditLog(workspace.audit_log):
            assert _cli(workspace, url, *targets) == 6
        assert _value(gateway.group_text(group), "retention_run_exit_code") == 6
        assert _value(prom.read_text(), "retention_run_exit_code", mode="execute") == 6
    assert [p.path for p in gateway.pushes] == [group, group]
    assert LAST_SUCCESS not in gateway.group_text(group)
