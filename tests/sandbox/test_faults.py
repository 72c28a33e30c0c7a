"""Every fault knob, in-process (drops also over a real socket, in test_server.py)."""

from __future__ import annotations

import anyio
import httpx
import msgspec
import pytest

from retention.sandbox import Dataset, DroppedConnection, Faults, SandboxApp

from .conftest import current

pytestmark = pytest.mark.anyio


def some_agent(dataset: Dataset) -> str:
    return max(dataset.agents(), key=lambda a: dataset.call_count(a.id)).id


async def test_rate_limit_answers_429_with_retry_after(
    client: httpx.AsyncClient, app: SandboxApp
) -> None:
    app.faults = Faults(rate=2.0)  # a burst of two, then empty for about half a second
    statuses = [(await client.get("/agents")) for _ in range(4)]
    assert [r.status_code for r in statuses[:2]] == [200, 200]
    limited = [r for r in statuses if r.status_code == 429]
    assert limited
    assert int(limited[0].headers["retry-after"]) >= 1
    assert 0 < int(limited[0].headers["retry-after-ms"]) <= 1000
    app.faults = Faults(rate=2.0, retry_after_ms=False)
    while (response := await client.get("/agents")).status_code != 429:
        pass
    assert "retry-after-ms" not in response.headers and "retry-after" in response.headers
    assert app.stats.count("GET /agents", 429) >= 2


async def test_max_in_flight_answers_429_and_peak_is_counted(
    client: httpx.AsyncClient, app: SandboxApp
) -> None:
    app.faults = Faults(max_in_flight=2, latency_ms=50)
    statuses: list[int] = []

    async def one() -> None:
        statuses.append((await client.get("/agents")).status_code)

    async with anyio.create_task_group() as group:
        for _ in range(6):
            group.start_soon(one)
    assert sorted(statuses).count(200) == 2 and statuses.count(429) == 4
    assert app.stats.peak_in_flight == 2  # refused requests never count as in flight
    assert app.stats.in_flight == 0


async def test_latency_with_jitter_still_answers(
    client: httpx.AsyncClient, app: SandboxApp
) -> None:
    app.faults = Faults(latency_ms=2, jitter_ms=2)
    assert all([(await client.get("/agents")).status_code == 200 for _ in range(3)])


async def test_error_rate_answers_5xx(client: httpx.AsyncClient, app: SandboxApp) -> None:
    app.faults = Faults(error_rate=1.0)
    response = await client.get("/agents")
    assert 500 <= response.status_code < 600
    response.json()  # error bodies stay JSON
    app.faults = Faults(error_rate=0.5)
    statuses = {(await client.get("/agents")).status_code for _ in range(40)}
    assert 200 in statuses and statuses - {200}


async def test_error_before_effect_leaves_the_call_alone(
    client: httpx.AsyncClient, dataset: Dataset, app: SandboxApp
) -> None:
    call = next(c for c in dataset.iter_all_calls() if c.terminal and c.redacted_at is None)
    app.faults = Faults(error_rate=1.0)
    assert (await client.delete(f"/agents/calls/{call.id}")).status_code >= 500
    assert current(dataset, call.id).redacted_at is None
    app.faults = Faults(error_rate=1.0, after_effect=True)
    assert (await client.delete(f"/agents/calls/{call.id}")).status_code >= 500
    assert current(dataset, call.id).redacted_at is not None
    assert app.stats.deletions == 1


async def test_drop_rate_breaks_the_response(client: httpx.AsyncClient, app: SandboxApp) -> None:
    app.faults = Faults(drop_rate=1.0)
    with pytest.raises(httpx.RemoteProtocolError) as caught:
        await client.get("/agents")
    assert isinstance(caught.value, DroppedConnection)
    assert app.stats.dropped["GET /agents"] == 1
    assert app.stats.in_flight == 0


async def test_malformed_bodies_are_not_json(client: httpx.AsyncClient, app: SandboxApp) -> None:
    app.faults = Faults(malformed_rate=1.0)
    response = await client.get("/agents")
    assert response.status_code == 200
    with pytest.raises(msgspec.DecodeError):
        msgspec.json.decode(response.content)
    assert app.stats.malformed["GET /agents"] == 1


async def test_duplicate_rate_repeats_the_cursor_call(
    client: httpx.AsyncClient, dataset: Dataset, app: SandboxApp
) -> None:
    agent_id = some_agent(dataset)
    app.faults = Faults(duplicate_rate=1.0)
    first = (await client.get("/agents/calls", params={"agent_id": agent_id})).json()
    cursor = first["next_page"]
    params = {"agent_id": agent_id, "starting_after": cursor}
    second = (await client.get("/agents/calls", params=params)).json()
    assert second["data"][0]["id"] == cursor == first["data"][-1]["id"]
    assert len(second["data"]) == 10
    assert second["next_page"] == second["data"][-1]["id"]


async def test_stuck_cursor_does_not_advance(
    client: httpx.AsyncClient, dataset: Dataset, app: SandboxApp
) -> None:
    agent_id = some_agent(dataset)
    app.faults = Faults(stuck_cursor=True)
    first = (await client.get("/agents/calls", params={"agent_id": agent_id})).json()
    params = {"agent_id": agent_id, "starting_after": first["next_page"]}
    second = (await client.get("/agents/calls", params=params)).json()
    assert second["next_page"] == first["next_page"]
    assert second["data"][0]["id"] != first["data"][0]["id"]


async def test_hooks_bypass_faults(client: httpx.AsyncClient, app: SandboxApp) -> None:
    app.faults = Faults(error_rate=1.0, drop_rate=1.0, rate=0.001)
    assert (await client.get("/_sandbox/stats")).status_code == 200


@pytest.mark.parametrize(
    "knobs",
    [{"error_rate": 1.5}, {"rate": 0}, {"max_in_flight": 0}, {"latency_ms": -1}, {"bogus": 1}],
)
def test_bad_knobs_are_refused(knobs: dict[str, object]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message varies by knob
        Faults.from_json(knobs)
