"""Derive one call from (seed, agent, position): the hot path of the sandbox.

One keyed BLAKE2b digest per call supplies every random choice, so a call costs a
few microseconds and needs nothing but its coordinates. Position 0 is an agent's
newest call; times fall strictly as the position grows (newest first).
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from retention.api.models import REGIONS, Agent, Call, MetadataValue, TelephonyParams
from retention.sandbox import content

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND: Final = 1_000_000
_HOUR: Final = 3600 * _SECOND
_DAY: Final = 24 * _HOUR
_IN_PROGRESS_WINDOW: Final = _HOUR  # calls younger than this may still be running
_DIAL_FAILURES: Final = ("dial_busy", "dial_failed", "dial_no_answer")
_FAILURES: Final = ("error", "client_disconnected", "error", "max_duration")
_ENDINGS: Final = (
    "agent_hangup",
    "client_hangup",
    "client_hangup",
    "agent_hangup",
    "inactivity",
    "max_duration",
    "client_disconnected",
    "agent_hangup",
)
_MASK64: Final = (1 << 64) - 1
_WORDS: Final = struct.Struct("<4Q")
_COORDS: Final = struct.Struct("<QI")
_ACCOUNT_TYPES: Final = ("cartesia",) * 5 + ("twilio",) * 3 + ("sip_trunk",) * 2


@dataclass(frozen=True, slots=True)
class AgentPlan:
    """Everything needed to derive an agent's calls; O(1) memory per agent."""

    index: int
    agent: Agent
    count: int
    newest_us: int  # calls span [newest_us - span_us, newest_us] (epoch microseconds)
    span_us: int
    region: str
    number: str
    deployment_id: str
    versions: tuple[str, ...]
    zdr_permille: int
    tts_voice: str


