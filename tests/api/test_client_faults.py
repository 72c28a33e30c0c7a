"""Retries, throttling and the shared limiter against the sandbox's injected faults."""

from __future__ import annotations

import anyio
import pytest
import structlog

from retention.api.client import WHOLE_REQUEST_TIMEOUT, CartesiaClient
from retention.api.errors import AuthError, RetriesExhausted, TransportFailure, Unavailable
from retention.api.limiter import RateLimiter
from retention.api.retry import RetryPolicy
from retention.sandbox import Behaviour, Dataset, Faults, SandboxApp, serve_in_thread
from tests.api.conftest import FAST_RETRY, SANDBOX_KEY, in_process, server_errors, status_count

pytestmark = pytest.mark.anyio


async def list_everything(client: CartesiaClient) -> dict[str, list[str | None]]:
    return {
        agent.id: [call.id async for call in client.iter_calls(agent.id, page_size=20)]
        for agent in await client.list_agents()
    }


def expected_listing(dataset: Dataset) -> dict[str, list[str]]:
    return {
        agent.id: [c.id for c in dataset.iter_calls(agent.id, transcripts=False)]
        for agent in dataset.agents()
    }


async def test_server_errors_are_retried_until_the_listing_is_right(
    dataset: Dataset, app: SandboxApp
) -> None:
    app.faults = Faults(error_rate=0.3)
    async with in_process(app) as client:
        assert await list_everything(client) == expected_listing(dataset)
    assert client.stats.retries == server_errors(app) > 0
    assert sum(n for s, n in client.stats.by_status.items() if s >= 500) == server_errors(app)


async def test_malformed_bodies_are_retried(dataset: Dataset, app: SandboxApp) -> None:
    app.faults = Faults(malformed_rate=0.3)
    async with in_process(app) as client:
        assert await list_everything(client) == expected_listing(dataset)
    assert client.stats.malformed == client.stats.retries == sum(app.stats.malformed.values()) > 0


async def test_dropped_connections_are_retried_in_process(
    dataset: Dataset, app: SandboxApp
) -> None:
    app.faults = Faults(drop_rate=0.3)
    async with in_process(app) as client:
        assert await list_everything(client) == expected_listing(dataset)
    assert client.stats.transport_errors == sum(app.stats.dropped.values()) > 0


async def test_dropped_connections_over_loopback_are_retried(
    dataset: Dataset, app: SandboxApp
) -> None:
    app.faults = Faults(drop_rate=0.4)
    with serve_in_thread(app) as base_url:
        async with CartesiaClient(
            base_url=base_url, api_key=SANDBOX_KEY, retry=FAST_RETRY
        ) as client:
            assert await list_everything(client) == expected_listing(dataset)
    assert client.stats.transport_errors == sum(app.stats.dropped.values()) > 0


async def test_a_delete_resent_after_an_ambiguous_failure_is_flagged(
    dataset: Dataset, app: SandboxApp
) -> None:
    # The DELETE takes effect, then the answer is lost; the retry finds it redacted.
    app.faults = Faults(error_rate=1.0, after_effect=True)
    call = next(c for c in dataset.iter_all_calls() if c.terminal and c.redacted_at is None)
    async with in_process(app, retry=RetryPolicy(max_attempts=3, base_delay=0.001)) as client:
        with pytest.raises(RetriesExhausted) as caught:
            await client.delete_call(call.id)
        assert caught.value.resent and caught.value.attempts == 3
        assert client.stats.deletes_resent == 2
        app.faults = Faults()
        app.behaviour = Behaviour(redelete_status=409)
        assert (await client.get_call(call.id)).redacted_at is not None
    assert app.stats.deletions == 1


async def test_retries_are_bounded(app: SandboxApp) -> None:
    app.faults = Faults(error_rate=1.0)
    async with in_process(app, retry=RetryPolicy(max_attempts=3, base_delay=0.001)) as client:
        with pytest.raises(RetriesExhausted) as caught:
            await client.list_agents()
    assert isinstance(caught.value.cause, Unavailable)
    assert caught.value.attempts == 3 and caught.value.status in (500, 502, 503, 504)
    assert server_errors(app) == 3 and client.stats.retries == 2


async def test_a_server_slower_than_the_timeout_is_retried_then_given_up(app: SandboxApp) -> None:
    app.faults = Faults(latency_ms=200)
    retry = RetryPolicy(max_attempts=2, base_delay=0.001)
    with serve_in_thread(app) as base_url:
        async with CartesiaClient(
            base_url=base_url, api_key=SANDBOX_KEY, retry=retry, timeout=0.05
        ) as client:
            with pytest.raises(RetriesExhausted) as caught:
                await client.list_agents()
    assert isinstance(caught.value.cause, TransportFailure)
    # Whichever bound fires first: httpx's read timeout or the whole-request deadline.
    assert caught.value.cause.reason in ("ReadTimeout", WHOLE_REQUEST_TIMEOUT)
    assert caught.value.status is None and caught.value.may_have_taken_effect
    assert client.stats.transport_errors == 2


async def test_a_wrong_key_fails_at_once_and_is_never_shown(app: SandboxApp) -> None:
    wrong = "sk_car_wrongsecretvalue42"
    with structlog.testing.capture_logs() as logs:
        async with in_process(app, api_key=wrong) as client:
            with pytest.raises(AuthError) as caught:
                await client.list_agents()
    assert caught.value.status == 401 and status_count(app, 401) == 1
    for text in (str(caught.value), repr(caught.value), repr(client), str(logs)):
        assert wrong not in text and "wrongsecret" not in text


