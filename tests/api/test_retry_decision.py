"""The two retry questions apart: which failures are worth another attempt, and how
long to wait before it (or why not). Expectations are written from the policy's rules."""

from __future__ import annotations

import socket
import ssl
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from retention.api.client import connect_failure
from retention.api.errors import (
    ApiError,
    AuthError,
    MalformedResponse,
    Rejected,
    TransportFailure,
    Unavailable,
)
from retention.api.retry import GiveUp, RetryPolicy

STEADY = RetryPolicy(jitter=0.0)  # 0.5 s doubling to 8 s, five attempts, 30 throttles
COMMON: dict[str, Any] = {"method": "GET", "route": "/agents"}
NO_BUDGET_LIMIT = 1e9


def test_transport_failures_are_retried_unless_the_policy_says_not() -> None:
    failure = TransportFailure(None, reason="ReadTimeout", **COMMON)
    assert STEADY.is_retryable("DELETE", failure, {})
    assert not RetryPolicy(retry_transport_errors=False).is_retryable("GET", failure, {})


def test_a_malformed_body_is_retried_for_a_get_never_for_a_delete() -> None:
    failure = MalformedResponse(200, reason="DecodeError", **COMMON)
    assert STEADY.is_retryable("GET", failure, {})
    assert not STEADY.is_retryable("DELETE", failure, {})
    assert not RetryPolicy(retry_malformed=False).is_retryable("GET", failure, {})


@pytest.mark.parametrize(
    ("failure", "headers", "retryable"),
    [
        (Unavailable(503, **COMMON), {}, True),
        (Unavailable(429, **COMMON), {}, True),
        (Unavailable(503, **COMMON), {"x-should-retry": "false"}, False),
        (Rejected(400, **COMMON), {}, False),
        (Rejected(400, **COMMON), {"x-should-retry": "true"}, True),
        (AuthError(401, **COMMON), {"x-should-retry": "true"}, False),
        (ApiError(None, reason="LocalProtocolError", **COMMON), {}, False),
    ],
)
def test_answers_follow_the_status_rules(
    failure: ApiError, headers: dict[str, str], retryable: bool
) -> None:
    assert STEADY.is_retryable("GET", failure, headers) is retryable


def wait(attempts: int, throttles: int = 0, **kwargs: object) -> float | GiveUp:
    options: dict[str, object] = {
        "throttled": False,
        "retry_after": None,
        "spent": 0.0,
        "budget": NO_BUDGET_LIMIT,
        **kwargs,
    }
    return STEADY.next_wait(attempts=attempts, throttles=throttles, **options)  # type: ignore[arg-type]


def test_backoff_doubles_from_the_base_delay_up_to_the_cap() -> None:
    assert [wait(n) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 4.0]
    assert (
        RetryPolicy(jitter=0.0, max_attempts=9).next_wait(
            attempts=7, throttles=0, throttled=False, retry_after=None, spent=0.0, budget=1e9
        )
        == 8.0
    )


def test_the_fifth_failure_gives_up_but_429s_do_not_count_against_it() -> None:
    assert wait(5) is GiveUp.ATTEMPTS
    assert wait(7, throttles=3) == 8.0  # 4 failures: a fifth attempt remains
    assert wait(8, throttles=3) is GiveUp.ATTEMPTS


def test_429s_wait_as_the_server_asks_up_to_their_own_bound() -> None:
    assert wait(3, throttles=3, throttled=True, retry_after=2.5) == 2.5
    assert wait(30, throttles=30, throttled=True, retry_after=1.0) == 1.0
    assert wait(31, throttles=31, throttled=True, retry_after=1.0) is GiveUp.ATTEMPTS
    assert wait(1, throttles=1, throttled=True, retry_after=600.0) == 60.0  # capped


def test_a_wait_ending_past_the_budget_gives_up() -> None:
    assert wait(1, spent=119.0, budget=120.0) == 0.5
    assert wait(1, spent=119.6, budget=120.0) is GiveUp.BUDGET
    assert wait(2, retry_after=5.0, spent=116.0, budget=120.0) is GiveUp.BUDGET


@given(attempts=st.integers(1, 200), throttles=st.integers(0, 200))
def test_other_failures_give_up_exactly_at_max_attempts(attempts: int, throttles: int) -> None:
    throttles = min(throttles, attempts - 1)  # the last attempt was not a 429
    expected_stop = attempts - throttles >= STEADY.max_attempts
    assert (wait(attempts, throttles) is GiveUp.ATTEMPTS) is expected_stop


def test_connect_failures_in_words() -> None:
    refused = ConnectionRefusedError(111, "Connection refused")
    assert connect_failure(refused) == "connection refused (nothing listens there)"
    wrapped = RuntimeError("outer")
    wrapped.__cause__ = socket.gaierror(-2, "Name or service not known")
    assert connect_failure(wrapped) == "DNS lookup failed (no such host?)"
    untrusted = ssl.SSLCertVerificationError(1, "certificate verify failed")
    untrusted.verify_message = "self-signed certificate"
    assert connect_failure(untrusted) == (
        "TLS certificate verification failed (self-signed certificate)"
    )
    assert connect_failure(ssl.SSLError(1, "wrong version")) == (
        "TLS handshake failed (is it an https server?)"
    )
    assert connect_failure(ValueError("nodename nor servname provided")) == (
        "DNS lookup failed (no such host?)"
    )
    assert connect_failure(ValueError("odd")) == "ValueError"
