"""The adaptive concurrency limiter: its rules on hand-fed latencies and a hand-moved
clock, and its gate against the sandbox limited to K requests in flight."""

from __future__ import annotations

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from retention.api.limiter import AdaptiveLimit, AdaptiveLimiter, AdaptiveSettings
from retention.api.retry import RetryPolicy
from retention.sandbox import Dataset, Faults, SandboxApp
from tests.api.conftest import in_process, status_count

RTT = 0.125  # seconds (exact in binary): every hand-fed request takes one round trip


def full_round(rules: AdaptiveLimit, now: float, rtt: float = RTT) -> float:
    """Fill every place, then answer them all one round trip later; returns that time."""
    taken = 0
    while rules.try_acquire():
        taken += 1
    now += rtt
    for _ in range(taken):
        rules.release()
        rules.succeeded(rtt, now)
    return now


def limits_over(rules: AdaptiveLimit, rounds: int, rtt: float = RTT) -> list[int]:
    now, seen = 0.0, []
    for _ in range(rounds):
        now = full_round(rules, now, rtt)
        seen.append(rules.allowed)
    return seen


def test_slow_start_grows_half_again_per_round_with_flat_latency_up_to_the_ceiling() -> None:
    rules = AdaptiveLimit(100, AdaptiveSettings(initial=16, growth=1.5))
    # A round ends when the first answer of the next one comes: 16 -> 24 -> 36 -> 54 -> 81.
    assert limits_over(rules, 7) == [16, 24, 36, 54, 81, 100, 100]


def test_a_429_halves_the_limit_once_per_round_trip() -> None:
    rules = AdaptiveLimit(64, AdaptiveSettings(initial=40, backoff=0.5))
    now = full_round(rules, 0.0)  # a known round-trip time: 0.1 s
    for _ in range(40):
        assert rules.try_acquire()
    rules.release()
    rules.throttled(now)  # 39 still in flight: the good level is one below, 38
    assert rules.allowed == 20  # 40 x 0.5
    rules.throttled(now + RTT / 2)  # the same volley, within one round trip
    assert rules.allowed == 20
    assert rules.cuts == 1
    assert rules.good == 38


def fill_then_429(rules: AdaptiveLimit, now: float) -> bool:
    """Every place taken, and the first answer back is a 429 (the rest still in flight)."""
    while rules.try_acquire():
        pass
    rules.release()
    return rules.throttled(now)


def release_all(rules: AdaptiveLimit) -> None:
    while rules.in_flight:
        rules.release()


def climb_after_a_429_at_32(now: float = 0.0) -> tuple[AdaptiveLimit, float, list[int]]:
    """32 in flight, a 429, then 15 full rounds: the rules, the time, each round's limit."""
    rules = AdaptiveLimit(256, AdaptiveSettings(initial=32, probe_hold=1.0))
    now = full_round(rules, now)
    fill_then_429(rules, now)  # 31 in flight: the good level is 30; 32 halves to 16
    release_all(rules)
    seen = []
    for _ in range(15):
        now = full_round(rules, now)
        seen.append(rules.allowed)
    return rules, now, seen


def test_after_a_429_the_limit_climbs_halfway_back_holds_then_probes() -> None:
    rules, _, seen = climb_after_a_429_at_32()
    # The round of the 429 does not grow; then 16 -> 23 -> 26.5 -> 28.25 -> 29.25 -> 30
    # (halfway back, at least +1), held one second (eight rounds of 1/8 s), then a
    # probe of +1; that clean round makes 31 the good level, and the next probe is +2.
    assert seen[:5] == [16, 23, 26, 28, 29]
    assert seen[5:] == [30] * 8 + [31, 33]
    assert rules.good == 31


def test_a_probes_429_goes_back_to_the_good_level_and_doubles_the_hold() -> None:
    rules, now, _ = climb_after_a_429_at_32()  # probing at 33, the good level 31
    assert fill_then_429(rules, now)  # a probe's 429: not halved, back to the good level
    assert (rules.allowed, rules.good) == (31, 31)
    assert rules.throttled(now + RTT / 2)  # the same probe's episode: nothing more
    assert (rules.allowed, rules.good, rules.cuts) == (31, 31, 2)
    release_all(rules)
    seen = []
    for _ in range(17):
        now = full_round(rules, now)
        seen.append(rules.allowed)
    # The round holding the 429 does not grow; the hold is now 2 s: sixteen rounds of
    # 1/8 s after the 429, then a probe of +1 (the step starts again at 1).
    assert seen == [31] * 15 + [32, 34]


