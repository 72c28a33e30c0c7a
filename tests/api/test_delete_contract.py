"""What `delete_call` surfaces for each answer, and when it says the DELETE may have
taken effect: every attempt counts unless it was never sent or was answered 401, 403,
404 or 429 (see ApiError). Expected flags are written out by hand, row by row."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from retention.api.client import CartesiaClient
from retention.api.errors import (
    ApiError,
    AuthError,
    MalformedResponse,
    NotFound,
    Rejected,
    RetriesExhausted,
    TransportFailure,
    Unavailable,
)
from retention.api.models import Call
from retention.api.retry import RetryPolicy
from tests.api.scripted import FAST, KEY, Answer, Scripted, in_process, over_loopback

pytestmark = pytest.mark.anyio

CALL = "call_0001"
REDACTED = b'{"id": "call_0001", "status": "completed", "redacted_at": "2026-01-02T03:04:05Z"}'
PLAIN = b'{"id": "call_0001", "status": "completed"}'
NO_RETRY = (("x-should-retry", "false"),)


def always(answer: Answer) -> Scripted:
    return Scripted(lambda _request: answer)


def in_turn(*answers: Answer) -> Scripted:
    """The answers in order; the last one repeats."""
    queue: Iterator[Answer] = iter(answers)
    last = answers[-1]
    return Scripted(lambda _request: next(queue, last))


async def delete(app: Scripted, retry: RetryPolicy = FAST) -> Call:
    async with in_process(app, retry=retry) as client:
        return await client.delete_call(CALL)


async def test_a_2xx_with_a_call_is_returned_redacted_or_not() -> None:
    assert (await delete(always(Answer(200, REDACTED)))).redacted_at is not None
    app = always(Answer(202, PLAIN))
    assert (await delete(app)).redacted_at is None  # the caller reads the call again
    assert app.count("DELETE") == 1


@pytest.mark.parametrize(
    ("answer", "error", "may_have_taken_effect", "sent"),
    [
        (Answer(204, b""), MalformedResponse, True, 1),
        (Answer(200, REDACTED[:30]), MalformedResponse, True, 1),
        (Answer(200, b'{"id": 7}'), MalformedResponse, True, 1),
        (Answer(404), NotFound, False, 1),
        (Answer(401), AuthError, False, 1),
        (Answer(403), AuthError, False, 1),
        (Answer(400), Rejected, True, 1),
        (Answer(409), Rejected, True, 1),
        (Answer(422), Rejected, True, 1),
        (Answer(410), Rejected, True, 1),
        (Answer(301, headers=(("location", "/elsewhere"),)), ApiError, True, 1),
        (Answer(500), RetriesExhausted, True, FAST.max_attempts),
        (Answer(503, headers=NO_RETRY), RetriesExhausted, True, 1),
        (Answer(408), RetriesExhausted, True, FAST.max_attempts),
        (Answer(429, headers=NO_RETRY), RetriesExhausted, False, 1),
        (Answer(400, headers=(("x-should-retry", "true"),)), RetriesExhausted, True, 4),
    ],
)
async def test_each_answer_surfaces_as_its_error_with_an_exact_flag(
    answer: Answer, error: type[ApiError], may_have_taken_effect: bool, sent: int
) -> None:
    app = always(answer)
    with pytest.raises(ApiError) as caught:
        await delete(app)
    assert type(caught.value) is error
    assert caught.value.may_have_taken_effect is may_have_taken_effect
    assert caught.value.status == answer.status and caught.value.attempts == sent
    assert app.count("DELETE") == sent


async def test_429s_until_the_bound_never_count_as_taking_effect() -> None:
    app = always(Answer(429, headers=(("retry-after-ms", "1"),)))
    with pytest.raises(RetriesExhausted) as caught:
        await delete(app, RetryPolicy(max_throttled=3, base_delay=0.001))
    assert isinstance(caught.value.cause, Unavailable) and caught.value.cause.status == 429
    assert not caught.value.may_have_taken_effect and app.count("DELETE") == 4


@pytest.mark.parametrize(
    ("first", "then", "error", "resent", "may_have_taken_effect"),
    [
        # An earlier attempt that may have acted makes the whole request count.
        (Answer(500), Answer(404), NotFound, True, True),
        (Answer(500), Answer(409), Rejected, True, True),
        (Answer(502), Answer(401), AuthError, True, True),
        # A 429 is a refusal: only what follows counts.
        (Answer(429), Answer(404), NotFound, False, False),
        (Answer(429), Answer(409), Rejected, False, True),
    ],
)
async def test_earlier_attempts_count_too(
    first: Answer,
    then: Answer,
    error: type[ApiError],
    resent: bool,
    may_have_taken_effect: bool,
) -> None:
    app = in_turn(first, then)
    with pytest.raises(error) as caught:
        await delete(app)
    assert caught.value.may_have_taken_effect is may_have_taken_effect
    assert caught.value.resent is resent and caught.value.attempts == 2


async def test_a_2xx_after_a_failure_returns_the_call_and_counts_the_resend() -> None:
    app = in_turn(Answer(500), Answer(200, REDACTED))
    async with in_process(app) as client:
        assert (await client.delete_call(CALL)).redacted_at is not None
    assert client.stats.deletes_resent == 1 and app.count("DELETE") == 2


async def test_a_malformed_get_is_retried_but_a_malformed_delete_never_is() -> None:
    app = in_turn(Answer(200, b"{trunc"), Answer(200, PLAIN))
    async with in_process(app) as client:
        assert (await client.get_call(CALL)).id == CALL
        app.received.clear()
        app.handler = lambda _request: Answer(200, b"{trunc")
        with pytest.raises(MalformedResponse):
            await client.delete_call(CALL)
    assert app.count("DELETE") == 1


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_a_refused_connection_never_reached_the_server() -> None:
    async with CartesiaClient(
        base_url=f"http://127.0.0.1:{closed_port()}", api_key=KEY, retry=FAST
    ) as client:
        with pytest.raises(RetriesExhausted) as caught:
            await client.delete_call(CALL)
    assert isinstance(caught.value.cause, TransportFailure)
    assert caught.value.cause.reason == "ConnectError"
    assert not caught.value.may_have_taken_effect


async def test_a_dropped_connection_may_have_taken_effect() -> None:
    app = always(Answer(200, REDACTED, drop=True))
    with over_loopback(app) as base_url:
        async with CartesiaClient(base_url=base_url, api_key=KEY, retry=FAST) as client:
            with pytest.raises(RetriesExhausted) as caught:
                await client.delete_call(CALL)
    assert isinstance(caught.value.cause, TransportFailure)
    assert caught.value.may_have_taken_effect and app.count("DELETE") == FAST.max_attempts
    assert client.stats.deletes_resent == FAST.max_attempts - 1
