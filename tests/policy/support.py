"""Helpers shared by the policy tests: policies from inline YAML, calls with defaults."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from retention.api.models import Call
from retention.policy.load import PolicyError, PolicySet, parse_policies

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
# The agent `call()`'s calls are listed under: its id and its name from GET /agents.
LISTED = ("agent_1", "support-us")


def policies(text: str, name: str = "p.yaml") -> PolicySet:
    return parse_policies([(name, textwrap.dedent(text))])


def problems(text: str, name: str = "p.yaml") -> list[str]:
    """Every problem the loader reports for `text`, as the lines a user sees."""
    with pytest.raises(PolicyError) as caught:
        policies(text, name)
    return [str(p) for p in caught.value.problems]


def call(age: timedelta | None = timedelta(days=100), **fields: Any) -> Call:
    """A completed US call of `support-us` (agent_1), started `age` before NOW."""
    values: dict[str, Any] = {
        "id": "call_1",
        "agent_id": "agent_1",
        "agent_name": "support-us",
        "status": "completed",
        "start_time": None if age is None else NOW - age,
        "deployment_region": "US",
    }
    values.update(fields)
    return Call(**values)
