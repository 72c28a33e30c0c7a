"""`--timeout` bounds a whole attempt, body included, and each request has a time
budget over all its attempts, 429s included: no server can hold a run."""

from __future__ import annotations

import time

import pytest

from retention.api.client import WHOLE_REQUEST_TIMEOUT, CartesiaClient, request_timeout
from retention.api.errors import RetriesExhausted, TransportFailure, Unavailable
from retention.api.retry import RetryPolicy
from tests.api.scripted import KEY, Answer, Scripted, in_process, over_loopback

pytestmark = pytest.mark.anyio

BODY = b'{"summaries": [' + b'{"id": "agent_1"}, ' * 20 + b'{"id": "agent_2"}]}'


async def test_a_trickling_server_cannot_hold_a_request_beyond_the_timeout() -> None:
    # One byte every 20 ms: each read is quick, so only a whole-request bound stops it.
    app = Scripted(lambda _request: Answer(200, BODY, chunk_delay=0.02))
    retry = RetryPolicy(max_attempts=2, base_delay=0.001)
    with over_loopback(app) as base_url:
        async with CartesiaClient(
            base_url=base_url, api_key=KEY, retry=retry, timeout=request_timeout(0.3)
        ) as client:
            started = time.monotonic()
            with pytest.raises(RetriesExhausted) as caught:
                await client.list_agents()
            elapsed = time.monotonic() - started
    assert len(BODY) * 0.02 > 8  # the body alone would take seconds
    assert isinstance(caught.value.cause, TransportFailure)
    assert caught.value.cause.reason == WHOLE_REQUEST_TIMEOUT
    assert caught.value.may_have_taken_effect and app.count("GET") == 2
    assert elapsed < 2 * 0.3 + 1.0  # two attempts of 0.3 s, with room for a busy machine


async def test_a_fast_enough_trickle_still_succeeds() -> None:
    small = b'{"summaries": [{"id": "agent_1"}]}'
    app = Scripted(lambda _request: Answer(200, small, chunk_delay=0.001))
    with over_loopback(app) as base_url:
        async with CartesiaClient(base_url=base_url, api_key=KEY, timeout=5.0) as client:
            assert [a.id for a in await client.list_agents()] == ["agent_1"]


async def test_retries_stop_when_the_time_budget_is_spent() -> None:
    # Endless 503s asking for 50 ms each; a 0.3 s budget allows about six attempts,
    # far below the attempt bound of 1000.
    app = Scripted(lambda _request: Answer(503, headers=(("retry-after-ms", "50"),)))
    retry = RetryPolicy(max_attempts=1000, budget=0.3)
    started = time.monotonic()
    with pytest.raises(RetriesExhausted) as caught:
        async with in_process(app, retry=retry) as client:
            await client.list_agents()
    elapsed = time.monotonic() - started
    assert caught.value.budget_spent and isinstance(caught.value.cause, Unavailable)
    assert 2 <= app.count("GET") <= 7 and elapsed < 1.5


async def test_endless_429s_also_end_at_the_budget() -> None:
    app = Scripted(lambda _request: Answer(429, headers=(("retry-after-ms", "50"),)))
    retry = RetryPolicy(max_throttled=10_000, budget=0.3)
    with pytest.raises(RetriesExhausted) as caught:
        async with in_process(app, retry=retry) as client:
            await client.delete_call("call_1")
    assert caught.value.budget_spent and caught.value.status == 429
    assert not caught.value.may_have_taken_effect and app.count("DELETE") <= 7


def test_the_default_budget_is_four_timeouts_and_at_least_two_minutes() -> None:
    assert RetryPolicy().time_budget(10.0) == 120.0
    assert RetryPolicy().time_budget(45.0) == 180.0
    assert RetryPolicy(budget=7.5).time_budget(45.0) == 7.5
    with pytest.raises(ValueError, match="budget"):
        RetryPolicy(budget=0)
    client = CartesiaClient(base_url="http://127.0.0.1", api_key=KEY, timeout=request_timeout(50))
    assert client.request_seconds == 50 and client.budget_seconds == 200
