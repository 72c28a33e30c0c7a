"""The shared rate limiter: token bucket, in-flight cap, AIMD on 429 and a shared pause."""

from __future__ import annotations

import anyio
import pytest

from retention.api.limiter import RateLimiter

pytestmark = pytest.mark.anyio


async def test_grants_never_outrun_the_token_bucket() -> None:
    # Token bucket maths: in any span T at most burst + rate * T grants.
    limiter = RateLimiter(rate=400.0, concurrency=4, burst=4)
    granted_at: list[float] = []

    async def one() -> None:
        async with limiter.slot():
            granted_at.append(anyio.current_time())

    start = anyio.current_time()
    async with anyio.create_task_group() as tg:
        for _ in range(60):
            tg.start_soon(one)
    for index, at in enumerate(sorted(granted_at), start=1):
        assert index <= limiter.burst + limiter.rate * (at - start) + 1e-6
    assert limiter.counters.granted == 60


async def test_in_flight_never_exceeds_the_cap() -> None:
    limiter = RateLimiter(rate=10_000.0, concurrency=3)
    seen: list[int] = []

    async def one() -> None:
        async with limiter.slot():
            seen.append(limiter.counters.in_flight)
            await anyio.sleep(0.002)

    async with anyio.create_task_group() as tg:
        for _ in range(20):
            tg.start_soon(one)
    assert max(seen) == limiter.counters.peak_in_flight == 3
    assert limiter.counters.in_flight == 0


async def test_throttling_halves_the_rate_once_per_cooldown_and_never_below_the_floor() -> None:
    limiter = RateLimiter(rate=100.0, concurrency=4, min_rate=20.0, decrease_cooldown=1000.0)
    limiter.throttled(None)
    limiter.throttled(None)  # same burst of 429s: counted, not cut again
    assert limiter.current_rate == 50.0
    assert (limiter.counters.throttled, limiter.counters.decreases) == (2, 1)

    floor = RateLimiter(rate=100.0, concurrency=4, min_rate=20.0, decrease_cooldown=0.0)
    for _ in range(10):
        floor.throttled(None)
    assert floor.current_rate == 20.0


async def test_successes_bring_the_rate_back_additively_up_to_the_configured_rate() -> None:
    limiter = RateLimiter(rate=100.0, concurrency=4, increase_step=5.0)
    limiter.throttled(None)
    assert limiter.current_rate == 50.0
    for expected in (55.0, 60.0):
        limiter.succeeded()
        assert limiter.current_rate == expected
    for _ in range(100):
        limiter.succeeded()
    assert limiter.current_rate == 100.0


async def test_retry_after_pauses_every_request() -> None:
    limiter = RateLimiter(rate=1000.0, concurrency=8)
    start = anyio.current_time()
    limiter.throttled(0.05)
    granted_at: list[float] = []

    async def one() -> None:
        async with limiter.slot():
            granted_at.append(anyio.current_time())

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(one)
    assert min(granted_at) >= start + 0.05
    assert limiter.counters.pauses == 1


async def test_a_shorter_retry_after_does_not_shorten_a_pause() -> None:
    limiter = RateLimiter(rate=1000.0, concurrency=8)
    limiter.throttled(0.05)
    limiter.throttled(0.01)
    assert limiter.counters.pauses == 1


async def test_cancelled_waiter_gives_its_place_back() -> None:
    limiter = RateLimiter(rate=1000.0, concurrency=1)
    limiter.throttled(10.0)
    with anyio.move_on_after(0.01):
        async with limiter.slot():
            pytest.fail("granted during a pause")
    assert limiter.counters.in_flight == 0
    assert limiter.counters.granted == 0


def test_nonsense_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="rate"):
        RateLimiter(rate=0, concurrency=1)
    with pytest.raises(ValueError, match="concurrency"):
        RateLimiter(rate=1, concurrency=0)


async def test_a_read_waits_for_a_token_behind_the_first_waiter_only() -> None:
    """Reads (`ahead`) wait for tokens in a line of their own: a read that comes after
    five queued requests competes with the first of them, not with all five."""
    limiter = RateLimiter(rate=200.0, concurrency=10, burst=1)
    order: list[str] = []

    async def one(name: str, ahead: bool) -> None:
        async with limiter.slot(ahead=ahead):
            order.append(name)

    async with anyio.create_task_group() as tg:
        async with limiter.slot():  # the bucket is empty now
            order.append("first")
        for n in range(5):
            tg.start_soon(one, f"delete{n}", False)
        while limiter._turns.lines.others_waiting() < 4:  # one waits for its token, four in line
            await anyio.lowlevel.checkpoint()
        tg.start_soon(one, "read", True)
    assert order[0] == "first"
    assert order.index("read") <= 2  # after at most the first queued delete
    assert [name for name in order if name.startswith("delete")] == [f"delete{n}" for n in range(5)]
