"""A base URL that cannot work is exit 2 in seconds, in one line naming the URL and why."""

from __future__ import annotations

import socket
import time

import pytest

from retention.errors import ExitCode
from retention.sandbox import SandboxApp
from tests.e2e.support import (  # noqa: F401 - workspace is a fixture
    Workspace,
    make_dataset,
    run_cli,
    sandbox,
    workspace,
)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _check(result_err: str, url: str, cause: str) -> None:
    lines = result_err.strip().splitlines()
    [line] = [line for line in lines if "cannot reach the API" in line]
    assert url in line and cause in line, line
    assert "api.retry" not in result_err  # no retry noise
    assert "Traceback" not in result_err


def test_connection_refused(
    workspace: Workspace,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    started = time.monotonic()
    result = run_cli(capsys, monkeypatch, workspace, url, "--execute")
    assert result.code == ExitCode.BAD_INPUT
    assert time.monotonic() - started < 5
    _check(result.err, url, "connection refused")


def test_tls_to_a_plain_http_server(
    workspace: Workspace,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with sandbox(SandboxApp(make_dataset(calls=5, agents=1))) as url:
        https = url.replace("http://", "https://")
        result = run_cli(capsys, monkeypatch, workspace, https, "--execute")
    assert result.code == ExitCode.BAD_INPUT
    _check(result.err, https, "TLS")


def test_dns_failure(
    workspace: Workspace,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = "https://no-such-host.invalid"  # .invalid never resolves (RFC 2606)
    result = run_cli(capsys, monkeypatch, workspace, url, "--execute")
    assert result.code == ExitCode.BAD_INPUT
    _check(result.err, "no-such-host.invalid", "DNS lookup failed")


def test_404_at_the_api_root(
    workspace: Workspace,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = SandboxApp(make_dataset(calls=5, agents=1))
    with sandbox(app) as url:
        wrong = f"{url}/v2"
        result = run_cli(capsys, monkeypatch, workspace, wrong, "--execute")
    assert result.code == ExitCode.BAD_INPUT
    _check(result.err, wrong, "HTTP 404 at /agents")
    assert not any(route.startswith("DELETE") for route, _ in app.stats.requests)
