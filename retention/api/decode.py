"""JSON bodies of the Agents API into typed models, one listed call at a time.

A listing is decoded page first (each call left raw), then call by call: a call
that does not fit the `Call` model becomes an `UnreadableCall` naming the field and
type that did not fit, never the value, and the rest of the page is kept.
Timestamps come out timezone-aware: a zone-less one is read as UTC.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Final, TypeVar

import msgspec

from retention.api.models import Agent, Call, UnreadableCall
from retention.timestamps import as_utc

T = TypeVar("T")

_TIME_FIELDS: Final = ("start_time", "end_time", "redacted_at")
_AGENT_TIME_FIELDS: Final = ("created_at", "updated_at", "deleted_at")


def _aware(value: datetime | None) -> datetime | None:
    """The API's timestamps are UTC; a zone-less one is read as UTC, never as local time."""
    return None if value is None else as_utc(value)


def _with_aware_times(item: T, names: tuple[str, ...]) -> T:
    naive = {
        name: _aware(getattr(item, name))
        for name in names
        if (value := getattr(item, name)) is not None and value.tzinfo is None
    }
    return msgspec.structs.replace(item, **naive) if naive else item  # type: ignore[type-var]


_SAFE_PROBLEM: Final = re.compile(r"[A-Za-z0-9 `$.\[\]_|,:<>=\-]{1,200}")


def decode_call(body: bytes) -> Call:
    return _with_aware_times(msgspec.json.decode(body, type=Call), _TIME_FIELDS)


class _Identity(msgspec.Struct):
    id: object = None
    agent_id: object = None


class _RawPage(msgspec.Struct, frozen=True):
    """`GET /agents/calls` with each call left undecoded, to decode one by one."""

    data: tuple[msgspec.Raw, ...] = ()
    next_page: str | None = None


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a listing: its entries in order, and the API's `next_page`."""

    entries: tuple[Call | UnreadableCall, ...]
    next_page: str | None


def _problem(err: msgspec.ValidationError) -> str:
    """msgspec's account of the mismatch (field path and types), when it quotes no value."""
    text = str(err)
    return text if _SAFE_PROBLEM.fullmatch(text) else "does not match the call schema"


def decode_entry(raw: bytes) -> Call | UnreadableCall:
    """One entry of a listing: a Call, or an UnreadableCall naming what did not fit."""
    try:
        return decode_call(raw)
    except msgspec.ValidationError as err:
        problem = _problem(err)
    try:
        found = msgspec.json.decode(raw, type=_Identity)
    except msgspec.ValidationError:
        return UnreadableCall(id=None, agent_id=None, problem=problem)
    return UnreadableCall(
        id=found.id if isinstance(found.id, str) else None,
        agent_id=found.agent_id if isinstance(found.agent_id, str) else None,
        problem=problem,
    )


def decode_page(body: bytes) -> Page:
    page = msgspec.json.decode(body, type=_RawPage)
    return Page(tuple(decode_entry(raw) for raw in page.data), page.next_page)


class _RawAgents(msgspec.Struct, frozen=True):
    """`GET /agents` with each agent left undecoded, to decode one by one."""

    summaries: tuple[msgspec.Raw, ...] = ()


def decode_agent(raw: bytes) -> Agent:
    """One agent. One that does not fit the model keeps only its id (as "" when that is
    not text, which no request accepts) and no name: its calls are still examined under
    its id, and a rule that names agents by name does not match them."""
    try:
        return _with_aware_times(msgspec.json.decode(raw, type=Agent), _AGENT_TIME_FIELDS)
    except msgspec.ValidationError:
        pass
    try:
        found = msgspec.json.decode(raw, type=_Identity)
    except msgspec.ValidationError:
        return Agent(id="")
    return Agent(id=found.id if isinstance(found.id, str) else "")


def decode_agents(body: bytes) -> list[Agent]:
    return [decode_agent(raw) for raw in msgspec.json.decode(body, type=_RawAgents).summaries]
