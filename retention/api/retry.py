"""When to retry a request and how long to wait first: two separate questions.

`RetryPolicy.is_retryable` says which failures are worth another attempt (as
stamina's `on=`); `RetryPolicy.next_wait` says how long to wait before it, or that
the request's attempts or its time budget are spent.

Follows what the official SDK does (API.md), with more patience by default since a
bulk job would rather wait than fail: exponential backoff from `base_delay` doubling
to `max_delay`, with jitter, unless the server says how long (`retry-after-ms`,
`Retry-After` in seconds or as an HTTP date) or whether (`x-should-retry`).
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import Enum
from typing import Final

from retention.api.errors import ApiError, MalformedResponse, TransportFailure
from retention.timestamps import as_utc

# 401/403 are never retried, whatever the server's headers say: a wrong key stays wrong.
NEVER_RETRIED: Final = frozenset({401, 403})
DEFAULT_BUDGET_FACTOR: Final = 4.0  # a request's time budget: 4 x --timeout...
DEFAULT_BUDGET_FLOOR: Final = 120.0  # ...and at least two minutes


def parse_retry_after(headers: Mapping[str, str], *, now: datetime | None = None) -> float | None:
    """Seconds the server asks us to wait, or None when it does not say (or says nonsense).

    `retry-after-ms` wins over `Retry-After`; the latter is seconds or an HTTP date.
    """
    lowered = {key.lower(): value for key, value in headers.items()}
    raw_ms = lowered.get("retry-after-ms")
    if raw_ms is not None:
        seconds = _finite_non_negative(raw_ms)
        if seconds is not None:
            return seconds / 1000.0
    raw = lowered.get("retry-after")
    if raw is None:
        return None
    seconds = _finite_non_negative(raw)
    if seconds is not None:
        return seconds
    try:
        when = parsedate_to_datetime(raw.strip())
    except (TypeError, ValueError, IndexError):
        return None
    when = as_utc(when)  # HTTP dates are GMT
    reference = now if now is not None else datetime.now(UTC)
    return max(0.0, (when - reference).total_seconds())


def should_retry_header(headers: Mapping[str, str]) -> bool | None:
    """The server's explicit `x-should-retry: true|false`, or None when absent or unclear."""
    for key, value in headers.items():
        if key.lower() == "x-should-retry":
            answer = value.strip().lower()
            if answer in ("true", "false"):
                return answer == "true"
    return None


def _finite_non_negative(raw: str) -> float | None:
    try:
        value = float(raw.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


class GiveUp(Enum):
    """Why a retryable failure gets no further attempt."""

    ATTEMPTS = "attempts"  # max_attempts failures, or max_throttled 429s
    BUDGET = "budget"  # the wait would end past the request's time budget


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries with exponential backoff and jitter. Every field is tunable."""

    max_attempts: int = 5  # tries in all, the first included (429 answers not counted)
    # A 429 is the server pacing us, not a failure: it has its own, larger bound, so a
    # --rate above the server's limit slows the run down (through the shared limiter)
    # instead of failing calls; the bound still ends a server that never lets us in.
    max_throttled: int = 30
    base_delay: float = 0.5  # seconds before the first retry
    max_delay: float = 8.0  # cap of the computed backoff
    jitter: float = 0.25  # share of the delay removed at random (0 = none, 1 = full jitter)
    max_retry_after: float = 60.0  # cap on a server-requested wait, against absurd values
    retry_statuses: frozenset[int] = frozenset({408, 429})  # plus every 5xx
    # 409 is a conflict the SDK retries; for a DELETE it may mean "already redacted" or
    # "not terminal", which the caller must decide by reading the call, so GET only.
    conflict_retry_methods: frozenset[str] = frozenset({"GET"})
    retry_transport_errors: bool = True  # timeouts, refused and dropped connections
    retry_malformed: bool = True  # a truncated body is a transient fault (GET only)
    # Seconds all attempts of one request may take, waits and 429s included, after
    # which it gives up; None: max(4 x the per-attempt timeout, 120 s).
    budget: float | None = None
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.max_throttled < 0:
            raise ValueError("max_throttled must not be negative")
        if self.base_delay < 0 or self.max_delay < 0 or self.max_retry_after < 0:
            raise ValueError("delays must not be negative")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError("jitter must be between 0 and 1")
        if self.budget is not None and not (math.isfinite(self.budget) and self.budget > 0):
            raise ValueError("budget must be a positive number of seconds")

    def time_budget(self, request_seconds: float) -> float:
        """Seconds one request may take over all its attempts (see `budget`)."""
        if self.budget is not None:
            return self.budget
        return max(DEFAULT_BUDGET_FACTOR * request_seconds, DEFAULT_BUDGET_FLOOR)

    def retryable_status(self, method: str, status: int, headers: Mapping[str, str]) -> bool:
        """Whether an HTTP error answer is worth another attempt."""
        if status in NEVER_RETRIED:
            return False
        explicit = should_retry_header(headers)
        if explicit is not None:
            return explicit
        if status == 409:
            return method.upper() in self.conflict_retry_methods
        return status in self.retry_statuses or status >= 500

    def is_retryable(self, method: str, failure: ApiError, headers: Mapping[str, str]) -> bool:
        """What is worth another attempt: transport failures, a malformed body to a GET,
        and the answers `retryable_status` accepts. A DELETE answered 2xx may have taken
        effect, so its malformed body is never retried."""
        if isinstance(failure, TransportFailure):
            return self.retry_transport_errors
        if isinstance(failure, MalformedResponse):
            return self.retry_malformed and method.upper() != "DELETE"
        status = failure.status
        return status is not None and self.retryable_status(method, status, headers)

    def next_wait(
        self,
        *,
        attempts: int,
        throttles: int,
        throttled: bool,
        retry_after: float | None,
        spent: float,
        budget: float,
    ) -> float | GiveUp:
        """How long to wait after attempt number `attempts` failed retryably, or why not.

        `throttles` of the attempts were 429s; `throttled` says the last one was. 429s
        are bounded by `max_throttled`, the other failures by `max_attempts`. `spent`
        seconds of the request's `budget` are gone; a wait ending past it gives up.
        """
        if throttled:
            spent_attempts = throttles > self.max_throttled
        else:
            spent_attempts = attempts - throttles >= self.max_attempts
        if spent_attempts:
            return GiveUp.ATTEMPTS
        delay = self.delay(attempts, retry_after)
        return GiveUp.BUDGET if spent + delay > budget else delay

    def backoff(self, attempt: int) -> float:
        """Computed wait after failed attempt number `attempt` (1-based)."""
        exponent = min(max(attempt - 1, 0), 62)  # avoid float overflow on silly attempt counts
        delay = min(self.max_delay, self.base_delay * (2.0**exponent))
        return delay * (1.0 - self.jitter * self.rng.random())

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Wait before the next attempt: the server's word when given (capped), else backoff."""
        if retry_after is not None:
            return min(retry_after, self.max_retry_after)
        return self.backoff(attempt)
