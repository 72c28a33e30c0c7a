"""Instants as RFC 3339 text, one way everywhere: UTC, with a `Z`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

Precision = Literal["auto", "seconds", "milliseconds"]


def as_utc(moment: datetime) -> datetime:
    """`moment` made aware: one without an offset is UTC (the API's convention, and
    HTTP's), never local time. An aware one is returned as it is."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def rfc3339(instant: datetime, timespec: Precision = "auto") -> str:
    """`instant` in UTC as RFC 3339 text ending in `Z`; a naive instant is taken as UTC
    (the API's convention), never as local time."""
    return as_utc(instant).astimezone(UTC).isoformat(timespec=timespec).replace("+00:00", "Z")


def rfc3339_unix(seconds: float) -> str:
    """A Unix time as RFC 3339 text, to the second."""
    return rfc3339(datetime.fromtimestamp(seconds, UTC), "seconds")


def utc_timestamp(instant: datetime | None = None) -> str:
    """An audit line's `ts`: RFC 3339 in UTC with a `Z`, millisecond precision (now by default)."""
    return rfc3339(instant or datetime.now(UTC), "milliseconds")
