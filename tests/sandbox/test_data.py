"""The generated dataset: deterministic, lazy, and covering every case API.md names."""

from __future__ import annotations

import re
from collections import Counter
from datetime import timedelta

import pytest

from retention.api.models import END_REASONS, REGIONS, TELEPHONY_TYPES, Call
from retention.sandbox import Dataset, DatasetSpec
from retention.sandbox.content import sensitive_strings
from retention.sandbox.data import NotTerminal, UnknownAgent, UnknownCall

from .conftest import NOW, current

COVERAGE_SPEC = DatasetSpec(seed=1, agents=8, calls=2000, now=NOW)


@pytest.fixture(scope="module")
def calls() -> list[Call]:
    return list(Dataset(COVERAGE_SPEC).iter_all_calls())


def test_same_spec_same_data_and_other_seed_other_data() -> None:
    first = list(Dataset(COVERAGE_SPEC).iter_all_calls())
    again = list(Dataset(DatasetSpec(seed=1, agents=8, calls=2000, now=NOW)).iter_all_calls())
    other = list(Dataset(DatasetSpec(seed=2, agents=8, calls=2000, now=NOW)).iter_all_calls())
    assert first == again
    assert {c.id for c in first}.isdisjoint({c.id for c in other})


def test_calls_total_the_spec_spread_unevenly_with_unique_ids(calls: list[Call]) -> None:
    assert len(calls) == 2000
    assert len({c.id for c in calls}) == 2000
    per_agent = Counter(c.agent_id for c in calls)
    assert len(per_agent) == 8
    assert max(per_agent.values()) > 2 * min(per_agent.values())


def test_each_agent_lists_newest_first() -> None:
    dataset = Dataset(COVERAGE_SPEC)
    for agent in dataset.agents():
        times = [c.start_time for c in dataset.iter_calls(agent.id) if c.start_time]
        assert times == sorted(times, reverse=True)


def test_agents_include_deleted_ones() -> None:
    agents = Dataset(COVERAGE_SPEC).agents()
    deleted = [a for a in agents if a.deleted_at is not None]
    assert 1 <= len(deleted) <= 2
    assert len({a.name for a in agents}) == len(agents)
    assert all(a.created_at is not None and a.created_at <= NOW for a in agents)


def test_every_status_and_timestamp_shape_appears(calls: list[Call]) -> None:
    statuses = {c.status for c in calls}
    assert statuses == {"created", "started", "completed", "failed", "active", "cancelled"}
    shapes = {(c.start_time is None, c.end_time is None) for c in calls if c.terminal}
    assert shapes == {(False, False), (True, False), (False, True), (True, True)}
    stuck = [c for c in calls if c.status in ("created", "started") and c.age_origin is None]
    assert stuck, "calls created and never started"
    months_ago = NOW - timedelta(days=60)
    old_started = [
        c for c in calls if c.status == "started" and c.start_time and c.start_time < months_ago
    ]
    assert old_started, "started calls stuck for months"


def test_every_region_telephony_type_and_end_reason_appears(calls: list[Call]) -> None:
    assert {c.deployment_region for c in calls} == set(REGIONS)
    types = {c.telephony_params.account_type for c in calls if c.telephony_params}
    assert types == set(TELEPHONY_TYPES) | {None}  # None: redacted ones keep no account type
    assert {c.end_reason for c in calls} - {None} == set(END_REASONS)
    assert any(c.telephony_params is None for c in calls)


def test_zdr_and_already_redacted_calls_hold_no_sensitive_data(calls: list[Call]) -> None:
    zdr = [c for c in calls if c.zdr_enabled]
    redacted = [c for c in calls if c.redacted_at is not None]
    assert zdr and redacted
    for call in zdr + redacted:
        assert call.transcript is None and call.summary is None and call.error_message is None
        params = call.telephony_params
        assert params is None or (params.to is None and params.from_ is None)
    for call in redacted:
        assert call.terminal and call.metadata is None
        assert call.age_origin is not None and call.redacted_at is not None
        assert call.age_origin < call.redacted_at <= NOW


def test_metadata_has_policy_keys_with_strings_numbers_and_booleans(calls: list[Call]) -> None:
    values: dict[str, set[type]] = {}
    for call in calls:
        for key, value in (call.metadata or {}).items():
            values.setdefault(key, set()).add(type(value))
    for key in ("customer_id", "env", "tier", "legal_hold"):
        assert key in values
    assert values["legal_hold"] == {bool}
    assert {str, int, float, bool} <= set().union(*values.values())
    assert any(c.metadata is None for c in calls) and any(c.metadata == {} for c in calls)
    assert any((c.metadata or {}).get("legal_hold") is True for c in calls)


