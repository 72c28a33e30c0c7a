"""The gates every request of a command passes (listing, reading, deleting, retries).

`RateLimiter`: a token bucket bounds the request rate, a semaphore bounds requests in
flight. When the API answers 429 the current rate is cut multiplicatively (at most once
per cooldown, so a volley of 429s from one burst counts once) and every request pauses
for the server's Retry-After; each success then adds a small step back, up to the
configured rate (additive increase, multiplicative decrease, as TCP does).

`AdaptiveLimiter` (a run's gate): the number of requests in flight is found, not
configured: it grows while latency stays flat and no 429 comes, and is cut on a 429 or
a latency rise (`AdaptiveLimit` holds the rules); `--concurrency` and `--rate`, when
given, are ceilings it never exceeds.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Protocol

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


class _Pausing(Protocol):
    max_pause: float
    counters: LimiterCounters


def _paused(until: float, now: float, retry_after: float | None, limiter: _Pausing) -> float:
    """When a shared pause ends once a 429 asked for `retry_after` seconds (capped by
    the limiter's `max_pause`); an extension is counted as a pause."""
    if retry_after is None or retry_after <= 0:
        return until
    asked = now + min(retry_after, limiter.max_pause)
    if asked <= until:
        return until
    limiter.counters.pauses += 1
    return asked


class _Lines:
    """Tasks waiting for a place someone else hands them: reads (`ahead`) first, then
    the others, each line in arrival order."""

    def __init__(self) -> None:
        self._reads: deque[anyio.Event] = deque()
        self._others: deque[anyio.Event] = deque()

    def __bool__(self) -> bool:
        return bool(self._reads or self._others)

    def others_waiting(self) -> int:
        return len(self._others)

    async def wait(self, ahead: bool, hand_on: Callable[[], None]) -> None:
        """Return once handed a place. Cancelled just after it was handed over, the
        place is passed on with `hand_on`; before, the waiter just leaves its line."""
        event = anyio.Event()
        line = self._reads if ahead else self._others
        line.append(event)
        try:
            await event.wait()
        except BaseException:
            if event.is_set():
                hand_on()
            else:
                line.remove(event)
            raise

    def hand_one(self) -> None:
        """A place to the first waiter (there must be one)."""
        (self._reads or self._others).popleft().set()


class _Turns:
    """One holder at a time; waiting reads go before the others, each line in order."""

    def __init__(self) -> None:
        self._busy = False  # stays set while a turn is handed from one holder to the next
        self.lines = _Lines()

    @asynccontextmanager
    async def turn(self, ahead: bool) -> AsyncIterator[None]:
        if self._busy:
            await self.lines.wait(ahead, self._hand_on)
        else:
            self._busy = True
        try:
            yield
        finally:
            self._hand_on()

    def _hand_on(self) -> None:
        if self.lines:
            self.lines.hand_one()
        else:
            self._busy = False


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
        self._turns = _Turns()  # waiters take tokens one at a time: reads first

    @property
    def current_rate(self) -> float:
        return self._current

    @asynccontextmanager
    async def slot(self, *, ahead: bool = False) -> AsyncIterator[None]:
        """Wait for an in-flight place, then for a token (and the end of any pause).
        `ahead`: a read, which waits for its token apart from the others (below); the
        place is held to the end of the block (it yields no early release)."""
        async with self._places:
            await self._take_token(ahead)
            self.counters.granted += 1
            self.counters.in_flight += 1
            self.counters.peak_in_flight = max(
                self.counters.peak_in_flight, self.counters.in_flight
            )
            try:
                yield
            finally:
                self.counters.in_flight -= 1

    async def token(self, *, ahead: bool = False) -> None:
        """Only a token (and the end of any pause), no in-flight place: for a gate that
        bounds requests in flight itself (AdaptiveLimiter)."""
        await self._take_token(ahead)
        self.counters.granted += 1

    async def _take_token(self, ahead: bool = False) -> None:
        """Tokens go out in turn, reads (`ahead`) before the others: a read waits for the
        token being waited for now, not behind every request queued before it (a page
        or a confirming read is what the others wait on)."""
        async with self._turns.turn(ahead):
            due: float | None = None  # when the token slept for was due
            while True:
                now = anyio.current_time()
                # Woken a little late for a token: count the next one from when this one
                # was due, not from now, so lateness does not lower the rate (with a
                # burst of one it could not be made up). Never more than one interval.
                late = due is not None and 0 <= now - due < 1 / self._current
                self._refill(due if late and due is not None else now)
                wait = max(self._paused_until - now, 0.0)
                if wait <= 0 and self._tokens >= 1 - 1e-9:  # a whole one, up to rounding
                    self._tokens = max(0.0, self._tokens - 1)
                    return
                if wait <= 0:
                    wait = (1 - self._tokens) / self._current
                    due = now + wait
                else:
                    due = None
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
        self._paused_until = _paused(self._paused_until, now, retry_after, self)

    def succeeded(self) -> None:
        """A request went through: creep back towards the configured rate."""
        if self._current < self.rate:
            now = anyio.current_time()
            self._refill(now)  # tokens earned so far accrue at the old, lower rate
            self._current = min(self.rate, self._current + self.increase_step)


# -- adaptive concurrency ------------------------------------------------------------


@dataclass(frozen=True)
class AdaptiveSettings:
    """The adaptive limiter's knobs and their defaults (README, "Performance")."""

    initial: int = 16  # requests in flight at the start
    minimum: int = 1
    maximum: int = 256  # the ceiling when --concurrency is not given
    growth: float = 1.5  # slow start: x this per round until the first 429 or latency rise
    backoff: float = 0.5  # a 429 halves the limit (once per round trip)
    latency_backoff: float = 0.9  # a latency rise cuts it by a tenth (once per round)
    tolerance: float = 1.5  # a rise: a round's mean latency above 1.5 x the baseline
    smoothing: float = 0.1  # weight of each new sample in the smoothed round-trip time
    drift: float = 0.01  # per round, the baseline follows the latency by this share
    probe_hold: float = 1.0  # seconds held at the last good level before probing above
    max_probe_hold: float = 30.0  # the hold doubles each time a probe meets the same wall
    utilisation: float = 0.5  # grow only after a round that used half the limit or more
    no_rtt_cooldown: float = 0.25  # cut at most this often before any latency is known

    def __post_init__(self) -> None:
        if not 1 <= self.minimum <= self.initial <= self.maximum:
            raise ValueError("need 1 <= minimum <= initial <= maximum")
        if self.growth <= 1 or self.tolerance <= 1:
            raise ValueError("growth and tolerance must be above 1")
        for name in ("backoff", "latency_backoff", "smoothing", "drift", "utilisation"):
            if not 0 < getattr(self, name) < 1:
                raise ValueError(f"{name} must be between 0 and 1")
        if not 0 < self.probe_hold <= self.max_probe_hold:
            raise ValueError("need 0 < probe_hold <= max_probe_hold")


class AdaptiveLimit:
    """The adaptive rules, without I/O: fed events with their times, they say how many
    requests may be in flight. Round based, as TCP is: a round lasts about one smoothed
    round-trip time, and the limit changes at most once per round (or per 429 episode).

    - Slow start: while no 429 and no latency rise has come, the limit grows x`growth`
      per round.
    - The good level is the highest limit a whole round used without a 429. A 429
      that answers a probe above the good level sends the limit back to that level
      (no lower: the wall is where it was) and doubles the hold before the next probe
      (to `max_probe_hold`). Any other 429 halves the limit (`backoff`), once per
      round trip, and the good level drops one below the requests we had in flight
      (ours counts a few in transit, so it overstates what the API held). A round
      whose mean latency exceeds `tolerance` x the baseline cuts the limit by
      `latency_backoff` and makes that the good level.
    - Below the good level the limit climbs back halfway to it each round (at least
      +1); there it holds `probe_hold` seconds, then probes above by +1, +2, +4... per
      round, each clean round raising the good level (and resetting the hold).
    - The limit never grows after a round that used less than `utilisation` of it (the
      run had no work for more), and always stays within [minimum, ceiling].

    The baseline is the lowest round mean, drifting towards each new round's mean by
    `drift`, so a lasting change of the API's own latency is learnt within ~100 rounds.
    """

    def __init__(self, ceiling: int, settings: AdaptiveSettings | None = None) -> None:
        self.settings = settings if settings is not None else AdaptiveSettings()
        if ceiling < 1:
            raise ValueError("the ceiling must be at least 1")
        self.ceiling = ceiling
        s = self.settings
        self.floor = min(s.minimum, ceiling)
        self.limit = float(min(s.initial, ceiling))
        self.in_flight = 0
        self.good: float | None = None  # the last good level; None: still in slow start
        self.rtt: float | None = None  # smoothed round-trip time of answered requests
        self.baseline: float | None = None
        self.cuts = 0
        self._hold = s.probe_hold
        self._hold_until = 0.0
        self._step = 1.0  # the next probe's increase
        self._last_cut: float | None = None
        self._probe_met = False  # the last cut answered a probe (its episode pauses no one)
        self._probing = False  # the limit was raised above the good level by a probe
        self._round_start: float | None = None
        self._round_total = 0.0
        self._round_count = 0
        self._round_peak = 0
        self._round_throttled = False

    @property
    def allowed(self) -> int:
        """Requests that may be in flight now: the limit, within [floor, ceiling]."""
        return max(self.floor, min(self.ceiling, int(self.limit)))

    def try_acquire(self) -> bool:
        """Take an in-flight place if one is free under the limit."""
        if self.in_flight >= self.allowed:
            return False
        self.in_flight += 1
        self._round_peak = max(self._round_peak, self.in_flight)
        return True

    def release(self) -> None:
        self.in_flight -= 1

    def succeeded(self, rtt: float, now: float) -> bool:
        """An answered request and its latency; True when the limit grew."""
        s = self.settings
        self.rtt = rtt if self.rtt is None else self.rtt + s.smoothing * (rtt - self.rtt)
        if self._round_start is None:
            self._round_start = now
        self._round_total += rtt
        self._round_count += 1
        if now - self._round_start < self._round_total / self._round_count:
            return False
        return self._end_round(now)

    def throttled(self, now: float) -> bool:
        """A 429. True when it answered a probe above the good level: the limit goes
        back to that level (the wall is where it was), nothing else slows down. Any
        other 429 halves the limit, once per round trip; later 429s of that episode
        only lower the good level to what they saw."""
        self._round_throttled = True
        good = self.good
        if self._probing and good is not None and self.limit > good:  # wait longer
            self._hold = min(self.settings.max_probe_hold, self._hold * 2)
            self._hold_until = now + self._hold
            self._cut(good, good, now)
            self._probe_met = True
            return True
        if self._cooling(now):
            if not self._probe_met and good is not None and (seen := self._seen()) < good:
                self.good = seen
                self.limit = max(float(self.floor), min(self.limit, seen * self.settings.backoff))
            return self._probe_met
        seen = self._seen()
        good = min(seen, self.limit - 1, good if good is not None else seen)
        self._cut(max(float(self.floor), good), self.limit * self.settings.backoff, now)
        return False

    def _seen(self) -> float:
        """The in-flight level a 429 shows the API held: one below ours (ours counts a
        few still in transit)."""
        return float(max(self.floor, self.in_flight - 1))

    def _cooling(self, now: float) -> bool:
        if self._last_cut is None:
            return False
        cooldown = self.rtt if self.rtt is not None else self.settings.no_rtt_cooldown
        return now - self._last_cut < cooldown

    def _cut(self, good: float, limit: float, now: float) -> None:
        self._probe_met = self._probing = False
        self.good = good
        self.limit = max(float(self.floor), limit)
        self._step = 1.0
        self._last_cut = now
        self.cuts += 1

    def _end_round(self, now: float) -> bool:
        s = self.settings
        mean = self._round_total / self._round_count
        base = self.baseline
        full = self._round_peak >= self.allowed
        used = self._round_peak >= self.limit * s.utilisation
        throttled = self._round_throttled
        self.baseline = mean if base is None or mean < base else base + s.drift * (mean - base)
        self._round_start = now
        self._round_total, self._round_count = 0.0, 0
        self._round_peak, self._round_throttled = self.in_flight, False
        if base is not None and mean > s.tolerance * base:
            if not self._cooling(now):
                if self.good is not None and self.limit > self.good:
                    self._hold = min(s.max_probe_hold, self._hold * 2)
                self._cut(self.limit * s.latency_backoff, self.limit * s.latency_backoff, now)
            return False
        if throttled or not used:
            return False
        if full and self.good is not None and self.limit > self.good:
            self.good = self.limit  # a clean probe: the wall has moved, or was lower
            self._hold = s.probe_hold
        if self.limit >= self.ceiling:
            return False
        before = self.allowed
        self.limit = min(float(self.ceiling), self._grown(now))
        return self.allowed > before

    def _grown(self, now: float) -> float:
        s, limit, good = self.settings, self.limit, self.good
        if good is None:
            return max(limit + 1, limit * s.growth)
        if limit < good:
            grown = min(good, limit + max(1.0, (good - limit) / 2))
            if grown >= good:
                self._hold_until = now + self._hold
            return grown
        if now < self._hold_until:
            return limit
        grown = limit + self._step
        self._probing = True
        self._step = min(self._step * 2, max(1.0, limit * (s.growth - 1)))
        return grown


_rtt_sample: ContextVar[float | None] = ContextVar("retention_rtt_sample", default=None)


class _Place:
    """One request's in-flight place: released once, early (the answer is in) or at the
    end of its slot; its latency is from the start to that release."""

    __slots__ = ("_held", "_limiter", "_started", "rtt")

    def __init__(self, limiter: AdaptiveLimiter) -> None:
        self._limiter = limiter
        self._started: float | None = None
        self.rtt: float | None = None
        self._held = True

    def start(self) -> None:
        self._limiter.counters.granted += 1
        self._started = anyio.current_time()

    def release(self) -> None:
        if not self._held:
            return
        self._held = False
        if self._started is not None:
            self.rtt = anyio.current_time() - self._started
        self._limiter._free()


class AdaptiveLimiter:
    """The run's gate: adaptive concurrency (AdaptiveLimit) under two ceilings.

    `concurrency` (else `AdaptiveSettings.maximum`) caps requests in flight, `rate` (when
    given) caps requests per second through a RateLimiter, whose own AIMD and shared
    pause then apply too. Without `rate`, a 429's Retry-After pauses every new request
    here instead, unless the 429 answered a probe: then only its own retry waits (the
    limit is already back below the wall, and a pause would empty the pipe). A
    request's latency is timed from its admission to the end of its slot and counted
    when the client reports it answered (`succeeded`); a 429 is not a latency sample
    (it comes back at once)."""

    def __init__(
        self,
        concurrency: int | None = None,
        rate: float | None = None,
        *,
        settings: AdaptiveSettings | None = None,
        max_pause: float = 60.0,
    ) -> None:
        chosen = settings if settings is not None else AdaptiveSettings()
        ceiling = concurrency if concurrency is not None else chosen.maximum
        self.rules = AdaptiveLimit(ceiling, chosen)
        self.ceiling = ceiling
        # A burst of one: over any t seconds, at most rate x t + 1 requests start.
        self.bucket = RateLimiter(rate, ceiling, burst=1.0) if rate is not None else None
        self.max_pause = max_pause
        self.counters = LimiterCounters()
        self._lines = _Lines()  # requests waiting for a place: reads first
        self._paused_until = 0.0

    @property
    def limit(self) -> int:
        return self.rules.allowed

    @asynccontextmanager
    async def slot(self, *, ahead: bool = False) -> AsyncIterator[Callable[[], None]]:
        """An in-flight place under the limit (waiters in turn; `ahead`: before every
        request waiting without it), then a rate token when --rate is set. Yields the
        place's early release: the transport calls it the moment the answer is complete
        (the server holds the request no longer), so the next waiter is let in before
        this task even runs again; leaving the block releases it otherwise."""
        await self._admit(ahead)
        place = _Place(self)
        try:
            if self.bucket is not None:
                await self.bucket.token(ahead=ahead)  # in flight: bounded here, not there
            else:
                await self._pause()
            place.start()
            yield place.release
        finally:
            place.release()
            _rtt_sample.set(place.rtt)

    def _free(self) -> None:
        self.rules.release()
        self.counters.in_flight -= 1
        self._wake()

    async def _admit(self, ahead: bool) -> None:
        rules = self.rules
        if not self._lines and rules.try_acquire():
            self._took()
            return
        await self._lines.wait(ahead, self._free)

    def _took(self) -> None:
        counters = self.counters
        counters.in_flight += 1
        counters.peak_in_flight = max(counters.peak_in_flight, counters.in_flight)

    def _wake(self) -> None:
        """Hand free places to waiters: reads first, then the rest, each in turn."""
        while self._lines and self.rules.try_acquire():
            self._took()
            self._lines.hand_one()

    async def _pause(self) -> None:
        # Not an Event: a later 429 may push the deadline on while we sleep.
        while (wait := self._paused_until - anyio.current_time()) > 0:  # noqa: ASYNC110
            await anyio.sleep(wait)

    def throttled(self, retry_after: float | None) -> None:
        """A 429: cut the limit; pause new requests for the server's Retry-After."""
        now = anyio.current_time()
        _rtt_sample.set(None)
        self.counters.throttled += 1
        cuts = self.rules.cuts
        probe = self.rules.throttled(now)
        self.counters.decreases += self.rules.cuts - cuts
        if self.bucket is not None:
            self.bucket.throttled(retry_after)
        elif not probe:  # a probe's 429 only delays its own retry
            self._paused_until = _paused(self._paused_until, now, retry_after, self)

    def succeeded(self) -> None:
        """An answer: its latency feeds the rules; a grown limit lets waiters in."""
        if self.bucket is not None:
            self.bucket.succeeded()
        rtt = _rtt_sample.get()
        if rtt is None:
            return
        _rtt_sample.set(None)
        cuts = self.rules.cuts
        if self.rules.succeeded(rtt, anyio.current_time()):
            self._wake()
        self.counters.decreases += self.rules.cuts - cuts
