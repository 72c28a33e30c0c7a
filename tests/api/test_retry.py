"""When to retry and how long to wait: the server's headers first, else capped backoff."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from retention.api.retry import RetryPolicy, parse_retry_after, should_retry_header

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def test_retry_after_in_seconds() -> None:
    assert parse_retry_after({"Retry-After": "3"}) == 3.0
    assert parse_retry_after({"retry-after": " 1.5 "}) == 1.5


def test_retry_after_as_an_http_date() -> None:
    when = format_datetime(NOW + timedelta(seconds=7), usegmt=True)
    assert parse_retry_after({"Retry-After": when}, now=NOW) == 7.0


def test_retry_after_date_in_the_past_means_now() -> None:
    when = format_datetime(NOW - timedelta(minutes=5), usegmt=True)
    assert parse_retry_after({"Retry-After": when}, now=NOW) == 0.0


def test_retry_after_ms_wins_over_retry_after() -> None:
    assert parse_retry_after({"retry-after-ms": "250", "Retry-After": "9"}) == 0.25


@pytest.mark.parametrize("value", ["soon", "-1", "nan", "inf", ""])
def test_nonsense_retry_after_is_ignored(value: str) -> None:
    assert parse_retry_after({"Retry-After": value}) is None
    assert parse_retry_after({"retry-after-ms": value}) is None


def test_no_header_no_wait() -> None:
    assert parse_retry_after({}) is None


def test_x_should_retry() -> None:
    assert should_retry_header({"x-should-retry": "true"}) is True
    assert should_retry_header({"X-Should-Retry": "FALSE"}) is False
    assert should_retry_header({"x-should-retry": "maybe"}) is None
    assert should_retry_header({}) is None


def test_which_statuses_are_retried() -> None:
    policy = RetryPolicy()
    for status in (408, 429, 500, 502, 503, 504, 599):
        assert policy.retryable_status("GET", status, {})
        assert policy.retryable_status("DELETE", status, {})
    for status in (400, 404, 422):
        assert not policy.retryable_status("GET", status, {})


def test_conflict_is_retried_for_a_read_but_not_for_a_delete() -> None:
    policy = RetryPolicy()
    assert policy.retryable_status("GET", 409, {})
    assert not policy.retryable_status("DELETE", 409, {})


def test_server_may_forbid_or_ask_for_a_retry_but_never_on_auth_errors() -> None:
    policy = RetryPolicy()
    assert not policy.retryable_status("GET", 503, {"x-should-retry": "false"})
    assert policy.retryable_status("GET", 400, {"x-should-retry": "true"})
    assert not policy.retryable_status("GET", 401, {"x-should-retry": "true"})
    assert not policy.retryable_status("GET", 403, {"x-should-retry": "true"})


def test_backoff_doubles_to_the_cap_without_jitter() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=8.0, jitter=0.0)
    assert [policy.backoff(n) for n in range(1, 8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert policy.backoff(10_000) == 8.0


def test_jitter_only_shortens_and_stays_within_its_share() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=8.0, jitter=0.25, rng=random.Random(7))
    for attempt in range(1, 6):
        nominal = min(8.0, 2.0 ** (attempt - 1))
        for _ in range(50):
            assert nominal * 0.75 <= policy.backoff(attempt) <= nominal


def test_server_wait_is_used_as_given_but_capped() -> None:
    policy = RetryPolicy(jitter=0.0, max_retry_after=60.0)
    assert policy.delay(1, 3.0) == 3.0
    assert policy.delay(1, 3600.0) == 60.0
    assert policy.delay(2, None) == 1.0


@pytest.mark.parametrize(
    "kwargs",
    [{"max_attempts": 0}, {"base_delay": -1.0}, {"jitter": 1.5}, {"max_retry_after": -1.0}],
)
def test_nonsense_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must"):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]
