"""The rules of DESIGN.md "Policy files" and "Which policy wins", one table row each.

Expected decisions are written by hand from the rules, not taken from the engine.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from retention.policy.engine import Action, Decision, Reason, decide
from retention.policy.match import Listed
from tests.policy.support import LISTED, NOW, call, policies

DAY = timedelta(days=1)
D, K, S = Action.DELETE, Action.KEEP, Action.SKIP

# One catch-all deletion at 90 days, a shorter one for failed calls, a hold.
BASE = """
policies:
  - name: default-90d
    delete_after: 90d
  - name: failed-30d
    delete_after: 30d
    match: {statuses: [failed]}
  - name: legal-hold
    retain_for: forever
    match:
      metadata: {legal_hold: true}
  - name: enterprise-1y
    retain_for: 365d
    match:
      metadata: {tier: enterprise}
"""

BASE_CASES: list[tuple[str, dict[str, Any], Decision]] = [
    # 1. terminal and not redacted; skip reasons in their documented precedence
    ("completed, old", {}, Decision(D, Reason.DUE, "default-90d")),
    ("failed, old", {"status": "failed"}, Decision(D, Reason.DUE, "failed-30d")),
    *[
        (f"{s} is never deleted", {"status": s}, Decision(S, Reason.NOT_TERMINAL))
        for s in (
            *("created", "started", "active", "cancelled", ""),
            # terminal means exactly completed or failed: any other spelling is unknown
            *("Completed", "FAILED", "completed ", " failed", "complete", "Failed"),
        )
    ],
    # the call's own agent_id names another agent than the one listed: never deleted
    ("inconsistent", {"agent_id": "agent_2"}, Decision(S, Reason.INCONSISTENT)),
    (
        "inconsistent beats not terminal",
        {"agent_id": "agent_2", "status": "active"},
        Decision(S, Reason.INCONSISTENT),
    ),
    ("no agent_id of its own", {"agent_id": ""}, Decision(D, Reason.DUE, "default-90d")),
    # a list or an object under a key a retention rule names: never deleted
    *[
        (f"unclear {key}", {"metadata": {key: value}}, Decision(S, Reason.UNCLEAR_METADATA))
        for key in ("legal_hold", "tier")
        for value in ([True], {"on": True}, [], {})
    ],
    (
        "unclear beats nothing else",
        {"metadata": {"legal_hold": [True]}, "redacted_at": NOW},
        Decision(S, Reason.ALREADY_REDACTED),
    ),
    (
        "an unclear key no retention rule names",
        {"metadata": {"other": [1, 2]}},
        Decision(D, Reason.DUE, "default-90d"),
    ),
    (
        "a null value is no value",
        {"metadata": {"legal_hold": None}},
        Decision(D, Reason.DUE, "default-90d"),
    ),
    ("redacted", {"redacted_at": NOW - DAY}, Decision(S, Reason.ALREADY_REDACTED)),
    ("zdr", {"zdr_enabled": True}, Decision(S, Reason.ZDR)),
    ("no timestamps", {"start_time": None}, Decision(S, Reason.NO_TIMESTAMP)),
    (
        "not terminal beats redacted",
        {"status": "active", "redacted_at": NOW},
        Decision(S, Reason.NOT_TERMINAL),
    ),
    (
        "redacted beats zdr",
        {"redacted_at": NOW, "zdr_enabled": True},
        Decision(S, Reason.ALREADY_REDACTED),
    ),
    (
        "zdr beats no timestamp",
        {"zdr_enabled": True, "start_time": None},
        Decision(S, Reason.ZDR),
    ),
    # age: from start_time, else end_time
    (
        "age from end_time when start_time is null",
        {"start_time": None, "end_time": NOW - 95 * DAY},
        Decision(D, Reason.DUE, "default-90d"),
    ),
    (
        "start_time wins over end_time",
        {"start_time": NOW - 10 * DAY, "end_time": NOW - 95 * DAY},
        Decision(K, Reason.NOT_YET_DUE, "default-90d"),
    ),
    # 2. due means age >= duration; the boundary is due
    (
        "age == duration is due",
        {"start_time": NOW - 90 * DAY},
        Decision(D, Reason.DUE, "default-90d"),
    ),
    (
        "a microsecond younger is not due",
        {"start_time": NOW - 90 * DAY + timedelta(microseconds=1)},
        Decision(K, Reason.NOT_YET_DUE, "default-90d"),
    ),
    (
        "a call in the future is never due",
        {"start_time": NOW + DAY},
        Decision(K, Reason.NOT_YET_DUE, "default-90d"),
    ),
    # credit: the due deletion rule with the shortest duration
    (
        "failed and 100 days old: both due, shortest credited",
        {"status": "failed", "start_time": NOW - 100 * DAY},
        Decision(D, Reason.DUE, "failed-30d"),
    ),
    # 3. retention wins while it holds
    (
        "legal hold holds forever",
        {"start_time": NOW - 3000 * DAY, "metadata": {"legal_hold": True}},
        Decision(K, Reason.HELD, "default-90d", "legal-hold"),
    ),
    (
        "legal hold as JSON text",
        {"metadata": {"legal_hold": "true"}},
        Decision(K, Reason.HELD, "default-90d", "legal-hold"),
    ),
    (
        "legal_hold false is not held",
        {"metadata": {"legal_hold": False}},
        Decision(D, Reason.DUE, "default-90d"),
    ),
    (
        "enterprise held at 200 days",
        {"start_time": NOW - 200 * DAY, "metadata": {"tier": "enterprise"}},
        Decision(K, Reason.HELD, "default-90d", "enterprise-1y"),
    ),
    (
        "enterprise hold expired at 365 days",
        {"start_time": NOW - 365 * DAY, "metadata": {"tier": "enterprise"}},
        Decision(D, Reason.DUE, "default-90d"),
    ),
    (
        "two holds: the longest first, then the other",
        {"metadata": {"tier": "enterprise", "legal_hold": True}},
        Decision(K, Reason.HELD, "default-90d", "legal-hold", ("enterprise-1y",)),
    ),
    (
        "two holds, one expired: only the one still holding is named",
        {"start_time": NOW - 400 * DAY, "metadata": {"tier": "enterprise", "legal_hold": True}},
        Decision(K, Reason.HELD, "default-90d", "legal-hold"),
    ),
    (
        "not yet due and held: the reason is not yet due",
        {"start_time": NOW - 10 * DAY, "metadata": {"legal_hold": True}},
        Decision(K, Reason.NOT_YET_DUE, "default-90d"),
    ),
    (
        "a naive timestamp is read as UTC",
        {"start_time": datetime(2025, 12, 1, 12, 0, 1)},
        Decision(K, Reason.NOT_YET_DUE, "default-90d"),
    ),
    (
        "a naive timestamp is read as UTC (due)",
        {"start_time": datetime(2025, 12, 1, 12, 0)},
        Decision(D, Reason.DUE, "default-90d"),
    ),
]


@pytest.mark.parametrize(("case", "fields", "expected"), BASE_CASES, ids=[c[0] for c in BASE_CASES])
def test_which_policy_wins(case: str, fields: dict[str, Any], expected: Decision) -> None:
    assert decide(policies(BASE), call(**fields), NOW, *LISTED) == expected


def _matches(match_yaml: str, **fields: Any) -> bool:
    """Whether a 1-day deletion rule with this `match:` deletes a 100-day-old call."""
    policy_set = policies(
        f"policies:\n  - name: p\n    delete_after: 1d\n    match: {match_yaml}\n"
    )
    # The agent the call is listed under, and its name from GET /agents.
    listed_id = fields.pop("_listed_id", LISTED[0])
    listed_name = fields.pop("_listed_name", LISTED[1])
    decision = decide(policy_set, call(**fields), NOW, listed_id, listed_name)
    assert decision.action in (Action.DELETE, Action.KEEP)
    return decision.action == Action.DELETE


MATCH_CASES: list[tuple[str, dict[str, Any], bool]] = [
    # omitted or empty match: every call
    ("{}", {}, True),
    # metadata compares in one canonical form: booleans in any case, numbers by value
    ("{metadata: {flag: true}}", {"metadata": {"flag": True}}, True),
    ("{metadata: {flag: true}}", {"metadata": {"flag": "true"}}, True),
    ("{metadata: {flag: True}}", {"metadata": {"flag": "true"}}, True),
    ("{metadata: {flag: 'true'}}", {"metadata": {"flag": True}}, True),
    ("{metadata: {flag: true}}", {"metadata": {"flag": "True"}}, True),
    ("{metadata: {flag: 'TRUE'}}", {"metadata": {"flag": True}}, True),
    ("{metadata: {flag: TRUE}}", {"metadata": {"flag": "tRuE"}}, True),
    ("{metadata: {flag: true}}", {"metadata": {"flag": 1}}, False),
    ("{metadata: {flag: true}}", {"metadata": {"flag": "yes"}}, False),
    ("{metadata: {flag: false}}", {"metadata": {"flag": False}}, True),
    ("{metadata: {flag: false}}", {"metadata": {"flag": "FALSE"}}, True),
    ("{metadata: {flag: false}}", {"metadata": {"flag": True}}, False),
    ("{metadata: {num: 7}}", {"metadata": {"num": 7}}, True),
    ("{metadata: {num: 7}}", {"metadata": {"num": "7"}}, True),
    ("{metadata: {num: '7'}}", {"metadata": {"num": 7}}, True),
    ("{metadata: {num: +7}}", {"metadata": {"num": 7}}, True),
    ("{metadata: {num: 7}}", {"metadata": {"num": 7.0}}, True),
    ("{metadata: {num: 7}}", {"metadata": {"num": "7.0"}}, True),
    ("{metadata: {num: '1.0'}}", {"metadata": {"num": 1}}, True),
    ("{metadata: {num: 1e3}}", {"metadata": {"num": 1000}}, True),
    ("{metadata: {num: 7}}", {"metadata": {"num": 7.01}}, False),
    ("{metadata: {num: 7.50}}", {"metadata": {"num": 7.5}}, True),
    ("{metadata: {num: 7.5}}", {"metadata": {"num": "7.5"}}, True),
    ("{metadata: {num: 0}}", {"metadata": {"num": -0.0}}, True),
    ("{metadata: {num: 0}}", {"metadata": {"num": False}}, False),
    # a glob matches the canonical text: `7.*` does not match 7.0, which is `7`
    ("{metadata: {num: '7*'}}", {"metadata": {"num": 71}}, True),
    ("{metadata: {num: '7.*'}}", {"metadata": {"num": 7.0}}, False),
    ("{metadata: {num: '7.*'}}", {"metadata": {"num": 7.5}}, True),
    ("{metadata: {flag: 't*'}}", {"metadata": {"flag": "True"}}, True),
    ("{metadata: {v: 'yes'}}", {"metadata": {"v": "yes"}}, True),
    ("{metadata: {v: 'yes'}}", {"metadata": {"v": True}}, False),
    # a list or an object matches no condition, not even `*`
    ("{metadata: {tier: '*'}}", {"metadata": {"tier": ["pro"]}}, False),
    ("{metadata: {tier: '*'}}", {"metadata": {"tier": {"a": 1}}}, False),
    ("{metadata: {tier: '*'}}", {"metadata": {"tier": []}}, False),
    # metadata: every key must match, any value of a list
    ("{metadata: {tier: [free, trial]}}", {"metadata": {"tier": "trial"}}, True),
    ("{metadata: {tier: [free, trial]}}", {"metadata": {"tier": "pro"}}, False),
    ("{metadata: {tier: free, env: prod}}", {"metadata": {"tier": "free", "env": "prod"}}, True),
    ("{metadata: {tier: free, env: prod}}", {"metadata": {"tier": "free"}}, False),
    # without the key, with null metadata, with a null value: no match, even for `*`
    ("{metadata: {tier: '*'}}", {"metadata": {"env": "prod"}}, False),
    ("{metadata: {tier: '*'}}", {"metadata": None}, False),
    ("{metadata: {tier: '*'}}", {"metadata": {}}, False),
    ("{metadata: {tier: '*'}}", {"metadata": {"tier": None}}, False),
    ("{metadata: {tier: '*'}}", {"metadata": {"tier": ""}}, True),
    ("{metadata: {}}", {"metadata": None}, True),
    # globs: *, ?, [...], [!...]; case-sensitive; whole text (the call's agent is
    # agent_1, named support-us both as listed and by the call)
    ("{agents: 'support-*'}", {}, True),
    ("{agents: 'support'}", {}, False),
    ("{agents: 'SUPPORT-*'}", {}, False),
    ("{agents: 'support-u?'}", {}, True),
    ("{agents: 'support-?'}", {}, False),
    ("{agents: 'support-[uv]s'}", {}, True),
    ("{agents: 'support-[!u]s'}", {}, False),
    ("{agents: 'support-[a-z]s'}", {}, True),
    ("{agents: '*'}", {}, True),
    # a deletion rule matches when every id present matches, or every name present does
    ("{agents: agent_1}", {}, True),
    ("{agents: agent_1}", {"agent_name": "billing"}, True),  # the id is stable
    ("{agents: agent_1}", {"agent_id": ""}, True),
    ("{agents: 'agent_*'}", {"agent_name": None, "_listed_name": None}, True),
    ("{agents: 'support-*'}", {"agent_name": None, "_listed_name": None}, False),
    ("{agents: 'support-*'}", {"agent_name": "", "_listed_name": ""}, False),
    ("{agents: 'support-*'}", {"agent_name": None}, True),
    ("{agents: 'support-*'}", {"_listed_name": None}, True),
    ("{agents: support-us}", {"agent_name": "billing"}, False),  # renamed: names disagree
    ("{agents: support-us}", {"_listed_name": "billing"}, False),
    ("{agents: support-us}", {"agent_name": None, "_listed_name": "billing"}, False),
    ("{agents: [support-us, billing]}", {"agent_name": "billing"}, True),
    ("{agents: ['agent_*', 'support-*']}", {"agent_name": "support-eu"}, True),
    # regions and statuses: any of the listed values
    ("{regions: [US, EU]}", {}, True),
    ("{regions: EU}", {}, False),
    ("{regions: [US, EU, APAC]}", {"deployment_region": None}, False),
    ("{regions: APAC}", {"deployment_region": "APAC"}, True),
    # regions in any letter case, in the policy and from the API
    ("{regions: [us]}", {}, True),
    ("{regions: [Eu]}", {"deployment_region": "eU"}, True),
    ("{regions: [EU]}", {"deployment_region": "eu"}, True),
    ("{regions: [EU]}", {"deployment_region": "us"}, False),
    ("{regions: [EU]}", {"deployment_region": "EU "}, False),
    ("{statuses: completed}", {}, True),
    ("{statuses: [failed]}", {}, False),
    ("{statuses: [failed]}", {"status": "failed"}, True),
    # every listed condition must hold
    ("{agents: 'support-*', regions: [EU]}", {}, False),
    ("{agents: [agent_1, 'support-*'], regions: [US], statuses: [completed]}", {}, True),
]


@pytest.mark.parametrize(
    ("match", "fields", "expected"), MATCH_CASES, ids=[f"{c[0]}-{c[1]}" for c in MATCH_CASES]
)
def test_match_conditions(match: str, fields: dict[str, Any], expected: bool) -> None:
    assert _matches(match, **fields) is expected


def test_omitted_match_matches_every_call() -> None:
    policy_set = policies("policies:\n  - {name: all, delete_after: 1d}\n")
    assert decide(policy_set, call(metadata=None, deployment_region=None), NOW, *LISTED).action == D


def test_no_matching_deletion_rule_keeps_the_call() -> None:
    policy_set = policies("policies:\n  - {name: eu, delete_after: 1d, match: {regions: EU}}\n")
    assert decide(policy_set, call(), NOW, *LISTED) == Decision(K, Reason.NO_DELETION_RULE)


def test_credit_ties_go_to_the_first_name_whatever_the_order() -> None:
    text = """
    policies:
      - {name: zeta, delete_after: 30d}
      - {name: alpha, delete_after: 4w, match: {regions: US}}
      - {name: beta, delete_after: 30d, match: {regions: US}}
      - {name: gamma, delete_after: 720h}
    """
    # 4w = 28 days is the shortest; without it, beta, gamma and zeta tie at 30 days.
    assert decide(policies(text), call(), NOW, *LISTED).credited_policy == "alpha"
    without_alpha = text.replace("- {name: alpha, delete_after: 4w, match: {regions: US}}", "")
    assert decide(policies(without_alpha), call(), NOW, *LISTED).credited_policy == "beta"


def test_zero_duration_deletes_at_once_but_not_in_the_future() -> None:
    sweep = policies("policies:\n  - {name: erase, delete_after: 0d, match: {metadata: {c: x}}}\n")
    assert decide(sweep, call(age=timedelta(0), metadata={"c": "x"}), NOW, *LISTED).action == D
    future = call(age=-timedelta(seconds=1), metadata={"c": "x"})
    assert decide(sweep, future, NOW, *LISTED) == Decision(K, Reason.NOT_YET_DUE, "erase")


def test_retention_rules_alone_never_delete() -> None:
    holds = policies("policies:\n  - {name: h, retain_for: 1h}\n")
    assert decide(holds, call(), NOW, *LISTED) == Decision(K, Reason.NO_DELETION_RULE)


def test_memo_limits_do_not_change_decisions() -> None:
    policy_set = policies(
        "policies:\n  - {name: c, delete_after: 1d, match: {metadata: {customer_id: 'cus_1*'}}}\n"
    )
    for i in range(20_000):  # more distinct values than the memo holds
        expected = D if str(i).startswith("1") else K
        got = decide(policy_set, call(metadata={"customer_id": f"cus_{i}"}), NOW, *LISTED).action
        assert got == expected


def test_an_empty_agent_name_falls_back_to_the_listed_name_as_explain_does() -> None:
    # A hold by agent name must hold when the API sends `agent_name: ""` for the call.
    text = """
    policies:
      - {name: all-1d, delete_after: 1d}
      - {name: support-hold, retain_for: forever, match: {agents: "support-*"}}
    """
    policy_set = policies(text)
    nameless = call(agent_name="")
    assert decide(policy_set, nameless, NOW, "agent_1", "support-bot") == Decision(
        K, Reason.HELD, "all-1d", "support-hold"
    )
    assert policy_set.by_name("support-hold").matches(nameless, Listed("agent_1", "support-bot"))
