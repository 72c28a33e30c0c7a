"""Invariants of the engine, over random policy sets and calls (hypothesis).

Also a differential check: `decide` (the index and its memos, the engine's tabulated
rules) decides exactly as the engine's rules applied plainly, one policy at a time
(`plain_decision`), and as an independent reading of DESIGN.md written here
(`reference_decision`); many calls go through one policy set, twice, so memoised
answers are checked as well as fresh ones.
"""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from retention.api.models import END_REASONS, Call, TelephonyParams
from retention.policy.engine import Action, Decision, Reason, decide, judge, skip_reason
from retention.policy.load import PolicySet, parse_policies
from retention.policy.match import Listed, MetadataCondition
from retention.policy.model import Kind
from tests.policy.support import NOW

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

AGENT_PATTERNS = ["support-*", "agent_?", "billing", "*", "sales-[ab]*", "agent_1"]
META_VALUES: list[Any] = ["free", "pro", "true", "7", "*", "f*", True, 7, False]
# What the API may send: scalars in several spellings, null, lists and objects.
API_VALUES: list[Any] = ["free", "pro", "true", "TRUE", "false", "7", "7.0", True, False, 7, 7.0]
API_VALUES += [None, [], ["pro"], {"a": 1}]
DURATIONS = ["0d", "1h", "12h", "1d", "7d", "30d", "90d", "1w", "52w"]
BOUNDARY_HOURS = [0, 1, 12, 24, 7 * 24, 30 * 24, 90 * 24, 52 * 7 * 24]  # DURATIONS in hours


# Strategies built once: building them inside every draw costs more than the test.
DELETE_AFTER = st.sampled_from(DURATIONS)
RETAIN_FOR = st.sampled_from([*DURATIONS[1:], "forever"])
AGENT_LISTS = st.lists(st.sampled_from(AGENT_PATTERNS), min_size=1, max_size=3)
REGION_LISTS = st.lists(st.sampled_from(["US", "EU", "APAC"]), min_size=1)
STATUS_LISTS = st.sampled_from([["completed"], ["failed"]])
# Two numbers in E.164, written in policies as digests computed here, not by the code.
NUMBERS = ["+15550001111", "+447700900123"]
DIGESTS = ["sha256:" + hashlib.sha256(n.encode()).hexdigest() for n in NUMBERS]
# How calls may carry them: other spellings of the same numbers, other numbers, junk.
API_NUMBERS = [None, "", "+15550001111", "+1 (555) 000-1111", "tel:+447700900123"]
API_NUMBERS += ["+447700900124", "5550001111", "00447700900123", "+1555000111x"]
PHONE_LISTS = st.lists(st.sampled_from(DIGESTS), min_size=1, max_size=2)
END_REASON_LISTS = st.lists(st.sampled_from(END_REASONS[:4]), min_size=1, max_size=2)
TELEPHONY_LISTS = st.lists(st.sampled_from(["cartesia", "twilio", "sip_trunk"]), min_size=1)
DEPLOYMENT_LISTS = st.lists(st.sampled_from(["dep_a", "dep_*", "depv_a1", "depv_?2"]), min_size=1)
INSTANTS = st.integers(0, 400).map(lambda d: (NOW - timedelta(days=d)).isoformat())
METADATA = st.dictionaries(
    st.sampled_from(["tier", "flag", "num"]),
    st.lists(st.sampled_from(META_VALUES), min_size=1, max_size=2),
    min_size=1,
)

MATCH_STRATEGIES: dict[str, st.SearchStrategy[Any]] = {
    "agents": AGENT_LISTS,
    "regions": REGION_LISTS,
    "statuses": STATUS_LISTS,
    "metadata": METADATA,
    "phone_numbers": PHONE_LISTS,
    "end_reasons": END_REASON_LISTS,
    "telephony": TELEPHONY_LISTS,
    "deployments": DEPLOYMENT_LISTS,
    "started_before": INSTANTS,
    "started_after": INSTANTS,
}