class CallFactory:
    """Builds calls from their coordinates; holds no per-call state."""

    def __init__(self, key: bytes, now: datetime) -> None:
        self._key = key
        self._now_us = (now - _EPOCH) // timedelta(microseconds=1)

    def build(self, plan: AgentPlan, position: int, call_id: str, transcript: bool) -> Call:
        w0, w1, w2, words = _WORDS.unpack(
            hashlib.blake2b(
                _COORDS.pack(position, plan.index), key=self._key, digest_size=32
            ).digest()
        )
        x = (position + (w0 & 0xFFFFFFFF) / 4294967296.0) / plan.count
        sort_us = plan.newest_us - int(plan.span_us * x * x)  # denser towards now
        age_us = self._now_us - sort_us
        kind = (w0 >> 32) % 1000
        duration_us = (20 + (w0 >> 42) % 700) * _SECOND
        pick = (w0 >> 52) & 0xFF

        start: int | None = sort_us
        end: int | None = None
        reason: str | None = None
        if age_us < _IN_PROGRESS_WINDOW and kind < 600:
            status = ("created", "started", "active")[kind % 3]
            start = None if status == "created" else start
        elif kind < 10:  # created long ago and never started: stuck
            status, start = "created", None
        elif kind < 25:  # started or active for months: stuck
            status = "started" if kind < 20 else "active"
        elif kind < 40:
            status, reason = "cancelled", "api_cancelled"
        elif kind < 52:  # never connected: only an end time
            status, start, end = "failed", None, sort_us + 30 * _SECOND
            reason = _DIAL_FAILURES[pick % 3]
        elif kind < 55:  # failed before any timestamp was recorded
            status, start, reason = "failed", None, "error"
        elif kind < 60:  # completed, but the end time never arrived
            status, reason = "completed", "agent_hangup"
        elif kind < 140:
            status, reason = "failed", _FAILURES[pick % len(_FAILURES)]
        else:
            status, reason = "completed", _ENDINGS[pick % len(_ENDINGS)]
        ends = status in ("cancelled", "failed", "completed") and not 55 <= kind < 60
        if ends and start is not None:
            if reason == "max_duration":
                duration_us = 1800 * _SECOND
            end = min(start + duration_us, self._now_us - _SECOND)

        zdr = w1 % 1000 < plan.zdr_permille
        region = plan.region if (w1 >> 10) % 100 < 85 else REGIONS[(w1 >> 17) % 3]
        version = plan.versions[min(len(plan.versions) - 1, int((1 - x * x) * len(plan.versions)))]

        caller = content.phone(words)
        params = self._telephony(w1 >> 20, plan, caller, zdr)
        metadata = _metadata(w2)

        summary = error = None
        turns: object | None = None
        if not zdr:
            summary = content.summary(words, caller)
            if status == "failed":
                error = content.error_message(w2 >> 40, caller)
            if transcript:
                turns = _transcript(content.conversation(words, caller), words)
            if status in ("created", "started", "active"):
                summary = None  # summaries are written when a call ends

        redacted: int | None = None
        origin = start if start is not None else end
        terminal = status in ("completed", "failed")
        if terminal and origin is not None and age_us > 30 * _DAY and (w1 >> 40) % 1000 < 40:
            redacted = origin + (age_us * (100 + (w1 >> 50) % 800)) // 1000
        if redacted is not None and params is not None:
            params = TelephonyParams(
                call_sid=params.call_sid, connection_type=params.connection_type
            )
        return Call(
            id=call_id,
            agent_id=plan.agent.id,
            agent_name=plan.agent.name,
            status=status,
            start_time=_at(start),
            end_time=_at(end),
            redacted_at=_at(redacted),
            zdr_enabled=zdr,
            transcript=None if redacted else turns,
            summary=None if redacted else summary,
            error_message=None if redacted else error,
            telephony_params=params,
            end_reason=reason,
            deployment_id=plan.deployment_id,
            deployment_version_id=version,
            deployment_region=region,
            metadata=None if redacted else metadata,
        )

    @staticmethod
    def _telephony(r: int, plan: AgentPlan, caller: str, zdr: bool) -> TelephonyParams | None:
        if r % 10 < 2:
            return None  # a web or playground call: no telephony at all
        account = _ACCOUNT_TYPES[(r >> 4) % len(_ACCOUNT_TYPES)]
        mixed = r * 0x9E3779B97F4A7C15
        sid_bits = f"{mixed & _MASK64:016x}{(mixed >> 23) * 0xD6E8FEB86659FD93 & _MASK64:016x}"
        sid = {"twilio": "CA" + sid_bits, "cartesia": "cc_" + sid_bits[:24]}.get(
            account, "sip_" + sid_bits[:24]
        )
        return TelephonyParams(
            call_sid=sid,
            connection_type="outbound" if (r >> 8) % 4 == 0 else "inbound",
            account_type=account,
            to=None if zdr else caller,
            from_=None if zdr else plan.number,
        )


def _at(micros: int | None) -> datetime | None:
    # Through a float: exact to the microsecond for this century, and twice as fast.
    return None if micros is None else datetime.fromtimestamp(micros / 1e6, UTC)


def _metadata(r: int) -> dict[str, MetadataValue] | None:
    shape = r % 100
    if shape < 8:
        return None
    if shape < 12:
        return {}
    r >>= 7
    values: dict[str, MetadataValue] = {
        "customer_id": f"cus_{1000 + r % content.CUSTOMERS}",
        "env": content.ENVS[(r >> 6) % len(content.ENVS)],
        "tier": content.TIERS[(r >> 10) % len(content.TIERS)],
        "priority": 1 + (r >> 13) % 5,
    }
    hold = (r >> 16) % 100
    if hold < 3:
        values["legal_hold"] = True
    elif hold < 15:
        values["legal_hold"] = False
    if (r >> 23) % 3 == 0:
        values["csat"] = round(1 + ((r >> 25) % 41) / 10, 1)
    if (r >> 31) % 5 == 0:
        values["vip"] = "true" if (r >> 33) % 2 else "false"  # booleans sent as text
    return values


def _transcript(lines: list[tuple[str, str]], bits: int) -> list[dict[str, object]]:
    turns: list[dict[str, object]] = []
    clock = 0.4
    for i, (role, text) in enumerate(lines):
        length = 1.5 + ((bits >> (i * 4)) % 16) * 0.4
        turns.append(
            {
                "role": role,
                "text": text,
                "start_timestamp": round(clock, 2),
                "end_timestamp": round(clock + length, 2),
            }
        )
        clock += length + 0.3
    return turns
