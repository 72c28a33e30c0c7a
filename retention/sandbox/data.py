"""A deterministic, lazy dataset of agents and calls for the sandbox API.

Nothing per call is stored: a call is derived on demand from (seed, agent index,
position), where position 0 is the agent's newest call. Its id encodes the agent
index and position reversibly, so cursors and lookups cost O(1) whatever the
size. Only mutations (redactions, test overrides, removed agents) live in memory.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import msgspec

from retention.api.models import Agent, Call, PhoneNumber, TelephonyParams
from retention.sandbox import content
from retention.sandbox.generate import AgentPlan, CallFactory

_MASK64: Final = (1 << 64) - 1
_ODD: Final = 0x9E3779B97F4A7C15  # odd, so multiplication mod 2**64 is a bijection
_INV: Final = pow(_ODD, -1, 1 << 64)
_CHECK_ODD: Final = 0xD6E8FEB86659FD93
_POS_BITS: Final = 36  # up to 68 billion calls per agent
_HISTORY: Final = timedelta(days=730)
_CALL_PREFIX: Final = "call_"


def _utc_now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


@dataclass(frozen=True)
class DatasetSpec:
    """What to generate. Same spec, same dataset, byte for byte."""

    seed: int = 1
    agents: int = 8
    calls: int = 2000  # total, spread unevenly over the agents
    now: datetime = field(default_factory=_utc_now)  # generated ages are relative to it

    def __post_init__(self) -> None:
        if self.agents < 1:
            raise ValueError("agents must be at least 1")
        if self.calls < 0:
            raise ValueError("calls must not be negative")
        if self.now.tzinfo is None:
            raise ValueError("now must be timezone-aware")


class UnknownCall(LookupError):
    """No call with this id (or its agent was removed)."""


class UnknownAgent(LookupError):
    """No agent with this id (or it was removed)."""


class NotTerminal(ValueError):
    """Only completed or failed calls can be redacted."""


class BadCursor(ValueError):
    """A pagination cursor that is not a call of the listed agent."""


def redact_call(call: Call, at: datetime) -> Call:
    """The call as DELETE leaves it: sensitive fields gone, operational ones kept."""
    params = call.telephony_params
    kept = (
        TelephonyParams(call_sid=params.call_sid, connection_type=params.connection_type)
        if params is not None
        else None
    )
    return msgspec.structs.replace(
        call,
        redacted_at=at,
        transcript=None,
        summary=None,
        error_message=None,
        metadata=None,
        telephony_params=kept,
    )


class Dataset:
    """Agents and their calls, derived on demand from a `DatasetSpec`."""

    def __init__(self, spec: DatasetSpec) -> None:
        self.spec = spec
        self._key = hashlib.blake2b(f"sandbox:{spec.seed}".encode(), digest_size=32).digest()
        self._id_mask = int.from_bytes(self._key[:8], "little")
        self._check_mask = int.from_bytes(self._key[8:16], "little")
        self._plans = self._plan_agents()
        self._by_agent_id = {plan.agent.id: plan for plan in self._plans}
        self._factory = CallFactory(self._key, spec.now)
        # Bounded: a page just listed is usually fetched or deleted call by call next.
        self._recent = functools.lru_cache(maxsize=4096)(self._build_listed)
        self._redactions: dict[str, datetime] = {}
        self._overrides: dict[str, dict[str, Any]] = {}
        self._removed: set[str] = set()

    # -- agents -------------------------------------------------------------

    def _plan_agents(self) -> tuple[AgentPlan, ...]:
        spec = self.spec
        n = spec.agents
        deleted = min(2, n // 4)  # "a deleted agent or two" once there are a few
        digests = [self._digest(b"agent", i) for i in range(n)]
        # Uneven but deterministic shares: a few busy agents, a long tail.
        weights = [1.0 / (1 + (i * 7 + spec.seed) % n) ** 0.9 for i in range(n)]
        counts = _apportion(spec.calls, weights)
        plans = []
        for i, (digest, count) in enumerate(zip(digests, counts, strict=True)):
            bits = int.from_bytes(digest, "little")
            base = content.AGENT_BASE_NAMES[i % len(content.AGENT_BASE_NAMES)]
            name = base if i < len(content.AGENT_BASE_NAMES) else f"{base}-{i // 8 + 1}"
            age = _HISTORY if i == 0 else timedelta(days=60 + bits % 670)
            created = spec.now - age
            deleted_at = None
            if i >= n - deleted:
                deleted_at = spec.now - timedelta(days=5 + (bits >> 10) % 50, hours=3)
            newest = deleted_at or spec.now
            number = content.phone(bits >> 20)
            agent = Agent(
                id=f"agent_{digest[:10].hex()}",
                name=name,
                description=content.DESCRIPTIONS[i % len(content.DESCRIPTIONS)],
                created_at=created,
                updated_at=created + (newest - created) / 2,
                deleted_at=deleted_at,
                deployment_count=1 + (bits >> 40) % 5,
                phone_numbers=(PhoneNumber(id=f"pn_{digest[10:18].hex()}", number=number),),
            )
            plans.append(
                AgentPlan(
                    index=i,
                    agent=agent,
                    count=count,
                    newest_us=_micros(newest),
                    span_us=_micros(newest) - _micros(created),
                    region=("US", "EU", "APAC")[i % 3],
                    number=number,
                    deployment_id=f"dep_{digest[18:28].hex()}",
                    versions=tuple(
                        f"depv_{digest[28:34].hex()}{v:02d}" for v in range(1 + (bits >> 44) % 6)
                    ),
                    zdr_permille=(0, 60, 0, 400)[i % 4],
                    tts_voice=content.TTS_VOICES[i % len(content.TTS_VOICES)],
                )
            )
        return tuple(plans)

    def agents(self) -> Sequence[Agent]:
        """Every agent the API lists, deleted ones (with `deleted_at`) included."""
        return tuple(p.agent for p in self._plans if p.agent.id not in self._removed)

    def agent_plan(self, agent_id: str) -> AgentPlan:
        plan = self._by_agent_id.get(agent_id)
        if plan is None or agent_id in self._removed:
            raise UnknownAgent(agent_id)
        return plan

    def call_count(self, agent_id: str) -> int:
        return self.agent_plan(agent_id).count

    def remove_agent(self, agent_id: str) -> bool:
        """Make an agent vanish (test hook): gone from listings, its calls answer 404."""
        if agent_id not in self._by_agent_id or agent_id in self._removed:
            return False
        self._removed.add(agent_id)
        return True

    # -- ids ----------------------------------------------------------------

    def call_id(self, agent_index: int, position: int) -> str:
        """The id of an agent's call at `position` (0 = newest)."""
        scrambled = (((agent_index << _POS_BITS) | position) ^ self._id_mask) * _ODD & _MASK64
        return f"{_CALL_PREFIX}{scrambled:016x}{self._check(scrambled):04x}"

    def _check(self, scrambled: int) -> int:
        return (((scrambled ^ self._check_mask) * _CHECK_ODD) & _MASK64) >> 48

    def locate(self, call_id: str) -> tuple[AgentPlan, int] | None:
        """(agent plan, position) of a call id, or None when it is not one of ours."""
        if len(call_id) != 25 or not call_id.startswith(_CALL_PREFIX):
            return None
        try:
            scrambled = int(call_id[5:21], 16)
            check = int(call_id[21:], 16)
        except ValueError:
            return None
        if check != self._check(scrambled) or call_id != call_id.lower():
            return None
        plain = ((scrambled * _INV) & _MASK64) ^ self._id_mask
        index, position = plain >> _POS_BITS, plain & ((1 << _POS_BITS) - 1)
        if index >= len(self._plans) or position >= self._plans[index].count:
            return None
        plan = self._plans[index]
        if plan.agent.id in self._removed:
            return None
        return plan, position

    # -- calls --------------------------------------------------------------

    def _build_listed(self, index: int, position: int) -> Call:
        plan = self._plans[index]
        return self._factory.build(plan, position, self.call_id(index, position), False)

    def _call(self, plan: AgentPlan, position: int, transcript: bool) -> Call:
        if transcript:
            call = self._factory.build(plan, position, self.call_id(plan.index, position), True)
        else:
            call = self._recent(plan.index, position)
        call_id = call.id
        if call_id in self._redactions:
            call = redact_call(call, self._redactions[call_id])
        override = self._overrides.get(call_id)
        if override is not None:
            merged = msgspec.to_builtins(call)
            merged.update(override)
            call = msgspec.convert(merged, Call)
        return call

    def iter_calls(self, agent_id: str, *, transcripts: bool = True) -> Iterator[Call]:
        """An agent's calls, newest first, as the API currently shows them."""
        plan = self.agent_plan(agent_id)
        for position in range(plan.count):
            yield self._call(plan, position, transcripts)

    def iter_all_calls(self, *, transcripts: bool = True) -> Iterator[Call]:
        for agent in self.agents():
            yield from self.iter_calls(agent.id, transcripts=transcripts)

    def get_call(self, call_id: str, *, transcript: bool = True) -> Call | None:
        found = self.locate(call_id)
        if found is None:
            return None
        return self._call(found[0], found[1], transcript)

    def page(
        self,
        agent_id: str,
        *,
        limit: int,
        starting_after: str | None = None,
        ending_before: str | None = None,
        transcripts: bool = False,
    ) -> tuple[list[Call], bool]:
        """One page of an agent's calls, newest first, and whether older ones follow."""
        plan = self.agent_plan(agent_id)
        start, end = 0, plan.count
        if starting_after is not None:
            start = self._cursor_position(plan, starting_after) + 1
        if ending_before is not None:
            end = self._cursor_position(plan, ending_before)
            if starting_after is None:
                start = max(0, end - limit)
        end = min(end, start + limit)
        calls = [self._call(plan, p, transcripts) for p in range(start, end)]
        return calls, end < plan.count

    def _cursor_position(self, plan: AgentPlan, cursor: str) -> int:
        found = self.locate(cursor)
        if found is None or found[0] is not plan:
            raise BadCursor(cursor)
        return found[1]

    # -- mutations ----------------------------------------------------------

    def redact(self, call_id: str, at: datetime) -> Call:
        """What DELETE does. An already-redacted call is returned unchanged."""
        found = self.locate(call_id)
        if found is None:
            raise UnknownCall(call_id)
        current = self._call(found[0], found[1], transcript=False)
        if current.redacted_at is not None:
            return current
        if not current.terminal:
            raise NotTerminal(call_id)
        self._redactions[call_id] = at
        override = self._overrides.get(call_id)
        if override is not None:
            override.pop("redacted_at", None)  # a fresh deletion wins over a test's undo
        return self._call(found[0], found[1], transcript=False)

    def redacted_ids(self) -> frozenset[str]:
        """Ids redacted through `redact` since this dataset was created."""
        return frozenset(self._redactions)

    def override(self, call_id: str, fields: Mapping[str, object]) -> Call:
        """Force fields of a call (test hook), e.g. `{"redacted_at": None}`.

        Raises UnknownCall, or msgspec.ValidationError when the fields do not fit a call.
        """
        found = self.locate(call_id)
        if found is None:
            raise UnknownCall(call_id)
        if "id" in fields or "agent_id" in fields:
            raise msgspec.ValidationError("id and agent_id cannot be overridden")
        merged = {**self._overrides.get(call_id, {}), **msgspec.to_builtins(dict(fields))}
        probe = {**msgspec.to_builtins(self._call(found[0], found[1], False)), **merged}
        msgspec.convert(probe, Call)  # refuse what would not decode, before storing it
        self._overrides[call_id] = merged
        return self._call(found[0], found[1], transcript=True)

    def _digest(self, kind: bytes, index: int) -> bytes:
        return hashlib.blake2b(kind + index.to_bytes(8, "little"), key=self._key).digest()


def _micros(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def _apportion(total: int, weights: list[float]) -> list[int]:
    """Split `total` in proportion to `weights` (largest remainder): sums exactly."""
    scale = total / sum(weights)
    raw = [w * scale for w in weights]
    counts = [int(r) for r in raw]
    by_remainder = sorted(range(len(raw)), key=lambda i: (counts[i] - raw[i], i))
    for i in by_remainder[: total - sum(counts)]:
        counts[i] += 1
    return counts
