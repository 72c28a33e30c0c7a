"""The API routes, in-process: auth, version, listing, pagination, lookup and DELETE."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from retention.sandbox import Behaviour, Dataset, SandboxApp

from .conftest import KEY, current

pytestmark = pytest.mark.anyio

REDACTED_KEYS = {
    "id",
    "agent_id",
    "agent_name",
    "zdr_enabled",
    "redacted_at",
    "start_time",
    "end_time",
    "telephony_params",
    "status",
    "end_reason",
    "deployment_id",
    "deployment_version_id",
    "deployment_region",
}
CALL_KEYS = REDACTED_KEYS | {"transcript", "summary", "error_message", "metadata"}


def busiest(dataset: Dataset) -> str:
    return max(dataset.agents(), key=lambda a: dataset.call_count(a.id)).id


async def list_all(client: httpx.AsyncClient, agent_id: str, limit: int) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    params: dict[str, Any] = {"agent_id": agent_id, "limit": limit}
    while True:
        body = (await client.get("/agents/calls", params=params)).json()
        seen.extend(body["data"])
        if body["next_page"] is None:
            return seen
        assert body["next_page"] == body["data"][-1]["id"]
        params["starting_after"] = body["next_page"]


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer sk_car_wrong", KEY, f"Basic {KEY}", f"Bearer {KEY}x"],
)
async def test_bad_or_missing_key_is_401(app: SandboxApp, authorization: str | None) -> None:
    headers = {"Cartesia-Version": "2026-03-01"}
    if authorization is not None:
        headers["Authorization"] = authorization
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://s") as bare:
        response = await bare.get("/agents", headers=headers)
    assert response.status_code == 401
    assert KEY not in response.text


@pytest.mark.parametrize(
    ("version", "status"),
    [("2026-03-01", 200), ("2026-08-14", 200), ("2027-01-31", 200), ("2026-02-28", 400),
     ("2026-13-01", 400), ("latest", 400), ("", 400)],
)  # fmt: skip
async def test_version_header(client: httpx.AsyncClient, version: str, status: int) -> None:
    response = await client.get("/agents", headers={"Cartesia-Version": version})
    assert response.status_code == status


async def test_missing_version_is_400(app: SandboxApp) -> None:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://s") as bare:
        response = await bare.get("/agents", headers={"Authorization": f"Bearer {KEY}"})
    assert response.status_code == 400


async def test_agents_are_summaries_with_nulls_present(
    client: httpx.AsyncClient, dataset: Dataset
) -> None:
    body = (await client.get("/agents")).json()
    assert [a["id"] for a in body["summaries"]] == [a.id for a in dataset.agents()]
    live = next(a for a in body["summaries"] if a["deleted_at"] is None)
    assert "deleted_at" in live and live["phone_numbers"][0]["number"].startswith("+1555")
    assert any(a["deleted_at"] for a in body["summaries"])


async def test_listing_defaults_to_ten_newest_first(
    client: httpx.AsyncClient, dataset: Dataset
) -> None:
    agent_id = busiest(dataset)
    body = (await client.get("/agents/calls", params={"agent_id": agent_id})).json()
    assert len(body["data"]) == 10
    assert set(body["data"][0]) == CALL_KEYS
    starts = [c["start_time"] for c in body["data"] if c["start_time"]]
    assert starts == sorted(starts, reverse=True)
    assert all(c["transcript"] is None for c in body["data"])


@pytest.mark.parametrize("limit", [1, 7, 100])
async def test_forward_paging_sees_every_call_once(
    client: httpx.AsyncClient, dataset: Dataset, limit: int
) -> None:
    agent_id = busiest(dataset)
    seen = await list_all(client, agent_id, limit)
    assert len(seen) == dataset.call_count(agent_id)
    assert len({c["id"] for c in seen}) == len(seen)
    assert all(c["agent_id"] == agent_id for c in seen)


async def test_backward_paging_with_ending_before(
    client: httpx.AsyncClient, dataset: Dataset
) -> None:
    agent_id = busiest(dataset)
    forward = await list_all(client, agent_id, 25)
    ids = [c["id"] for c in forward]
    pivot = ids[60]
    body = (
        await client.get(
            "/agents/calls", params={"agent_id": agent_id, "ending_before": pivot, "limit": 20}
        )
    ).json()
    assert [c["id"] for c in body["data"]] == ids[40:60]
    first = (
        await client.get(
            "/agents/calls", params={"agent_id": agent_id, "ending_before": ids[3], "limit": 20}
        )
    ).json()
    assert [c["id"] for c in first["data"]] == ids[:3]


@pytest.mark.parametrize("limit", ["0", "101", "-1", "ten"])
async def test_limit_out_of_range_is_400(
    client: httpx.AsyncClient, dataset: Dataset, limit: str
) -> None:
    params = {"agent_id": busiest(dataset), "limit": limit}
    assert (await client.get("/agents/calls", params=params)).status_code == 400


async def test_agent_id_is_required(client: httpx.AsyncClient) -> None:
    assert (await client.get("/agents/calls")).status_code == 400


async def test_cursor_of_another_agent_is_400(client: httpx.AsyncClient, dataset: Dataset) -> None:
    first, second = dataset.agents()[:2]
    foreign = next(dataset.iter_calls(second.id)).id
    params = {"agent_id": first.id, "starting_after": foreign}
    assert (await client.get("/agents/calls", params=params)).status_code == 400
    params["starting_after"] = "call_garbage"
    assert (await client.get("/agents/calls", params=params)).status_code == 400


async def test_unknown_agent_is_404_or_empty_by_behaviour(
    client: httpx.AsyncClient, app: SandboxApp
) -> None:
    params = {"agent_id": "agent_missing"}
    assert (await client.get("/agents/calls", params=params)).status_code == 404
    app.behaviour = Behaviour(unknown_agent_status=200)
    response = await client.get("/agents/calls", params=params)
    assert response.json() == {"data": [], "next_page": None}


async def test_get_call_includes_transcript_and_unknown_is_404(
    client: httpx.AsyncClient, dataset: Dataset
) -> None:
    call = next(c for c in dataset.iter_all_calls() if c.transcript)
    body = (await client.get(f"/agents/calls/{call.id}")).json()
    assert body["id"] == call.id and body["transcript"] and body["redacted_at"] is None
    assert (await client.get("/agents/calls/call_unknown")).status_code == 404
    listed = await client.get(
        "/agents/calls", params={"agent_id": call.agent_id, "expand": "transcript", "limit": 100}
    )
    assert any(c["transcript"] for c in listed.json()["data"])


async def test_delete_redacts_and_keeps_only_documented_fields(
    client: httpx.AsyncClient, dataset: Dataset, app: SandboxApp
) -> None:
    call = next(c for c in dataset.iter_all_calls() if c.terminal and c.summary and c.metadata)
    response = await client.delete(f"/agents/calls/{call.id}")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == REDACTED_KEYS
    assert body["redacted_at"] is not None and body["status"] == call.status
    assert call.summary is not None and call.summary not in response.text
    assert call.telephony_params is None or str(call.telephony_params.to) not in response.text
    assert (await client.get(f"/agents/calls/{call.id}")).json() == body
    again = await client.delete(f"/agents/calls/{call.id}")
    assert again.status_code == 200 and again.json()["redacted_at"] == body["redacted_at"]
    assert app.stats.deletions == 1
    app.behaviour = Behaviour(redelete_status=409)
    assert (await client.delete(f"/agents/calls/{call.id}")).status_code == 409


@pytest.mark.parametrize("status", [400, 409])
async def test_delete_of_non_terminal_call_is_refused(
    client: httpx.AsyncClient, dataset: Dataset, app: SandboxApp, status: int
) -> None:
    app.behaviour = Behaviour(nonterminal_delete_status=status)
    for running in [c for c in dataset.iter_all_calls() if not c.terminal][:3]:
        assert (await client.delete(f"/agents/calls/{running.id}")).status_code == status
        assert current(dataset, running.id).redacted_at is None
    assert (await client.delete("/agents/calls/call_unknown")).status_code == 404
    assert app.stats.deletions == 0


async def test_unknown_route_and_method(client: httpx.AsyncClient) -> None:
    assert (await client.get("/voices")).status_code == 404
    assert (await client.post("/agents/calls")).status_code == 405


async def test_stats_count_routes_and_statuses(client: httpx.AsyncClient, app: SandboxApp) -> None:
    await client.get("/agents")
    await client.get("/agents/calls")
    stats = (await client.get("/_sandbox/stats")).json()
    assert stats["requests"] == {"GET /agents": {"200": 1}, "GET /agents/calls": {"400": 1}}
    assert stats["requests_total"] == 2 and stats["deletions"] == 0
    assert app.stats.count("GET /agents", 200) == 1
