"""Fault knobs and deliberate API behaviours of the sandbox, all off by default.

`Faults` are what goes wrong in transit (limits, latency, 5xx, dropped
connections, garbage bodies, odd pagination); `Behaviour` picks among the
answers API.md leaves undocumented, so a client can be tested against each.
Both are plain values: tests swap them on a running app, or over HTTP through
`POST /_sandbox/faults` and `POST /_sandbox/behaviour`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, fields
from typing import Any, TypeVar


@dataclass(frozen=True)
class Faults:
    rate: float | None = None  # requests per second over all API routes; over it: 429
    max_in_flight: int | None = None  # concurrent API requests; over it: 429
    latency_ms: float = 0.0  # response time of every admitted API request, work included
    jitter_ms: float = 0.0  # +/- uniformly around latency_ms
    error_rate: float = 0.0  # share of requests answered 5xx
    drop_rate: float = 0.0  # share of connections dropped mid-response
    malformed_rate: float = 0.0  # share of 200 answers whose body is not valid JSON
    duplicate_rate: float = 0.0  # share of `starting_after` pages that repeat the cursor's call
    stuck_cursor: bool = False  # `next_page` echoes the request's cursor instead of advancing
    after_effect: bool = False  # 5xx/drops hit after a DELETE took effect, not before
    retry_after_ms: bool = True  # 429s also carry `retry-after-ms` (besides `Retry-After`)

    def __post_init__(self) -> None:
        for name in ("error_rate", "drop_rate", "malformed_rate", "duplicate_rate"):
            share = getattr(self, name)
            if not 0.0 <= share <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        if self.rate is not None and self.rate <= 0:
            raise ValueError("rate must be positive")
        if self.max_in_flight is not None and self.max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        if self.latency_ms < 0 or self.jitter_ms < 0:
            raise ValueError("latency_ms and jitter_ms must not be negative")

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Faults:
        """Knobs from a JSON object; knobs not named are off. Raises ValueError."""
        return _from_json(cls, body)


@dataclass(frozen=True)
class Behaviour:
    """Answers the public API reference leaves open, chosen per run."""

    nonterminal_delete_status: int = 400  # DELETE of a call not completed/failed (or 409)
    redelete_status: int = 200  # DELETE of an already-redacted call: 200 again, or a 4xx
    unknown_agent_status: int = 404  # listing calls of an agent that does not exist

    def __post_init__(self) -> None:
        if not 400 <= self.nonterminal_delete_status < 500:
            raise ValueError("nonterminal_delete_status must be a 4xx")
        if self.redelete_status != 200 and not 400 <= self.redelete_status < 500:
            raise ValueError("redelete_status must be 200 or a 4xx")
        if self.unknown_agent_status not in (200, 400, 404):
            raise ValueError("unknown_agent_status must be 200 (empty page), 400 or 404")

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Behaviour:
        return _from_json(cls, body)


def _from_json(cls: type[_Knobs], body: dict[str, Any]) -> _Knobs:
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(body) - known)
    if unknown:
        raise ValueError(f"unknown knobs: {', '.join(unknown)}")
    try:
        return cls(**body)
    except TypeError as err:
        raise ValueError(str(err)) from None


NO_FAULTS = Faults()
DEFAULT_BEHAVIOUR = Behaviour()
_Knobs = TypeVar("_Knobs", Faults, Behaviour)


class TokenBucket:
    """Requests per second with a one-second burst; `take` says how long to wait if empty."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate)
        self._tokens = self.capacity
        self._stamp = time.monotonic()

    def take(self) -> float:
        """0.0 when a request may pass now, else the seconds until one may."""
        now = time.monotonic()
        self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self.rate


def retry_after_headers(wait_s: float, with_ms: bool) -> list[tuple[bytes, bytes]]:
    """`Retry-After` in whole seconds (HTTP allows no fraction), and optionally exact ms."""
    headers = [(b"retry-after", str(max(1, math.ceil(wait_s))).encode())]
    if with_ms:
        headers.append((b"retry-after-ms", str(max(1, math.ceil(wait_s * 1000))).encode()))
    return headers