def test_a_429_at_the_good_level_still_halves() -> None:
    rules, now, _ = climb_after_a_429_at_32()  # probing at 33, the good level 31
    assert fill_then_429(rules, now)  # the probe's: back to 31
    release_all(rules)
    now = full_round(rules, now)  # 31 in flight, all answered
    assert not fill_then_429(rules, now)  # the wall moved below 31: 31 x 0.5
    assert rules.allowed == 15
    assert rules.good == 29  # one below the 30 still in flight


def test_a_latency_rise_cuts_the_limit_by_a_tenth() -> None:
    rules = AdaptiveLimit(256, AdaptiveSettings(initial=50, tolerance=1.5))
    now = full_round(rules, 0.0)
    now = full_round(rules, now)  # the first round ends: baseline 1/8 s; 50 -> 75
    assert rules.allowed == 75
    # Twice the latency: the round ending now still holds 49 answers of 1/8 s (mean
    # 0.1275 s, flat enough): 75 -> 112.5. The next is all 1/4 s: cut to 112.5 x 0.9.
    now = full_round(rules, now, rtt=2 * RTT)
    assert rules.allowed == 112
    now = full_round(rules, now, rtt=2 * RTT)
    assert rules.allowed == 101
    assert rules.good == 112.5 * 0.9


def test_the_limit_does_not_grow_when_the_run_leaves_it_unused() -> None:
    rules = AdaptiveLimit(256, AdaptiveSettings(initial=16))
    now = 0.0
    for _ in range(20):  # one request at a time: 1 of 16 places used
        assert rules.try_acquire()
        now += RTT
        rules.release()
        rules.succeeded(RTT, now)
    assert rules.allowed == 16


def test_the_ceiling_bounds_the_start_and_the_floor_bounds_the_cuts() -> None:
    rules = AdaptiveLimit(4, AdaptiveSettings(initial=16, minimum=2))
    assert rules.allowed == 4
    for t in range(10):
        rules.throttled(float(t))  # far apart: each one cuts
    assert rules.allowed == 2


# -- any sequence of events --------------------------------------------------------

EVENTS = st.lists(
    st.one_of(
        st.tuples(st.just("send"), st.integers(1, 40)),
        st.tuples(st.just("answer"), st.floats(0.001, 2.0)),
        st.tuples(st.just("throttle"), st.just(0.0)),
        st.tuples(st.just("wait"), st.floats(0.0, 3.0)),
    ),
    max_size=300,
)


@settings(max_examples=300, deadline=None)
@given(events=EVENTS, ceiling=st.integers(1, 64), initial=st.integers(1, 64))
def test_no_sequence_of_events_admits_a_request_beyond_the_limit_or_the_ceiling(
    events: list[tuple[str, float]], ceiling: int, initial: int
) -> None:
    rules = AdaptiveLimit(ceiling, AdaptiveSettings(initial=initial, maximum=max(initial, 64)))
    now = 0.0
    for kind, value in events:
        if kind == "send":
            for _ in range(int(value)):
                allowed = rules.allowed
                before = rules.in_flight
                if rules.try_acquire():
                    # Admitted only into a free place under min(limit, ceiling).
                    assert before < allowed <= ceiling
                else:
                    assert before >= allowed
        elif kind == "wait":
            now += value
        elif rules.in_flight:
            rules.release()
            if kind == "answer":
                rules.succeeded(value, now)
            elif rules.throttled(now):  # a probe's 429: back to the good level, no lower
                assert rules.limit == rules.good
        assert rules.in_flight <= ceiling
        assert 1 <= rules.allowed <= ceiling
        assert rules.floor <= rules.limit <= ceiling


# -- the gate, against the sandbox ------------------------------------------------


@pytest.mark.anyio
async def test_a_sandbox_limited_to_k_in_flight_is_found_and_429s_are_retried(
    dataset: Dataset,
) -> None:
    k = 6
    app = SandboxApp(dataset, Faults(max_in_flight=k, latency_ms=5))
    calls = [c.id for c in dataset.iter_all_calls(transcripts=False)][:240]
    limiter = AdaptiveLimiter(settings=AdaptiveSettings(initial=2, probe_hold=0.05))
    got: list[str] = []
    retry = RetryPolicy(max_attempts=8, base_delay=0.001, max_delay=0.01)
    async with in_process(app, gate=limiter, retry=retry) as client:

        async def read(ids: list[str]) -> None:
            for call_id in ids:
                got.append((await client.get_call(call_id)).id)

        async with anyio.create_task_group() as group:
            for n in range(24):  # more workers than the API allows
                group.start_soon(read, calls[n::24])
    assert sorted(got) == sorted(calls)  # every call read once, none lost to a 429
    throttled = status_count(app, 429)
    assert throttled == client.stats.throttled == limiter.counters.throttled
    assert limiter.counters.decreases >= 1  # it met the wall, and backed off
    assert limiter.counters.in_flight == 0


