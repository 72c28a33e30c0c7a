"""The client against the sandbox without faults: headers, models, pagination, typed errors."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from retention.api.client import CartesiaClient
from retention.api.errors import AuthError, NotFound, PaginationError, Rejected
from retention.api.models import Call
from retention.sandbox import Behaviour, Dataset, DatasetSpec, Faults, SandboxApp
from tests.api.conftest import NOW, in_process, status_count

pytestmark = pytest.mark.anyio


async def test_both_headers_go_with_every_request(app: SandboxApp, client: CartesiaClient) -> None:
    # The sandbox answers 401 without the bearer key and 400 without Cartesia-Version.
    agents = await client.list_agents()
    call = await anext(client.iter_calls(agents[0].id))
    assert isinstance(call, Call)
    await client.get_call(call.id)
    assert app.stats.requests.total() == status_count(app, 200) == 3
    assert app.stats.transcript_requests == 0  # never expand=transcript


async def test_agents_are_listed_as_the_dataset_has_them(
    dataset: Dataset, client: CartesiaClient
) -> None:
    agents = await client.list_agents()
    assert [a.id for a in agents] == [a.id for a in dataset.agents()]
    assert any(a.deleted_at is not None for a in agents)
    assert all(a.created_at is not None and a.created_at.tzinfo is not None for a in agents)


@pytest.mark.parametrize("page_size", [100, 7, 1])
async def test_an_agents_calls_come_in_the_datasets_order(
    dataset: Dataset, client: CartesiaClient, page_size: int
) -> None:
    for agent in dataset.agents():
        expected = [call.id for call in dataset.iter_calls(agent.id, transcripts=False)]
        listed = [call.id async for call in client.iter_calls(agent.id, page_size=page_size)]
        assert listed == expected


async def test_pages_of_100_stop_at_the_end_without_an_extra_request(
    dataset: Dataset, app: SandboxApp, client: CartesiaClient
) -> None:
    agent = max(dataset.agents(), key=lambda a: dataset.call_count(a.id))
    count = dataset.call_count(agent.id)
    assert count > 100
    listed = [call async for call in client.iter_calls(agent.id)]
    assert len(listed) == count
    # next_page is null on the last page: one request per page of 100, none more.
    assert app.stats.count("GET /agents/calls") == -(-count // 100)


async def test_an_agent_without_calls_yields_nothing() -> None:
    app = SandboxApp(Dataset(DatasetSpec(seed=3, agents=2, calls=0, now=NOW)))
    async with in_process(app) as client:
        for agent in await client.list_agents():
            assert [call async for call in client.iter_calls(agent.id)] == []


async def test_timestamps_are_aware_and_a_naive_one_is_read_as_utc(
    dataset: Dataset, app: SandboxApp, client: CartesiaClient
) -> None:
    call = next(dataset.iter_calls(dataset.agents()[0].id))
    app.override_call(call.id, {"start_time": "2026-01-02T03:04:05", "end_time": None})
    fetched = await client.get_call(call.id)
    assert fetched.start_time == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert fetched.end_time is None
    async for listed in client.iter_calls(call.agent_id):
        assert isinstance(listed, Call)
        for stamp in (listed.start_time, listed.end_time, listed.redacted_at):
            assert stamp is None or stamp.tzinfo is not None


async def test_a_cursor_that_does_not_advance_raises(
    dataset: Dataset, app: SandboxApp, client: CartesiaClient
) -> None:
    app.faults = Faults(stuck_cursor=True)
    agent = max(dataset.agents(), key=lambda a: dataset.call_count(a.id))
    with pytest.raises(PaginationError, match="does not advance"):
        async for _ in client.iter_calls(agent.id, page_size=10):
            pass
    assert app.stats.count("GET /agents/calls") == 2  # no looping


async def test_a_call_repeated_across_pages_is_yielded_once(
    dataset: Dataset, app: SandboxApp, client: CartesiaClient
) -> None:
    app.faults = Faults(duplicate_rate=1.0)  # every later page repeats the cursor's call
    for agent in dataset.agents():
        expected = [call.id for call in dataset.iter_calls(agent.id, transcripts=False)]
        assert [c.id async for c in client.iter_calls(agent.id, page_size=9)] == expected


async def test_an_unknown_agent_is_not_found(client: CartesiaClient) -> None:
    with pytest.raises(NotFound) as caught:
        async for _ in client.iter_calls("agent_nobody"):
            pass
    assert caught.value.status == 404 and caught.value.route == "/agents/calls"


async def test_delete_returns_the_redacted_call(dataset: Dataset, client: CartesiaClient) -> None:
    call = next(c for c in dataset.iter_all_calls() if c.terminal and c.redacted_at is None)
    redacted = await client.delete_call(call.id)
    assert redacted.id == call.id and redacted.redacted_at is not None
    assert redacted.redacted_at.tzinfo is not None
    assert redacted.transcript is None and redacted.summary is None and redacted.metadata is None
    assert (await client.get_call(call.id)).redacted_at == redacted.redacted_at


@pytest.mark.parametrize("status", [400, 409, 422])
async def test_deleting_a_call_that_is_not_terminal_is_rejected_not_retried(
    dataset: Dataset, app: SandboxApp, client: CartesiaClient, status: int
) -> None:
    app.behaviour = Behaviour(nonterminal_delete_status=status)
    call = next(c for c in dataset.iter_all_calls() if not c.terminal)
    with pytest.raises(Rejected) as caught:
        await client.delete_call(call.id)
    assert caught.value.status == status and caught.value.attempts == 1
    assert app.stats.count("DELETE /agents/calls/{call_id}") == 1
    assert call.id not in str(caught.value)  # the route template, not the call


async def test_a_second_delete_refused_with_409_is_rejected_for_the_caller_to_check(
    dataset: Dataset, app: SandboxApp, client: CartesiaClient
) -> None:
    app.behaviour = Behaviour(redelete_status=409)
    call = next(c for c in dataset.iter_all_calls() if c.terminal and c.redacted_at is None)
    first = await client.delete_call(call.id)
    with pytest.raises(Rejected):
        await client.delete_call(call.id)
    assert (await client.get_call(call.id)).redacted_at == first.redacted_at


async def test_unknown_call_is_not_found(client: CartesiaClient) -> None:
    with pytest.raises(NotFound):
        await client.get_call("call_doesnotexist")
    with pytest.raises(NotFound):
        await client.delete_call("call_doesnotexist")


async def test_a_revoked_key_stops_at_once(app: SandboxApp, client: CartesiaClient) -> None:
    app.revoke_key()
    with pytest.raises(AuthError) as caught:
        await client.list_agents()
    assert caught.value.status == 401 and caught.value.attempts == 1
    assert status_count(app, 401) == 1
