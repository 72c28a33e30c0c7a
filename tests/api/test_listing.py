"""Listing one agent's calls against hostile listings: odd entries, invalid ids,
pages that repeat or go back in time. Every listing ends."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from retention.api.errors import InvalidId, MalformedResponse, PaginationError, RetriesExhausted
from retention.api.models import Call, UnreadableCall
from retention.api.paging import RECENT_CURSORS, CursorCycle
from tests.api.scripted import Answer, Received, Scripted, in_process

pytestmark = pytest.mark.anyio

AGENT = "agent_1"
T0 = datetime(2026, 3, 1, tzinfo=UTC)
SECRET_VALUE = "Jane-Doe-+15551234567"


def page(entries: list[Any], next_page: str | None) -> Answer:
    return Answer(200, json.dumps({"data": entries, "next_page": next_page}).encode())


def call(call_id: str, minutes_ago: int | None = None, **fields: Any) -> dict[str, Any]:
    start = None if minutes_ago is None else (T0 - timedelta(minutes=minutes_ago)).isoformat()
    return {"id": call_id, "agent_id": AGENT, "status": "completed", "start_time": start, **fields}


async def listing(app: Scripted, page_size: int = 100) -> list[Call | UnreadableCall]:
    async with in_process(app) as client:
        return [entry async for entry in client.iter_calls(AGENT, page_size=page_size)]


async def collect(app: Scripted, into: list[str | None], page_size: int = 100) -> None:
    """List into `into` as entries come, so a test sees what came before an error."""
    async with in_process(app) as client:
        async for entry in client.iter_calls(AGENT, page_size=page_size):
            into.append(entry.id)


# -- one odd value -------------------------------------------------------------------


async def test_an_odd_entry_is_yielded_apart_and_the_rest_of_the_listing_goes_on() -> None:
    first = [
        call("c1", 1),
        # A nested value decodes (the policy engine keeps such a call); a metadata that
        # is not an object at all does not.
        call("c2", 2, metadata=[{"nested": SECRET_VALUE}]),
        call("c2b", 2, metadata={"tier": {"nested": SECRET_VALUE}}),
        call("c3", 3, start_time=SECRET_VALUE),
        {"id": 42, "agent_id": AGENT, "transcript": SECRET_VALUE},
        [SECRET_VALUE],
        call("c6", 6),
    ]
    second = [call("c7", 7, zdr_enabled=SECRET_VALUE), call("c8", 8)]

    def answer(request: Received) -> Answer:
        return page(first, "c6") if "starting_after" not in request.query else page(second, None)

    entries = await listing(Scripted(answer))
    assert [(type(e).__name__, e.id) for e in entries] == [
        ("Call", "c1"),
        ("UnreadableCall", "c2"),
        ("Call", "c2b"),
        ("UnreadableCall", "c3"),
        ("UnreadableCall", None),
        ("UnreadableCall", None),
        ("Call", "c6"),
        ("UnreadableCall", "c7"),
        ("Call", "c8"),
    ]
    odd = [e for e in entries if isinstance(e, UnreadableCall)]
    assert [e.agent_id for e in odd] == [AGENT, AGENT, AGENT, None, AGENT]
    assert "$.metadata" in odd[0].problem and "$.start_time" in odd[1].problem
    assert "$.id" in odd[2].problem and "$.zdr_enabled" in odd[4].problem
    for entry in odd:
        assert "Jane" not in entry.problem and "555" not in entry.problem


async def test_a_page_whose_top_level_does_not_decode_is_malformed_and_retried() -> None:
    answers = iter([Answer(200, b'{"data": 5}'), page([call("c1", 1)], None)])
    app = Scripted(lambda _request: next(answers))
    assert [e.id for e in await listing(app)] == ["c1"]
    assert app.count("GET") == 2

    app = Scripted(lambda _request: Answer(200, b'{"data": {"a": 1}}'))
    with pytest.raises(RetriesExhausted) as caught:
        await listing(app)
    assert isinstance(caught.value.cause, MalformedResponse)


async def test_get_call_of_an_odd_call_is_an_error_not_an_unreadable_call() -> None:
    app = Scripted(lambda _request: Answer(200, json.dumps(call("c1", 1, status=7)).encode()))
    async with in_process(app) as client:
        with pytest.raises(RetriesExhausted) as caught:
            await client.get_call("c1")
    assert isinstance(caught.value.cause, MalformedResponse)
    assert "7" not in str(caught.value).replace("HTTP 200", "")


# -- ids -----------------------------------------------------------------------------

BAD_CHARS = ["/", "?", "#", "%", " ", "\t", "\n", "..", "\\", "é", "\x00"]


@given(
    st.one_of(
        st.tuples(st.text(max_size=20), st.sampled_from(BAD_CHARS), st.text(max_size=20)).map(
            "".join
        ),
        st.text(alphabet="abc123_-:", min_size=129, max_size=300),
        st.sampled_from(["", ".", ".."]),
    )
)
@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
async def test_an_unusable_id_never_goes_into_a_request(bad: str) -> None:
    app = Scripted(lambda _request: Answer(200, b"{}"))
    async with in_process(app) as client:
        for attempt in (
            client.get_call(bad),
            client.delete_call(bad),
            anext(client.iter_calls(bad)),
        ):
            with pytest.raises(InvalidId) as caught:
                await attempt
            assert caught.value.attempts == 0 and not caught.value.may_have_taken_effect
    assert app.received == []


async def test_an_invalid_id_is_not_named_in_the_error() -> None:
    async with in_process(Scripted(lambda _request: Answer())) as client:
        with pytest.raises(InvalidId) as caught:
            await client.delete_call("call/Jane-Doe-555")
    assert "Jane" not in str(caught.value) and "Jane" not in repr(caught.value)


async def test_agents_with_unusable_ids_are_listed_for_the_run_to_decide() -> None:
    body = {"summaries": [{"id": "agent_ok"}, {"id": "a/../b"}, {"id": "x" * 200}]}
    app = Scripted(lambda _request: Answer(200, json.dumps(body).encode()))
    async with in_process(app) as client:
        agents = await client.list_agents()
        assert [a.id for a in agents] == ["agent_ok", "a/../b", "x" * 200]
        with pytest.raises(InvalidId):
            await anext(client.iter_calls(agents[1].id))
    assert app.count("GET") == 1


async def test_one_odd_agent_never_hides_the_others() -> None:
    """An agent entry that does not fit the model keeps its id (or "" when the id is not
    text, which no request accepts) and loses its name; the others are as they were."""
    body = {
        "summaries": [
            {"id": "agent_a", "name": "support-a"},
            {"id": "agent_b", "name": 42, "deleted_at": "not a time"},
            {"id": 7, "name": "support-c"},
            "not an object",
            {"id": "agent_d", "name": "support-d", "phone_numbers": [{"number": "+15550100"}]},
        ]
    }
    app = Scripted(lambda _request: Answer(200, json.dumps(body).encode()))
    async with in_process(app) as client:
        agents = await client.list_agents()
    assert [(a.id, a.name) for a in agents] == [
        ("agent_a", "support-a"),
        ("agent_b", ""),
        ("", ""),
        ("", ""),
        ("agent_d", "support-d"),
    ]


async def test_a_last_entry_without_a_usable_id_continues_from_next_page_or_stops() -> None:
    def answer(request: Received) -> Answer:
        after = request.query.get("starting_after")
        if after is None:
            return page([call("c1", 1), call("bad/id", 2)], "c2")
        if after == "c2":
            return page([call("c3", 3), {"agent_id": AGENT}], "also bad/")
        raise AssertionError("an unusable cursor was sent")

    app = Scripted(answer)
    with pytest.raises(PaginationError, match="no usable cursor"):
        await listing(app)
    assert [r.query.get("starting_after") for r in app.received] == [None, "c2"]


# -- repeats and time going back -----------------------------------------------------


def cyclic_listing(prefix: int, cycle: int, *, timed: bool) -> Scripted:
    """Pages 0..prefix+cycle-1; the last page's successor is page `prefix` again.
    Page n holds calls pN_0, pN_1 and ends on pN_1, its cursor; times fall with n
    but repeat with the pages (when `timed`)."""

    def entries(n: int) -> list[dict[str, Any]]:
        return [call(f"p{n}_{k}", (2 * n + k) if timed else None) for k in range(2)]

    def answer(request: Received) -> Answer:
        after = request.query.get("starting_after")
        n = 0 if after is None else int(after[1:].split("_")[0]) + 1
        if n == prefix + cycle:
            n = prefix
        return page(entries(n), "more")

    return Scripted(answer)


@given(
    prefix=st.integers(0, 10),
    cycle=st.integers(1, 50),
    timed=st.booleans(),
)
@settings(max_examples=40, deadline=None)
async def test_a_listing_that_goes_round_ends_before_yielding_a_call_twice(
    prefix: int, cycle: int, timed: bool
) -> None:
    app = cyclic_listing(prefix, cycle, timed=timed)
    seen: list[str | None] = []
    with pytest.raises(PaginationError):
        await collect(app, seen, page_size=2)
    assert len(seen) == len(set(seen)) == 2 * (prefix + cycle)
    assert app.count("GET") == prefix + cycle + 1  # the first repeated page is the last


async def test_a_page_of_newer_calls_than_already_listed_ends_the_listing() -> None:
    def answer(request: Received) -> Answer:
        if "starting_after" not in request.query:
            return page([call("c1", 10), call("c2", 20), call("c3", None)], "c3")
        return page([call("c4", None), call("c5", 15)], None)  # 15 min ago > 20 min ago

    seen: list[str | None] = []
    with pytest.raises(PaginationError, match="newer"):
        await collect(Scripted(answer), seen)
    assert seen == ["c1", "c2", "c3"]  # the offending page yields nothing


async def test_equal_and_missing_times_across_pages_are_fine() -> None:
    def answer(request: Received) -> Answer:
        if "starting_after" not in request.query:
            return page([call("c1", 10), call("c2", 20)], "c2")
        return page([call("c3", 20), call("c4", None), call("c5", 30)], None)

    assert [e.id for e in await listing(Scripted(answer))] == ["c1", "c2", "c3", "c4", "c5"]


# -- the detector itself -------------------------------------------------------------


@given(
    prefix=st.integers(0, 300),
    cycle=st.integers(1, 300),
    window=st.integers(0, RECENT_CURSORS),
)
def test_brent_finds_any_cycle_within_a_few_rounds(prefix: int, cycle: int, window: int) -> None:
    detector = CursorCycle(window=window)
    step = 0
    while True:
        position = step if step < prefix else prefix + (step - prefix) % cycle
        if detector.seen(f"c{position}"):
            break
        step += 1
    assert step >= prefix + cycle  # never before a real repeat
    assert step <= 2 * max(prefix, cycle) + cycle + 2


def test_the_detector_holds_the_same_few_values_however_long_the_listing() -> None:
    detector = CursorCycle()
    for n in range(100_000):
        assert not detector.seen(f"cursor_{n}")
    assert len(detector._recent) == RECENT_CURSORS
    assert set(CursorCycle.__slots__) == {"_power", "_recent", "_steps", "_tortoise"}