@st.composite
def policy_specs(draw: st.DrawFn, name: str) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": name}
    if draw(st.booleans()):
        spec["delete_after"] = draw(DELETE_AFTER)
    else:
        spec["retain_for"] = draw(RETAIN_FOR)
    # A few conditions each: with many, hardly any call would match, and the rules
    # between matching policies (credit, held beats due) would go untested.
    keys = draw(st.lists(st.sampled_from(list(MATCH_STRATEGIES)), max_size=3, unique=True))
    match: dict[str, Any] = {key: draw(MATCH_STRATEGIES[key]) for key in sorted(keys)}
    empty_match = draw(st.booleans())  # `match: {}` and no `match` both mean every call
    if match or empty_match:
        spec["match"] = match
    return spec


POLICY_SPECS = [policy_specs(f"p{i}") for i in range(6)]


@st.composite
def policy_lists(draw: st.DrawFn) -> list[dict[str, Any]]:
    count = draw(st.integers(1, 6))
    specs: list[dict[str, Any]] = [draw(POLICY_SPECS[i]) for i in range(count)]
    return specs


def compile_specs(*groups: list[dict[str, Any]]) -> PolicySet:
    """Each group is one file (JSON, a subset of YAML, is quick to write)."""
    return parse_policies(
        [(f"f{i}.yaml", json.dumps({"policies": group})) for i, group in enumerate(groups)]
    )


calls = st.builds(
    Call,
    id=st.just("c1"),
    # Weighted so that about half the calls reach the policies; the rest are skipped.
    agent_id=st.sampled_from(["agent_1", "agent_1", "agent_1", "agent_2", "agent_77", ""]),
    agent_name=st.sampled_from([None, "", "support-us", "billing", "sales-a1"]),
    status=st.sampled_from(["completed"] * 4 + ["failed"] * 2 + ["active", "created", "cancelled"]),
    # Whole hours land on every duration's boundary; a microsecond either side of it too.
    start_time=st.one_of(
        st.none(),
        st.builds(
            lambda h, us: NOW - timedelta(hours=h, microseconds=us),
            st.one_of(st.integers(-3, 400 * 24), st.sampled_from(BOUNDARY_HOURS)),
            st.sampled_from([0, 0, 1, -1]),
        ),
    ),
    end_time=st.one_of(st.none(), st.integers(0, 400 * 24).map(lambda h: NOW - timedelta(hours=h))),
    redacted_at=st.sampled_from([None] * 5 + [NOW]),
    zdr_enabled=st.sampled_from([False] * 7 + [True]),
    deployment_region=st.sampled_from([None, "US", "EU", "APAC"]),
    telephony_params=st.one_of(
        st.none(),
        st.builds(
            TelephonyParams,
            account_type=st.sampled_from([None, "cartesia", "twilio", "sip_trunk", "other"]),
            to=st.sampled_from(API_NUMBERS),
            from_=st.sampled_from(API_NUMBERS),
        ),
    ),
    end_reason=st.sampled_from([None, *END_REASONS[:5]]),
    deployment_id=st.sampled_from([None, "", "dep_a", "dep_b"]),
    deployment_version_id=st.sampled_from([None, "depv_a1", "depv_b2", "depv_c3"]),
    metadata=st.one_of(
        st.none(),
        st.dictionaries(
            st.sampled_from(["tier", "flag", "num", "other"]),
            st.sampled_from(API_VALUES),
            max_size=4,
        ),
    ),
)


# The agent a call is listed under: its id and its current name from GET /agents.
listings = st.tuples(
    st.sampled_from(["agent_1", "agent_1", "agent_1", "agent_2"]),
    st.sampled_from([None, "support-us", "billing"]),
)


@st.composite
def listed_calls(draw: st.DrawFn) -> tuple[Call, tuple[str, str | None]]:
    """A call and the agent it was listed under: mostly its own, else another one."""
    call = draw(calls)
    own = call.agent_id or "agent_1"
    agent = draw(st.sampled_from([own, own, own, "agent_2"]))
    return call, (agent, draw(st.sampled_from([None, "support-us", "billing"])))


