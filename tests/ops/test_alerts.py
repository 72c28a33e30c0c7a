"""The shipped alert rules, unit-tested by the real promtool; and what the real
Pushgateway serves after dry, execute, failed and refused runs."""

from __future__ import annotations

import dataclasses
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from retention.api.retry import RetryPolicy
from retention.errors import ExitCode
from retention.run.command import run_command
from retention.run.flags import settings_from_flags
from retention.sandbox import SandboxApp
from retention.sandbox.faults import Faults
from tests.e2e.support import (  # noqa: F401 - workspace is a fixture
    API_KEY,
    NOW_TEXT,
    Workspace,
    make_dataset,
    run_cli,
    sandbox,
    workspace,
)
from tests.ops.tools import need_binary

RULES_DIR = Path(__file__).resolve().parents[2] / "cron" / "prometheus"


def test_rules_pass_promtool_check_and_unit_tests() -> None:
    promtool = need_binary("promtool", "prometheus")
    for args in (["check", "rules", "rules.yml"], ["test", "rules", "rules.test.yml"]):
        done = subprocess.run(
            [promtool, *args], cwd=RULES_DIR, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "SUCCESS" in done.stdout + done.stderr


def test_the_prometheus_rule_holds_the_same_rules() -> None:
    plain = yaml.safe_load((RULES_DIR / "rules.yml").read_text())
    [crd] = list(yaml.safe_load_all((RULES_DIR / "prometheus-rule.yaml").read_text()))
    assert crd["apiVersion"] == "monitoring.coreos.com/v1"
    assert crd["kind"] == "PrometheusRule"
    assert crd["spec"] == plain
    alerts = {rule["alert"] for group in plain["groups"] for rule in group["rules"]}
    assert alerts == {
        "RetentionRunFailed",
        "RetentionNoRecentSuccess",
        "RetentionDeletionsFailed",
        "RetentionRunCapped",
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def pushgateway(tmp_path: Path) -> Iterator[str]:
    binary = need_binary("prometheus-pushgateway", "prometheus-pushgateway")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = (tmp_path / "pushgateway.log").open("w")
    proc = subprocess.Popen(
        [
            binary,
            f"--web.listen-address=127.0.0.1:{port}",
            # Debian's build persists to /var/lib/prometheus by default: keep this one apart.
            f"--persistence.file={tmp_path / 'pushgateway.data'}",
        ],
        stdout=log,
        stderr=log,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _served(url: str) -> Series:
    text = httpx.get(f"{url}/metrics", timeout=5).text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith("retention_")
    }


def _value(series: Series, name: str, **labels: str) -> float | None:
    return series.get((name, frozenset({"job": "retention", "instance": "", **labels}.items())))


def test_what_the_real_pushgateway_serves(
    pushgateway: str,
    workspace: Workspace,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = SandboxApp(make_dataset(calls=60, agents=3))
    push = ("--pushgateway", pushgateway)
    with sandbox(app) as url:
        # 1. An execute run that succeeds.
        done = run_cli(capsys, monkeypatch, workspace, url, "--execute", *push)
        assert done.code == 0, done.err
        after_execute = _served(pushgateway)
        success = _value(after_execute, "retention_last_success_timestamp_seconds", mode="execute")
        assert success is not None and abs(success - time.time()) < 120
        assert _value(after_execute, "retention_run_exit_code", mode="execute") == 0
        deleted = _value(
            after_execute, "retention_run_calls_acted", mode="execute", outcome="deleted"
        )
        assert deleted is not None and deleted > 0
        assert (
            _value(
                after_execute,
                "retention_run_policy_calls_deleted",
                mode="execute",
                policy="old-30d",
            )
            == deleted
        )
        size = workspace.audit_log.stat().st_size
        assert _value(after_execute, "retention_audit_log_bytes", mode="execute") == size

        # 2. A dry run: its own group; the execute group is untouched.
        done = run_cli(capsys, monkeypatch, workspace, url, *push)
        assert done.code == 0, done.err
        after_dry = _served(pushgateway)
        assert _value(after_dry, "retention_run_dry_run", mode="dry_run") == 1
        assert _value(after_dry, "retention_run_exit_code", mode="dry_run") == 0
        assert _value(after_dry, "retention_last_success_timestamp_seconds", mode="dry_run") is None
        for name, value in after_execute.items():
            assert after_dry[name] == value, name

        # 3. A failed execute run (every answer a 5xx: the listing fails, exit 1).
        app.faults = Faults(error_rate=1.0)
        flags = _flags(workspace, url, pushgateway)
        settings = dataclasses.replace(
            settings_from_flags(**flags),
            retry=RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.02),
            handle_signals=False,
        )
        assert run_command(settings) == ExitCode.SOME_FAILED
        app.faults = Faults()
        after_failure = _served(pushgateway)
        assert _value(after_failure, "retention_run_exit_code", mode="execute") == 1
        assert _value(after_failure, "retention_run_requests", mode="execute") == 3
        assert _value(after_failure, "retention_run_retries", mode="execute") == 2
        kept = _value(after_failure, "retention_last_success_timestamp_seconds", mode="execute")
        assert kept == success
        assert _value(after_failure, "retention_run_exit_code", mode="dry_run") == 0

        # 4. An execute run refused before it starts: the key is refused at GET /agents.
        done = run_cli(
            capsys, monkeypatch, workspace, url, "--execute", *push, key="sk_car_wrong_key"
        )
        assert done.code == ExitCode.BAD_INPUT
        after_refusal = _served(pushgateway)
        assert _value(after_refusal, "retention_run_exit_code", mode="execute") == 2
        assert (
            _value(after_refusal, "retention_last_success_timestamp_seconds", mode="execute")
            == success
        )
        assert _value(after_refusal, "retention_run_exit_code", mode="dry_run") == 0


def _flags(space: Workspace, url: str, pushgateway: str) -> dict[str, Any]:
    return {
        "policy_paths": [space.policies],
        "execute": True,
        "audit_log": space.audit_log,
        "report": None,
        "base_url": url,
        "api_key_file": None,
        "concurrency": 4,
        "rate": 400.0,
        "max_deletes": None,
        "now": NOW_TEXT,
        "grace_period": 1.0,
        "progress_interval": 10.0,
        "timeout": 5.0,
        "shard": None,
        "shard_count": None,
        "pushgateway": pushgateway,
        "metrics_file": None,
    }
