"""One rate limiter shared by every request of a run (listing, reading, deleting, retries).

A token bucket bounds the request rate, a semaphore bounds requests in flight. When
the API answers 429 the current rate is cut multiplicatively (at most once per
cooldown, so a volley of 429s from one burst counts once) and every request pauses
for the server's Retry-After; each success then adds a small step back, up to the
configured rate (additive increase, multiplicative decrease, as TCP does).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio


@dataclass
class LimiterCounters:
    """What the limiter did, for tests, progress and the final summary."""

    granted: int = 0  # slots handed out
    throttled: int = 0  # 429s reported
    decreases: int = 0  # times the rate was actually cut
    pauses: int = 0  # times a shared pause was set or extended
    in_flight: int = 0
    peak_in_flight: int = 0


class RateLimiter:
    """Token bucket (`rate` per second, `burst` deep) plus an in-flight cap (`concurrency`)."""

    def __init__(
        self,
        rate: float,
        concurrency: int,
        *,
        min_rate: float | None = None,
        burst: float | None = None,
        decrease_factor: float = 0.5,
        increase_step: float | None = None,
        decrease_cooldown: float = 0.5,
        max_pause: float = 60.0,
    ) -> None:
        if not rate > 0:
            raise ValueError("rate must be positive")
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if not 0 < decrease_factor < 1:
            raise ValueError("decrease_factor must be between 0 and 1")
        self.rate = float(rate)
        self.concurrency = concurrency
        self.min_rate = min(self.rate, min_rate if min_rate is not None else max(0.1, rate / 20))
        if not self.min_rate > 0:
            raise ValueError("min_rate must be positive")
        # A small burst: enough to start `concurrency` requests at once, never more than ~1 s.
        self.burst = burst if burst is not None else max(1.0, min(float(concurrency), self.rate))
        if self.burst < 1:
            raise ValueError("burst must be at least 1")
        self.decrease_factor = decrease_factor
        # Gentle recovery: from half the rate back in about 500 successes, so a rate
        # just cut by 429s does not climb straight back into them.
        self.increase_step = increase_step if increase_step is not None else self.rate / 1000
        self.decrease_cooldown = decrease_cooldown
        self.max_pause = max_pause
        self.counters = LimiterCounters()
        self._current = self.rate
        self._tokens = self.burst
        self._refilled_at: float | None = None
        self._paused_until = 0.0
        self._last_decrease: float | None = None
        self._places = anyio.Semaphore(concurrency)
        self._bucket_lock = anyio.Lock()  # waiters take tokens one at a time, in order

    @property
    def current_rate(self) -> float:
        return self._current

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Wait for an in-flight place, then for a token (and the end of any pause)."""
        async with self._places:
            await self._take_token()
            self.counters.granted += 1
            self.counters.in_flight += 1
            self.counters.peak_in_flight = max(
                self.counters.peak_in_flight, self.counters.in_flight
            )
            try:
                yield
            finally:
                self.counters.in_flight -= 1

    async def _take_token(self) -> None:
        async with self._bucket_lock:
            while True:
                now = anyio.current_time()
                self._refill(now)
                wait = max(self._paused_until - now, 0.0)
                if wait <= 0 and self._tokens >= 1:
                    self._tokens -= 1
                    return
                if wait <= 0:
                    wait = (1 - self._tokens) / self._current
                # Re-checked after the sleep: a 429 meanwhile may have lengthened the pause.
                await anyio.sleep(wait)

    def _refill(self, now: float) -> None:
        if self._refilled_at is not None and now > self._refilled_at:
            self._tokens = min(self.burst, self._tokens + (now - self._refilled_at) * self._current)
        self._refilled_at = now if self._refilled_at is None else max(now, self._refilled_at)

    def throttled(self, retry_after: float | None) -> None:
        """The API answered 429: slow down, and pause everyone for `retry_after` seconds."""
        now = anyio.current_time()
        self._refill(now)
        self.counters.throttled += 1
        if self._last_decrease is None or now - self._last_decrease >= self.decrease_cooldown:
            self._current = max(self.min_rate, self._current * self.decrease_factor)
            self._last_decrease = now
            self.counters.decreases += 1
            self._tokens = min(self._tokens, 0.0)  # no burst straight after a 429
        if retry_after is not None and retry_after > 0:
            until = now + min(retry_after, self.max_pause)
            if until > self._paused_until:
                self._paused_until = until
                self.counters.pauses += 1

    def succeeded(self) -> None:
        """A request went through: creep back towards the configured rate."""
        if self._current < self.rate:
            now = anyio.current_time()
            self._refill(now)  # tokens earned so far accrue at the old, lower rate
            self._current = min(self.rate, self._current + self.increase_step)
