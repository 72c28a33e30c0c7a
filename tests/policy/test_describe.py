"""Plain words for policies, and the conservative "can never take effect" check."""

from __future__ import annotations

from datetime import timedelta

import pytest

from retention.policy.describe import covers, describe_policy, explain_lines, warnings
from retention.policy.match import Listed
from tests.policy.support import NOW, call, policies


def test_a_policy_in_plain_words() -> None:
    policy_set = policies(
        """
        policies:
          - name: support-90d
            description: Support calls are kept 90 days.
            delete_after: 90d
            match:
              agents: ["support-*", "agent_3fa9"]
              regions: [EU, US]
              statuses: [failed, completed]
              metadata:
                env: production
                tier: [free, trial]
        """
    )
    assert describe_policy(policy_set.policies[0]) == [
        "support-90d (p.yaml:3): delete after 90 days",
        "  matches: the agent is `support-*` or `agent_3fa9` by all its ids or by all its "
        "names (as listed and as the call says); the region is US or "
        "EU; the status is completed or failed; metadata `env` is `production`; metadata `tier` "
        "is `free` or `trial`",
        "  deletes them once 90 days old",
        "  why: Support calls are kept 90 days.",
    ]


# (hold's match, deletion's match, whether the hold surely covers the deletion)
COVER_CASES = [
    ("{}", "{}", True),
    ("{}", "{regions: [EU]}", True),
    ("{regions: [EU, US]}", "{regions: [EU]}", True),
    ("{regions: [EU]}", "{regions: [EU, US]}", False),
    ("{regions: [EU]}", "{}", False),
    ("{regions: [US, EU, APAC]}", "{}", False),  # calls without a region are not held
    ("{agents: '*'}", "{agents: 'support-*'}", True),
    ("{agents: 'support-*'}", "{agents: 'support-eu'}", True),
    ("{agents: 'support-*'}", "{agents: 'support-e?'}", False),  # conservative
    ("{agents: 'support-*'}", "{agents: ['support-eu', billing]}", False),
    ("{metadata: {tier: '*'}}", "{metadata: {tier: free, env: x}}", True),
    ("{metadata: {tier: free}}", "{metadata: {env: x}}", False),
    ("{metadata: {tier: free, env: x}}", "{metadata: {tier: free}}", False),
    ("{statuses: [completed]}", "{statuses: [completed], agents: a}", True),
]


@pytest.mark.parametrize(("hold", "deletion", "expected"), COVER_CASES)
def test_covers_is_conservative(hold: str, deletion: str, expected: bool) -> None:
    policy_set = policies(
        f"policies:\n  - {{name: h, retain_for: forever, match: {hold}}}\n"
        f"  - {{name: d, delete_after: 1d, match: {deletion}}}\n"
    )
    assert covers(policy_set.policies[0], policy_set.policies[1]) is expected


def test_a_limited_hold_is_no_warning() -> None:
    policy_set = policies(
        "policies:\n  - {name: h, retain_for: 365d}\n  - {name: d, delete_after: 30d}\n"
    )
    assert warnings(policy_set) == []


def test_explain_names_every_rule_still_holding_the_call() -> None:
    policy_set = policies(
        """
        policies:
          - {name: all-1d, delete_after: 1d}
          - {name: hold-2w, retain_for: 2w}
          - {name: hold-forever, retain_for: forever, match: {regions: [US]}}
          - {name: hold-1y, retain_for: 52w}
          - {name: hold-eu, retain_for: forever, match: {regions: [EU]}}
        """
    )
    # 100 days old: the two-week hold has run out, the EU hold does not match.
    lines = explain_lines(policy_set, call(timedelta(days=100)), NOW, Listed("agent_1"))
    assert lines[-1] == (
        "decision: KEEP: all-1d is due, but hold-forever still holds the call (and hold-1y)"
    )
    lines = explain_lines(policy_set, call(timedelta(days=10)), NOW, Listed("agent_1"))
    assert lines[-1] == (
        "decision: KEEP: all-1d is due, but hold-forever still holds the call "
        "(and hold-1y and hold-2w)"
    )


def test_explain_shows_the_annotations_of_the_rules_its_decision_names() -> None:
    policy_set = policies(
        """
        policies:
          - {name: erasure, delete_after: 0d, request_id: DSR-9, legal_basis: GDPR Art. 17}
          - {name: other-1d, delete_after: 1d, category: never named here}
          - {name: contract-hold, retain_for: 52w, case: C-42}
          - {name: plain-hold, retain_for: 26w}
        """
    )
    lines = explain_lines(policy_set, call(timedelta(days=10)), NOW, Listed("agent_1"))
    assert lines[-3:] == [
        "decision: KEEP: erasure is due, but contract-hold still holds the call (and plain-hold)",
        "  erasure: legal basis: GDPR Art. 17; request: DSR-9",
        "  contract-hold: case: C-42",
    ]