@pytest.mark.anyio
async def test_only_a_429_below_a_probe_pauses_new_requests() -> None:
    limiter = AdaptiveLimiter()
    # Rounds that ended long ago: probing at 33, the good level 31, 32 in flight.
    limiter.rules, _, _ = climb_after_a_429_at_32(anyio.current_time() - 100.0)
    while limiter.rules.try_acquire():
        pass
    limiter.rules.release()
    limiter.throttled(0.5)
    limiter.throttled(0.5)  # the same episode
    assert (limiter.counters.pauses, limiter.limit) == (0, 31)
    await anyio.sleep(RTT * 1.1)  # over a round trip later: a 429 at the good level
    limiter.throttled(0.5)
    assert limiter.counters.pauses == 1
    assert limiter.limit == 15  # 31 x 0.5


@pytest.mark.anyio
async def test_concurrency_given_is_a_ceiling_never_exceeded(dataset: Dataset) -> None:
    app = SandboxApp(dataset, Faults(latency_ms=2))
    calls = [c.id for c in dataset.iter_all_calls(transcripts=False)][:200]
    limiter = AdaptiveLimiter(3, settings=AdaptiveSettings(initial=16))
    async with in_process(app, gate=limiter) as client:

        async def read(ids: list[str]) -> None:
            for call_id in ids:
                await client.get_call(call_id)

        async with anyio.create_task_group() as group:
            for n in range(20):
                group.start_soon(read, calls[n::20])
    assert app.stats.peak_in_flight == limiter.counters.peak_in_flight == 3
    assert status_count(app, 429) == 0


@pytest.mark.anyio
async def test_a_cancelled_waiter_gives_its_place_back(dataset: Dataset) -> None:
    limiter = AdaptiveLimiter(1)
    entered = anyio.Event()
    release = anyio.Event()

    async def holder() -> None:
        async with limiter.slot():
            entered.set()
            await release.wait()

    async with anyio.create_task_group() as group:
        group.start_soon(holder)
        await entered.wait()
        with anyio.move_on_after(0.01):
            async with limiter.slot():
                pytest.fail("admitted beyond the ceiling")
        release.set()
    async with limiter.slot():
        assert limiter.counters.in_flight == 1
    assert limiter.counters.in_flight == 0


@pytest.mark.anyio
async def test_reads_waiting_go_in_before_waiting_deletes_each_kind_in_turn() -> None:
    """A page feeds every worker: with the limit full, waiting reads (`ahead`) get the
    next places before requests that waited longer without it."""
    limiter = AdaptiveLimiter(1)
    order: list[str] = []
    release = anyio.Event()

    async def holder() -> None:
        async with limiter.slot():
            await release.wait()

    async def request(name: str, ahead: bool) -> None:
        async with limiter.slot(ahead=ahead):
            order.append(name)
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as group:
        group.start_soon(holder)
        await anyio.wait_all_tasks_blocked()
        for name, ahead in (
            ("delete1", False),
            ("read1", True),
            ("delete2", False),
            ("read2", True),
        ):
            group.start_soon(request, name, ahead)
            await anyio.wait_all_tasks_blocked()
        release.set()
    assert order == ["read1", "read2", "delete1", "delete2"]
    assert limiter.counters.peak_in_flight == 1


@pytest.mark.anyio
async def test_the_early_release_frees_the_place_at_once_and_only_once() -> None:
    limiter = AdaptiveLimiter(1)
    async with limiter.slot() as release:
        assert limiter.counters.in_flight == 1
        release()  # the answer is in: the place is free before the block ends
        release()
        assert limiter.counters.in_flight == 0
        with anyio.fail_after(5):
            async with limiter.slot():  # not a second place: the first one, freed
                assert limiter.counters.in_flight == 1
    assert limiter.counters.in_flight == 0
    assert limiter.rules.in_flight == 0
    assert limiter.counters.peak_in_flight == 1
