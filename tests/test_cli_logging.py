"""Logging is configured once, by the CLI's group callback, for every command: `explain`
against an API answering 5xx logs its retries on stderr, as JSON lines from our
pipeline (redaction included), never on stdout with structlog's default renderer."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from retention.cli import main
from retention.log import redact_processor
from retention.sandbox import SandboxApp, serve_in_thread
from retention.sandbox.faults import Faults
from tests.e2e.support import API_KEY, NOW_TEXT, make_dataset

POLICIES = "policies:\n  - name: old-30d\n    delete_after: 30d\n"
IDS = 40  # at a 30% error rate, the chance that no request needs a retry is ~1e-6


@pytest.fixture
def app() -> SandboxApp:
    return SandboxApp(make_dataset(calls=120, agents=3), api_key=API_KEY)


@pytest.fixture
def url(app: SandboxApp) -> Iterator[str]:
    with serve_in_thread(app) as base_url:
        yield base_url


def test_explain_logs_its_retries_on_stderr_through_our_pipeline(
    app: SandboxApp,
    url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = list(app.dataset.iter_all_calls(transcripts=False))[:IDS]
    (tmp_path / "ids.txt").write_text("".join(f"{call.id}\n" for call in calls))
    (tmp_path / "policies.yaml").write_text(POLICIES)
    # Metadata values long enough not to occur by chance (customer ids such as cus_1007).
    values = {str(v) for call in calls for v in (call.metadata or {}).values()}
    secrets = {API_KEY} | {value for value in values if len(value) >= 6}
    assert len(secrets) > 1
    monkeypatch.setenv("CARTESIA_API_KEY", API_KEY)
    monkeypatch.delenv("CARTESIA_BASE_URL", raising=False)
    structlog.reset_defaults()  # as a fresh process: only the CLI may configure it
    app.faults = Faults(error_rate=0.3)
    argv = ["explain", "--policies", str(tmp_path / "policies.yaml"), "--base-url", url]
    argv += ["--now", NOW_TEXT, "--ids", str(tmp_path / "ids.txt"), "--format", "csv"]
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(argv)
    out, err = capsys.readouterr()

    assert redact_processor in structlog.get_config()["processors"]
    assert "api.retry" not in out and "level" not in out  # stdout: the rows only
    logged = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    retries = [line for line in logged if line["event"] == "api.retry"]
    assert retries, "no request was retried: the test proved nothing"
    assert "api.retry" not in "".join(line for line in err.splitlines() if not line.startswith("{"))
    for line in logged:
        assert line["level"] and line["timestamp"].endswith("Z")  # our processors' fields
    for secret in secrets:
        assert secret not in err
