"""Over real loopback sockets: uvicorn in a thread, the official SDK, the CLI command."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from cartesia import Cartesia

from retention.cli import main
from retention.sandbox import Dataset, DatasetSpec, Faults, SandboxApp, serve_in_thread

from .conftest import HEADERS, KEY, NOW


def test_official_sdk_lists_agents_and_pages_through_calls() -> None:
    dataset = Dataset(DatasetSpec(seed=11, agents=4, calls=330, now=NOW))
    app = SandboxApp(dataset)
    with serve_in_thread(app) as url:
        client = Cartesia(api_key=KEY, base_url=url, max_retries=0)
        agents = client.agents.list().summaries
        assert [a.id for a in agents] == [a.id for a in dataset.agents()]
        assert any(a.deleted_at is not None for a in agents)
        for agent in agents:
            seen = [call.id for call in client.agents.calls.list(agent_id=agent.id, limit=40)]
            expected = [c.id for c in dataset.iter_calls(agent.id, transcripts=False)]
            assert len(seen) == len(set(seen))
            assert set(seen) == set(expected)
        one = client.agents.calls.retrieve(expected[0])
        assert one.id == expected[0]
    assert app.stats.count("GET /agents/calls", 200) >= 4


def test_dropped_connection_over_a_socket_is_a_protocol_error() -> None:
    app = SandboxApp(Dataset(DatasetSpec(agents=2, calls=10, now=NOW)), Faults(drop_rate=1.0))
    with serve_in_thread(app) as url, httpx.Client(base_url=url, headers=HEADERS) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            client.get("/agents")
        app.faults = Faults()
        assert client.get("/agents").status_code == 200
        stats = client.get("/_sandbox/stats").json()
    assert stats["dropped"] == {"GET /agents": 1}
    assert stats["requests"] == {"GET /agents": {"200": 1}}


def test_serve_in_thread_stops_cleanly() -> None:
    app = SandboxApp(Dataset(DatasetSpec(agents=1, calls=5, now=NOW)))
    with serve_in_thread(app) as url:
        assert httpx.get(f"{url}/agents", headers=HEADERS).status_code == 200
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/agents", headers=HEADERS)


def read_line(stream: object, timeout_s: float) -> str:
    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)  # type: ignore[arg-type]
        assert selector.select(timeout_s), "no line within the timeout"
    return stream.readline()  # type: ignore[attr-defined,no-any-return]


def test_cli_prints_its_url_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "retention", "sandbox", "--port", "0", "--agents", "3"]
    command += ["--calls", "50", "--now", "2026-05-01T00:00:00Z", "--api-key", "sk_car_cli"]
    env = {**os.environ, "PYTHONUNBUFFERED": "0"}
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env
    ) as process:
        try:
            line = read_line(process.stdout, 60)
            assert line.startswith("serving http://127.0.0.1:")
            url = line.split()[1]
            assert not url.endswith(":0")
            headers = {**HEADERS, "Authorization": "Bearer sk_car_cli"}
            agents = httpx.get(f"{url}/agents", headers=headers).json()["summaries"]
            assert len(agents) == 3
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=30) == 0
            assert process.stdout is not None and process.stdout.read() == ""
        finally:
            if process.poll() is None:
                process.kill()


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--host", "0.0.0.0"], "--host"),
        (["--now", "yesterday"], "--now"),
        (["--now", "2026-05-01T00:00:00"], "--now"),
        (["--error-rate", "2"], "--error-rate"),
    ],
)
def test_cli_refuses_bad_flags_with_one_line(
    flags: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["sandbox", "--port", "0", *flags])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and named in err