def test_sensitive_content_is_fake_and_findable(calls: list[Call]) -> None:
    full = [c for c in calls if c.transcript is not None]
    assert full
    for call in full[:50]:
        to = call.telephony_params.to if call.telephony_params else "+1555"
        assert to is not None and to.startswith("+1555")
        assert call.summary and re.search(r"\+1555\d{7}", call.summary)
    failed = [c for c in calls if c.status == "failed" and c.error_message]
    assert failed


def test_ages_spread_over_about_two_years(calls: list[Call]) -> None:
    origins = [c.age_origin for c in calls if c.age_origin is not None]
    assert max(origins) <= NOW
    assert NOW - min(origins) > timedelta(days=600)
    assert NOW - max(origins) < timedelta(days=1)


def test_a_million_calls_are_lazy() -> None:
    dataset = Dataset(DatasetSpec(seed=5, agents=3, calls=1_000_000, now=NOW))
    agent = dataset.agents()[0]
    count = dataset.call_count(agent.id)
    deep = dataset.call_id(0, count - 1)
    call = dataset.get_call(deep)
    assert call is not None and call.agent_id == agent.id
    page, more = dataset.page(agent.id, limit=100, starting_after=dataset.call_id(0, count - 50))
    assert len(page) == 49 and not more
    assert sum(dataset.call_count(a.id) for a in dataset.agents()) == 1_000_000


def test_ids_round_trip_and_strangers_are_unknown(dataset: Dataset) -> None:
    agent = dataset.agents()[1]
    for call in list(dataset.iter_calls(agent.id))[:20]:
        assert dataset.get_call(call.id) == call
    real = next(dataset.iter_calls(agent.id)).id
    for bogus in (
        "",
        "call_",
        real.upper(),
        real[:-1] + ("0" if real[-1] != "0" else "1"),
        "x" * 25,
    ):
        assert dataset.get_call(bogus) is None
    other = Dataset(DatasetSpec(seed=99, agents=5, calls=400, now=NOW))
    assert other.get_call(real) is None


def test_redact_removes_sensitive_fields_once(dataset: Dataset) -> None:
    target = next(
        c for c in dataset.iter_all_calls() if c.status == "completed" and c.summary is not None
    )
    done = dataset.redact(target.id, NOW)
    assert done.redacted_at == NOW
    assert (done.transcript, done.summary, done.metadata) == (None, None, None)
    assert done.start_time == target.start_time and done.status == "completed"
    assert dataset.get_call(target.id) == done
    assert dataset.redact(target.id, NOW + timedelta(hours=1)).redacted_at == NOW
    assert dataset.redacted_ids() == {target.id}


def test_redact_refuses_unknown_and_non_terminal(dataset: Dataset) -> None:
    running = next(c for c in dataset.iter_all_calls() if not c.terminal)
    with pytest.raises(NotTerminal):
        dataset.redact(running.id, NOW)
    with pytest.raises(UnknownCall):
        dataset.redact("call_nope", NOW)
    assert dataset.redacted_ids() == frozenset()


def test_override_and_removed_agent(dataset: Dataset) -> None:
    target = next(c for c in dataset.iter_all_calls() if c.redacted_at is not None)
    assert dataset.override(target.id, {"redacted_at": None}).redacted_at is None
    assert current(dataset, target.id).redacted_at is None
    agent = dataset.agents()[0]
    assert dataset.remove_agent(agent.id)
    assert agent.id not in {a.id for a in dataset.agents()}
    with pytest.raises(UnknownAgent):
        list(dataset.iter_calls(agent.id))
    assert dataset.get_call(dataset.call_id(0, 0)) is None


def test_spec_validation() -> None:
    with pytest.raises(ValueError, match="agents"):
        DatasetSpec(agents=0, now=NOW)
    with pytest.raises(ValueError, match="timezone"):
        DatasetSpec(now=NOW.replace(tzinfo=None))


def test_sensitive_strings_name_what_must_never_leak(calls: list[Call]) -> None:
    call = next(c for c in calls if c.transcript and c.telephony_params and c.metadata)
    strings = sensitive_strings(call)
    assert call.summary in strings
    assert any(s.startswith("+1555") for s in strings)
    assert all(s not in ("true", "production") for s in strings)
    redacted = next(c for c in calls if c.redacted_at is not None)
    assert sensitive_strings(redacted) == []
