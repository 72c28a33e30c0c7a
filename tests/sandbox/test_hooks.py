"""The /_sandbox/ test hooks, as another engineer's test would use them over HTTP."""

from __future__ import annotations

import httpx
import pytest

from retention.sandbox import Dataset, Faults, SandboxApp

pytestmark = pytest.mark.anyio


async def test_faults_hook_replaces_the_knobs(client: httpx.AsyncClient, app: SandboxApp) -> None:
    response = await client.post("/_sandbox/faults", json={"error_rate": 1.0})
    assert response.status_code == 200 and response.json()["error_rate"] == 1.0
    assert app.faults == Faults(error_rate=1.0)
    assert (await client.get("/agents")).status_code >= 500
    await client.post("/_sandbox/faults", json={})
    assert app.faults == Faults()
    assert (await client.get("/_sandbox/faults")).json()["drop_rate"] == 0.0


@pytest.mark.parametrize("body", [b"[1]", b"not json", b'{"error_rate": 2}', b'{"nope": 1}'])
async def test_faults_hook_refuses_bad_bodies(client: httpx.AsyncClient, body: bytes) -> None:
    assert (await client.post("/_sandbox/faults", content=body)).status_code == 400


async def test_behaviour_hook(client: httpx.AsyncClient, app: SandboxApp) -> None:
    response = await client.post("/_sandbox/behaviour", json={"nonterminal_delete_status": 409})
    assert response.status_code == 200
    assert app.behaviour.nonterminal_delete_status == 409
    bad = await client.post("/_sandbox/behaviour", json={"redelete_status": 302})
    assert bad.status_code == 400


async def test_patch_call_undoes_a_redaction(client: httpx.AsyncClient, dataset: Dataset) -> None:
    call = next(c for c in dataset.iter_all_calls() if c.terminal and c.redacted_at is None)
    deleted = (await client.delete(f"/agents/calls/{call.id}")).json()
    assert deleted["redacted_at"] is not None
    patched = await client.patch(f"/_sandbox/calls/{call.id}", json={"redacted_at": None})
    assert patched.status_code == 200 and patched.json()["redacted_at"] is None
    assert (await client.get(f"/agents/calls/{call.id}")).json()["redacted_at"] is None
    assert (await client.delete(f"/agents/calls/{call.id}")).json()["redacted_at"] is not None


async def test_patch_call_refuses_unknown_and_ill_typed(
    client: httpx.AsyncClient, dataset: Dataset
) -> None:
    call = next(dataset.iter_all_calls())
    assert (await client.patch("/_sandbox/calls/call_x", json={})).status_code == 404
    bad = await client.patch(f"/_sandbox/calls/{call.id}", json={"start_time": "yesterday"})
    assert bad.status_code == 400
    assert (await client.patch(f"/_sandbox/calls/{call.id}", json={"id": "x"})).status_code == 400
    status = await client.patch(f"/_sandbox/calls/{call.id}", json={"status": "completed"})
    assert status.json()["status"] == "completed"


async def test_revoke_key_makes_every_request_401(
    client: httpx.AsyncClient, app: SandboxApp
) -> None:
    assert (await client.post("/_sandbox/revoke-key")).status_code == 200
    assert (await client.get("/agents")).status_code == 401
    assert app.key_revoked
    await client.post("/_sandbox/restore-key")
    assert (await client.get("/agents")).status_code == 200


async def test_removed_agent_disappears(client: httpx.AsyncClient, dataset: Dataset) -> None:
    agent = dataset.agents()[0]
    call_id = next(dataset.iter_calls(agent.id)).id
    assert (await client.delete(f"/_sandbox/agents/{agent.id}")).status_code == 200
    listed = (await client.get("/agents")).json()["summaries"]
    assert agent.id not in {a["id"] for a in listed}
    calls = await client.get("/agents/calls", params={"agent_id": agent.id})
    assert calls.status_code == 404
    assert (await client.get(f"/agents/calls/{call_id}")).status_code == 404
    assert (await client.delete(f"/_sandbox/agents/{agent.id}")).status_code == 404


async def test_stats_reset_and_unknown_hook(client: httpx.AsyncClient, app: SandboxApp) -> None:
    await client.get("/agents")
    reset = (await client.post("/_sandbox/stats/reset")).json()
    assert reset["requests_total"] == 0 and app.stats.total() == 0
    assert (await client.get("/_sandbox/nothing")).status_code == 404