async def test_retry_log_lines_name_the_route_not_the_call_nor_the_key(
    dataset: Dataset, app: SandboxApp
) -> None:
    call = next(dataset.iter_all_calls())
    app.faults = Faults(error_rate=1.0)
    with structlog.testing.capture_logs() as logs:
        async with in_process(app, retry=RetryPolicy(max_attempts=2, base_delay=0.001)) as client:
            with pytest.raises(RetriesExhausted) as caught:
                await client.get_call(call.id)
    retries = [line for line in logs if line["event"] == "api.retry"]
    assert len(retries) == 1
    assert retries[0]["route"] == "/agents/calls/{call_id}" and retries[0]["attempt"] == 1
    assert {"method", "status", "delay"} <= set(retries[0])
    for text in (str(logs), str(caught.value)):
        assert call.id not in text and SANDBOX_KEY not in text


async def test_429s_are_answered_by_slowing_down_and_the_listing_still_converges(
    dataset: Dataset, app: SandboxApp
) -> None:
    # The sandbox allows one request in flight; eight tasks share one limiter of four.
    app.faults = Faults(max_in_flight=1, latency_ms=5)
    limiter = RateLimiter(rate=2000.0, concurrency=4, decrease_cooldown=0.0, min_rate=50.0)
    calls = [c.id for c in dataset.iter_calls(dataset.agents()[0].id, transcripts=False)][:24]
    async with in_process(
        app, gate=limiter, retry=RetryPolicy(max_attempts=30, max_delay=0.05)
    ) as client:
        fetched: list[str] = []

        async def fetch(call_ids: list[str]) -> None:
            for call_id in call_ids:
                fetched.append((await client.get_call(call_id)).id)

        async with anyio.create_task_group() as tg:
            for start in range(0, len(calls), 3):
                tg.start_soon(fetch, calls[start : start + 3])
    assert sorted(fetched) == sorted(calls)
    answered_429 = status_count(app, 429)
    assert answered_429 > 0
    assert client.stats.throttled == limiter.counters.throttled == answered_429
    assert limiter.counters.decreases > 0 and limiter.counters.pauses > 0
    assert app.stats.peak_in_flight <= limiter.concurrency


async def test_in_flight_requests_never_exceed_the_limiters_cap(
    dataset: Dataset, app: SandboxApp
) -> None:
    app.faults = Faults(latency_ms=10)
    limiter = RateLimiter(rate=5000.0, concurrency=3)
    agents = dataset.agents()
    async with in_process(app, gate=limiter) as client, anyio.create_task_group() as tg:
        for agent in agents:
            for _ in range(3):
                tg.start_soon(list_agent, client, agent.id)
    assert app.stats.peak_in_flight == limiter.counters.peak_in_flight == 3
    assert status_count(app, 429) == 0


async def list_agent(client: CartesiaClient, agent_id: str) -> None:
    async for _ in client.iter_calls(agent_id, page_size=25):
        pass


async def test_the_rate_drops_on_429_and_recovers_on_successes(
    dataset: Dataset, app: SandboxApp
) -> None:
    limiter = RateLimiter(rate=1000.0, concurrency=2, increase_step=100.0, decrease_cooldown=0.0)
    call = next(dataset.iter_all_calls())
    app.faults = Faults(max_in_flight=1, latency_ms=5)
    async with in_process(
        app, gate=limiter, retry=RetryPolicy(max_attempts=20, max_delay=0.05)
    ) as client:
        async with anyio.create_task_group() as tg:
            for _ in range(6):
                tg.start_soon(client.get_call, call.id)
        assert limiter.counters.decreases > 0
        lowered = limiter.current_rate
        assert lowered < limiter.rate
        app.faults = Faults()
        # Additive increase: (rate - lowered) / step successes bring it back.
        needed = -int(-(limiter.rate - lowered) // limiter.increase_step)
        for _ in range(needed):
            await client.get_call(call.id)
    assert limiter.current_rate == limiter.rate


async def test_a_limiter_under_the_apis_rate_never_meets_a_429(
    dataset: Dataset, app: SandboxApp
) -> None:
    # Token bucket maths: our grants never exceed 4 + 300 t; the sandbox's bucket holds
    # 400 + 400 t, so no request can find it empty.
    app.faults = Faults(rate=400.0)
    limiter = RateLimiter(rate=300.0, concurrency=4, burst=4)
    calls = [c.id for c in dataset.iter_calls(dataset.agents()[0].id, transcripts=False)][:40]
    async with in_process(app, gate=limiter) as client, anyio.create_task_group() as tg:
        for call_id in calls:
            tg.start_soon(client.get_call, call_id)
    assert status_count(app, 200) == len(calls) and status_count(app, 429) == 0
    assert limiter.current_rate == limiter.rate


@pytest.mark.parametrize(("max_throttled", "succeeds"), [(40, True), (0, False)])
async def test_429s_have_their_own_bound_apart_from_failed_attempts(
    dataset: Dataset, app: SandboxApp, max_throttled: int, succeeds: bool
) -> None:
    # One request in flight allowed; six at once: most are refused at first. With a
    # single attempt for failures, only the separate 429 budget lets them through.
    app.faults = Faults(max_in_flight=1, latency_ms=5)
    call = next(dataset.iter_all_calls())
    retry = RetryPolicy(max_attempts=1, max_delay=0.02, max_throttled=max_throttled)
    outcomes: list[int | None] = []  # None: fetched; else the status that ended it
    async with in_process(app, retry=retry) as client:

        async def fetch() -> None:
            try:
                await client.get_call(call.id)
            except RetriesExhausted as err:
                outcomes.append(err.cause.status)
            else:
                outcomes.append(None)

        async with anyio.create_task_group() as tg:
            for _ in range(6):
                tg.start_soon(fetch)
    assert status_count(app, 429) > 0
    assert set(outcomes) == ({None} if succeeds else {None, 429})
