"""Typed, immutable models of the Cartesia Agents API (version 2026-03-01).

Decoded straight from JSON bytes by msgspec: unknown fields are ignored, missing
optional fields take their defaults, timestamps become timezone-aware datetimes.
The sandbox encodes with the same models, so both sides agree on one schema.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

import msgspec

API_VERSION: Final = "2026-03-01"

# Only these two statuses are terminal; anything else the API answers
# (created, started, active, cancelled, or a status added later) is not.
TERMINAL_STATUSES: Final = frozenset({"completed", "failed"})
DOCUMENTED_STATUSES: Final = ("created", "started", "completed", "failed")
SDK_STATUSES: Final = ("active", "cancelled")
REGIONS: Final = ("US", "EU", "APAC")
TELEPHONY_TYPES: Final = ("cartesia", "twilio", "sip_trunk")
END_REASONS: Final = (
    "agent_hangup",
    "client_hangup",
    "api_cancelled",
    "max_duration",
    "inactivity",
    "client_disconnected",
    "dial_busy",
    "dial_failed",
    "dial_no_answer",
    "error",
)


def api_timestamp(value: datetime | None) -> str:
    """A timestamp written exactly as these models (msgspec) write it, and so as the API
    does: the audit log records a call's times in this form (None as `null`)."""
    return msgspec.json.encode(value).decode("ascii").strip('"')


# Any JSON value decodes, so that one odd value never fails a page. The policies
# compare scalars only: null is no value, and a list or an object matches nothing.
MetadataValue = str | int | float | bool | list[Any] | dict[str, Any] | None


class TelephonyParams(msgspec.Struct, frozen=True):
    """How a call reached the agent. `to`/`from` are phone numbers: personal data."""

    call_sid: str | None = None
    connection_type: str | None = None
    account_type: str | None = None
    to: str | None = None
    from_: str | None = msgspec.field(default=None, name="from")


class PhoneNumber(msgspec.Struct, frozen=True):
    id: str | None = None
    number: str | None = None


class Agent(msgspec.Struct, frozen=True):
    """One entry of `GET /agents` (an AgentSummary)."""

    id: str
    name: str = ""
    description: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    deleted_at: datetime | None = None
    deployment_count: int | None = None
    phone_numbers: tuple[PhoneNumber, ...] | None = None


class Call(msgspec.Struct, frozen=True):
    """An AgentCall. `transcript`, `summary`, `error_message`, phone numbers and
    metadata values are sensitive: never copy them into logs, reports or the audit log."""

    id: str
    agent_id: str = ""
    agent_name: str | None = None
    status: str = ""
    start_time: datetime | None = None
    end_time: datetime | None = None
    redacted_at: datetime | None = None
    zdr_enabled: bool = False
    transcript: object | None = None
    summary: str | None = None
    error_message: str | None = None
    telephony_params: TelephonyParams | None = None
    end_reason: str | None = None
    deployment_id: str | None = None
    deployment_version_id: str | None = None
    deployment_region: str | None = None
    metadata: dict[str, MetadataValue] | None = None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def age_origin(self) -> datetime | None:
        """The instant a call's age is measured from: start, else end."""
        return self.start_time if self.start_time is not None else self.end_time


class CallPage(msgspec.Struct, frozen=True):
    """Body of `GET /agents/calls`."""

    data: tuple[Call, ...] = ()
    next_page: str | None = None


class UnreadableCall(msgspec.Struct, frozen=True):
    """An entry of a call listing that does not decode into a `Call`.

    Yielded in its place so one odd value never stops the rest of the listing; the
    run skips it. `id` and `agent_id` are kept only when the entry holds them as
    strings (they are not checked as ids here); `problem` names the field and the
    type that did not fit, never the value.
    """

    id: str | None
    agent_id: str | None
    problem: str