def reference_decision(
    policy_set: PolicySet, call: Call, listed: tuple[str, str | None]
) -> Decision:
    """The rules of DESIGN.md read literally, one policy at a time."""
    if call.agent_id and call.agent_id != listed[0]:
        return Decision(Action.SKIP, Reason.INCONSISTENT)
    if call.status not in ("completed", "failed"):
        return Decision(Action.SKIP, Reason.NOT_TERMINAL)
    if call.redacted_at is not None:
        return Decision(Action.SKIP, Reason.ALREADY_REDACTED)
    if call.zdr_enabled:
        return Decision(Action.SKIP, Reason.ZDR)
    origin = call.start_time or call.end_time
    if origin is None:
        return Decision(Action.SKIP, Reason.NO_TIMESTAMP)
    held_keys = {
        c.name
        for p in policy_set.policies
        if p.kind == Kind.RETAIN
        for c in p.conditions
        if isinstance(c, MetadataCondition)
    }
    if any(isinstance((call.metadata or {}).get(k), list | dict) for k in held_keys):
        return Decision(Action.SKIP, Reason.UNCLEAR_METADATA)
    age = NOW - origin
    matching = [p for p in policy_set.policies if p.matches(call, Listed(*listed))]
    deletions = [p for p in matching if p.kind == Kind.DELETE]
    if not deletions:
        return Decision(Action.KEEP, Reason.NO_DELETION_RULE)
    due = sorted(
        (p for p in deletions if p.duration is not None and age >= p.duration),
        key=lambda p: (p.duration, p.name),
    )
    if not due:
        first = min(deletions, key=lambda p: (p.duration, p.name))
        return Decision(Action.KEEP, Reason.NOT_YET_DUE, first.name)
    holding = [
        p for p in matching if p.kind == Kind.RETAIN and (p.duration is None or age < p.duration)
    ]
    if holding:
        # Every rule still holding is named: forever ones by name, then longest first.
        forever = sorted(p.name for p in holding if p.duration is None)
        finite = [(p.duration, p.name) for p in holding if p.duration is not None]
        by_span = [name for _, name in sorted(finite, key=lambda f: (-f[0], f[1]))]
        names = forever + by_span
        return Decision(Action.KEEP, Reason.HELD, due[0].name, names[0], tuple(names[1:]))
    return Decision(Action.DELETE, Reason.DUE, due[0].name)


def plain_decision(policy_set: PolicySet, call: Call, listed: tuple[str, str | None]) -> Decision:
    """The engine's own rules, without the index or any memo."""
    skipped = skip_reason(call, Listed(*listed), policy_set.held_keys)
    if skipped is not None:
        return skipped
    matching = [p for p in policy_set.policies if p.matches(call, Listed(*listed))]
    origin = call.start_time or call.end_time
    assert origin is not None
    return judge(matching, NOW - origin)


def matching_mask(policy_set: PolicySet, call: Call, listed: tuple[str, str | None]) -> int:
    return sum(
        1 << i for i, p in enumerate(policy_set.policies) if p.matches(call, Listed(*listed))
    )


@SETTINGS
@given(policy_lists(), st.lists(listed_calls(), min_size=1, max_size=8))
def test_the_index_decides_as_the_rules_read(
    specs: list[dict[str, Any]], listed_calls: list[tuple[Call, tuple[str, str | None]]]
) -> None:
    policy_set = compile_specs(specs)
    for _ in range(2):  # the second pass is answered from the memos the first one filled
        for call, listed in listed_calls:
            matches: dict[int, int] = {}
            decision = decide(policy_set, call, NOW, *listed, matches)
            assert decision == reference_decision(policy_set, call, listed)
            assert decision == plain_decision(policy_set, call, listed)
            assert matches == {matching_mask(policy_set, call, listed): 1}


