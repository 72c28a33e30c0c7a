"""The hostile API's world: agents and calls as raw JSON values, and how to draw them.

A call is kept as the exact JSON object the server sends, so every quirk the
product must survive (odd status spellings, list metadata, ids with URL
characters, a call whose own `agent_id` names another agent) is representable.
The `repr` of a world is short enough to paste into a reproduction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from hypothesis import strategies as st

NOW_TEXT: Final = "2026-06-01T00:00:00Z"
NOW: Final = datetime.fromisoformat("2026-06-01T00:00:00+00:00")
API_KEY: Final = "sk_car_hostile_7f3a9c2e5b1d4068"
KEY_SUFFIX: Final = API_KEY.removeprefix("sk_car_")

# Personal strings: none may appear in any output of the product.
PERSON: Final = "Dana Quillfeather"
PHONE_TO: Final = "+15550193417"
PHONE_FROM: Final = "+4930901820"
SECRET_TRANSCRIPT: Final = "my card number is 4111 1111 1111 1111"
ERROR_PERSONAL: Final = "caller Oswin Harrowgate at +447700900461"

STATUSES: Final = (
    "completed",
    "completed",
    "completed",
    "completed",
    "failed",
    "failed",
    "failed",
    "active",
    "cancelled",
    "Completed",
    "FAILED",
    "completed ",
    "",
)
ENVS: Final[tuple[object, ...]] = (
    "prod",
    "prod",
    "prod",
    "prod",
    "prod",
    "dev",
    "PROD",
    ["prod"],
    {"v": "prod"},
    None,
)
HOLDS: Final[tuple[object, ...]] = (
    True,
    False,
    "TRUE",
    "true",
    "True",
    "false",
    "yes",
    1,
    ["true"],
    {"on": True},
)
REGIONS: Final[tuple[object, ...]] = ("US", "US", "us", "Eu", "EU", "EU", "APAC", "apac", None)
# Ids the product must never put into a URL (and so never DELETE).
BAD_IDS: Final = ("a/b", "..", "x..y", "q?x=1", "p%2Fq", "sp ace", "h#frag", "L" * 129)


@dataclass(frozen=True)
class AgentSpec:
    id: str
    name: str


@dataclass(frozen=True)
class CallSpec:
    """One call; `body` is the JSON object the listing and GET send before redaction."""

    body: dict[str, Any]
    listed_under: str  # the agent whose listing carries it

    @property
    def id(self) -> str:
        value = self.body["id"]
        assert isinstance(value, str)
        return value

    def __repr__(self) -> str:
        shown = {k: v for k, v in self.body.items() if k not in _BORING}
        return f"Call({self.listed_under}: {shown})"


_BORING: Final = frozenset(
    {"transcript", "summary", "telephony_params", "end_time", "error_message", "end_reason"}
    | {"deployment_id", "deployment_version_id"}
)


@dataclass(frozen=True)
class World:
    agents: tuple[AgentSpec, ...]
    calls: tuple[CallSpec, ...] = field(default=())

    def agent(self, agent_id: str) -> AgentSpec:
        return next(a for a in self.agents if a.id == agent_id)

    def calls_of(self, agent_id: str) -> list[CallSpec]:
        """Newest first (null start times last), as the API documents its order."""
        listed = [c for c in self.calls if c.listed_under == agent_id]
        return sorted(listed, key=_start_key, reverse=True)

    def by_id(self) -> dict[str, CallSpec]:
        return {c.id: c for c in self.calls}

    def personal_values(self) -> set[str]:
        """Every metadata string value of the world (customers are personal data)."""
        found = {PERSON, PHONE_TO, PHONE_FROM, SECRET_TRANSCRIPT, ERROR_PERSONAL}
        for call in self.calls:
            metadata = call.body.get("metadata")
            if isinstance(metadata, dict):
                customer = metadata.get("customer")
                if isinstance(customer, str):
                    found.add(customer)
        return found


def _start_key(call: CallSpec) -> str:
    value = call.body.get("start_time")
    return value if isinstance(value, str) else ""


AGENT_POOL: Final = (
    AgentSpec("support-agent-1", "support-eu"),
    AgentSpec("billing-agent-2", "billing"),
    AgentSpec("support-agent-3", "support-us"),
)


def _stamp(days: float) -> str:
    return (NOW - timedelta(days=days)).isoformat().replace("+00:00", "Z")


@st.composite
def calls_for(
    draw: st.DrawFn, agent: AgentSpec, others: tuple[AgentSpec, ...], n: int
) -> list[CallSpec]:
    calls: list[CallSpec] = []
    for index in range(n):
        call_id = f"c{agent.id[-1]}-{index:02d}"
        if draw(st.integers(0, 19)) == 0:
            call_id = draw(st.sampled_from(BAD_IDS)) + str(index)
        own_agent: str | None = agent.id
        own_name: str | None = agent.name
        quirk = draw(st.integers(0, 9))
        if quirk == 0:  # listed under this agent, but says it is another's
            own_agent = draw(st.sampled_from([a.id for a in others] or ["ghost-agent"]))
        elif quirk == 1:
            own_name = draw(st.sampled_from(["billing", "support-old", None]))
        elif quirk == 2:
            own_agent = None
        age = draw(st.sampled_from([1.0, 29.9, 30.0, 31.0, 90.0, 90.0, 400.0, 400.0]))
        start: str | None = _stamp(age)
        end: str | None = _stamp(age - 0.01)
        times = draw(st.integers(0, 9))
        if times == 0:
            start = None
        elif times == 1:
            start = end = None
        metadata: dict[str, object] | None = {}
        assert metadata is not None
        env = draw(st.sampled_from(ENVS))
        if env is not None:
            metadata["env"] = env
        if draw(st.integers(0, 2)) == 0:
            metadata["hold"] = draw(st.sampled_from(HOLDS))
        metadata["customer"] = f"{PERSON} #{index}"
        if draw(st.integers(0, 14)) == 0:
            metadata = None
        body: dict[str, Any] = {
            "id": call_id,
            "status": draw(st.sampled_from(STATUSES)),
            "start_time": start,
            "end_time": end,
            "redacted_at": _stamp(2) if draw(st.integers(0, 9)) == 0 else None,
            "zdr_enabled": draw(st.integers(0, 9)) == 0,
            "transcript": None,
            "summary": f"{PERSON} asked about {SECRET_TRANSCRIPT}",
            "error_message": None,
            "telephony_params": {
                "call_sid": f"CA{index:04d}",
                "connection_type": "pstn",
                "account_type": "twilio",
                "to": PHONE_TO,
                "from": PHONE_FROM,
            },
            "end_reason": "agent_hangup",
            "deployment_id": "dep_1",
            "deployment_version_id": "depv_1",
            "deployment_region": draw(st.sampled_from(REGIONS)),
            "metadata": metadata,
        }
        if own_agent is not None:
            body["agent_id"] = own_agent
        body["agent_name"] = own_name
        calls.append(CallSpec(body=body, listed_under=agent.id))
    return calls


@st.composite
def worlds(draw: st.DrawFn, max_calls: int = 30) -> World:
    count = draw(st.integers(1, len(AGENT_POOL)))
    agents = AGENT_POOL[:count]
    calls: list[CallSpec] = []
    for agent in agents:
        n = draw(st.integers(0, max_calls))
        others = tuple(a for a in agents if a != agent)
        calls.extend(draw(calls_for(agent, others, n)))
    unique: dict[str, CallSpec] = {}
    for call in calls:  # a bad id drawn twice: keep the first
        unique.setdefault(call.id, call)
    return World(agents=agents, calls=tuple(unique.values()))
