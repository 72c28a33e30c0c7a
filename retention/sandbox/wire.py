"""What the sandbox puts on the wire: JSON bodies, counters, replies.

Bodies follow API.md: every field of a call present, null when empty; a redacted
call keeps exactly the fields of the documented DELETE response example.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import msgspec

from retention.api.models import Agent, Call
from retention.sandbox.generate import AgentPlan

_JSON: Final = (b"content-type", b"application/json")
_encoder: Final = msgspec.json.Encoder()


class _KeptTelephony(msgspec.Struct):
    call_sid: str | None
    connection_type: str | None


class RedactedCallBody(msgspec.Struct):
    """The documented DELETE response: no transcript, summary, phone numbers or metadata."""

    id: str
    agent_id: str
    agent_name: str | None
    zdr_enabled: bool
    redacted_at: datetime | None
    start_time: datetime | None
    end_time: datetime | None
    telephony_params: _KeptTelephony | None
    status: str
    end_reason: str | None
    deployment_id: str | None
    deployment_version_id: str | None
    deployment_region: str | None


def call_body(call: Call) -> Call | RedactedCallBody:
    """The object to encode for a call: its redacted shape once `redacted_at` is set."""
    if call.redacted_at is None:
        return call
    params = call.telephony_params
    return RedactedCallBody(
        id=call.id,
        agent_id=call.agent_id,
        agent_name=call.agent_name,
        zdr_enabled=call.zdr_enabled,
        redacted_at=call.redacted_at,
        start_time=call.start_time,
        end_time=call.end_time,
        telephony_params=(
            _KeptTelephony(call_sid=params.call_sid, connection_type=params.connection_type)
            if params is not None
            else None
        ),
        status=call.status,
        end_reason=call.end_reason,
        deployment_id=call.deployment_id,
        deployment_version_id=call.deployment_version_id,
        deployment_region=call.deployment_region,
    )


def agent_body(plan: AgentPlan) -> dict[str, Any]:
    """An AgentSummary with the fields the official SDK expects besides ours."""
    agent: Agent = plan.agent
    body: dict[str, Any] = msgspec.to_builtins(agent)
    body.update(
        has_text_to_agent_run=plan.index % 3 == 0,
        tts_language="en",
        tts_voice=plan.tts_voice,
        webhook_id=None,
        git_deploy_branch=None,
        git_repository=None,
    )
    return body


def encode(value: object) -> bytes:
    return _encoder.encode(value)


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    headers: tuple[tuple[bytes, bytes], ...] = ()

    def raw_headers(self) -> list[tuple[bytes, bytes]]:
        return [_JSON, (b"content-length", str(len(self.body)).encode()), *self.headers]


def json_reply(status: int, value: object, *headers: tuple[bytes, bytes]) -> Reply:
    return Reply(status, encode(value), headers)


def error_reply(status: int, code: str, message: str, *headers: tuple[bytes, bytes]) -> Reply:
    """An error body: its shape is undocumented upstream, so keep it small and plain."""
    return json_reply(status, {"error": code, "message": message}, *headers)


@dataclass
class SandboxStats:
    """Counters a test or benchmark reads: per (route, status), deletions, in-flight."""

    requests: Counter[tuple[str, int]] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)  # connections cut, by route
    malformed: Counter[str] = field(default_factory=Counter)  # garbage bodies, by route
    deletions: int = 0  # calls newly redacted by DELETE
    transcript_requests: int = 0  # listings with expand=transcript
    in_flight: int = 0
    peak_in_flight: int = 0

    def count(self, route: str, status: int | None = None) -> int:
        """Requests answered on `route` (with `status`, if given)."""
        return sum(n for (r, s), n in self.requests.items() if r == route and status in (None, s))

    def total(self) -> int:
        return sum(self.requests.values()) + sum(self.dropped.values())

    def to_json(self) -> dict[str, Any]:
        by_route: dict[str, dict[str, int]] = {}
        for (route, status), n in sorted(self.requests.items()):
            by_route.setdefault(route, {})[str(status)] = n
        return {
            "requests": by_route,
            "requests_total": self.total(),
            "dropped": dict(self.dropped),
            "malformed": dict(self.malformed),
            "deletions": self.deletions,
            "transcript_requests": self.transcript_requests,
            "in_flight": self.in_flight,
            "peak_in_flight": self.peak_in_flight,
        }

    def reset(self) -> None:
        self.requests.clear()
        self.dropped.clear()
        self.malformed.clear()
        self.deletions = self.transcript_requests = 0
        self.peak_in_flight = self.in_flight