AGES = st.builds(
    lambda h, us: timedelta(hours=h, microseconds=us),
    st.one_of(st.integers(-3, 400 * 24), st.sampled_from(BOUNDARY_HOURS)),
    st.sampled_from([0, 0, 1, -1]),
)
UNCONDITIONAL = st.lists(
    st.one_of(
        st.builds(lambda d: {"delete_after": d}, DELETE_AFTER),
        st.builds(lambda d: {"retain_for": d}, RETAIN_FOR),
    ),
    min_size=1,
    max_size=6,
)


@SETTINGS
@given(UNCONDITIONAL, st.permutations(range(6)), st.lists(AGES, min_size=1, max_size=8))
def test_between_matching_policies_the_index_decides_as_the_rules_read(
    specs: list[dict[str, Any]], names: list[int], ages: list[timedelta]
) -> None:
    """Policies that all match every call: the credit, due vs held and the holders
    named, at ages on and around every boundary, with names not in file order."""
    policy_set = compile_specs(
        [{"name": f"p{n}", **s} for n, s in zip(names[: len(specs)], specs, strict=True)]
    )
    listed = ("agent_1", None)
    for age in ages * 2:  # the second pass is answered from the memos
        call = Call(id="c1", agent_id="agent_1", status="completed", start_time=NOW - age)
        decision = decide(policy_set, call, NOW, *listed)
        assert decision == reference_decision(policy_set, call, listed)
        assert decision == plain_decision(policy_set, call, listed)


@SETTINGS
@given(policy_lists(), calls, listings)
def test_non_terminal_redacted_and_untimed_calls_are_never_deleted(
    specs: list[dict[str, Any]], call: Call, listed: tuple[str, str | None]
) -> None:
    decision = decide(compile_specs(specs), call, NOW, *listed)
    if (
        (call.agent_id and call.agent_id != listed[0])
        or not call.terminal
        or call.redacted_at is not None
        or call.zdr_enabled
        or (call.start_time is None and call.end_time is None)
    ):
        assert decision.action == Action.SKIP
    if decision.action == Action.DELETE:
        assert call.terminal and call.redacted_at is None and call.age_origin is not None


@SETTINGS
@given(policy_lists(), policy_specs("extra"), calls, listings)
def test_adding_a_retention_policy_never_adds_a_deletion(
    specs: list[dict[str, Any]], extra: dict[str, Any], call: Call, listed: tuple[str, str | None]
) -> None:
    extra.pop("delete_after", None)
    extra.setdefault("retain_for", "forever")
    before = decide(compile_specs(specs), call, NOW, *listed)
    after = decide(compile_specs(specs, [extra]), call, NOW, *listed)
    if before.action != Action.DELETE:
        assert after.action != Action.DELETE


@SETTINGS
@given(policy_lists(), policy_specs("extra"), calls, listings)
def test_adding_a_deletion_policy_never_removes_a_deletion(
    specs: list[dict[str, Any]], extra: dict[str, Any], call: Call, listed: tuple[str, str | None]
) -> None:
    extra.pop("retain_for", None)
    extra.setdefault("delete_after", "0d")
    before = decide(compile_specs(specs), call, NOW, *listed)
    after = decide(compile_specs([extra], specs), call, NOW, *listed)
    if before.action == Action.DELETE:
        assert after.action == Action.DELETE


@SETTINGS
@given(policy_lists(), calls, listings, st.randoms(use_true_random=False), st.integers(1, 3))
def test_the_decision_does_not_depend_on_file_or_policy_order(
    specs: list[dict[str, Any]], call: Call, listed: tuple[str, str | None], rng: Any, files: int
) -> None:
    shuffled = list(specs)
    rng.shuffle(shuffled)
    groups = [shuffled[i::files] for i in range(files)]
    reordered = compile_specs(*[g for g in groups if g])
    # Ties for credit go to the first name, so even the credited policy is the same.
    expected = decide(compile_specs(specs), call, NOW, *listed)
    assert decide(reordered, call, NOW, *listed) == expected
