"""The conditions of issue 15, in hand-written tables: phone numbers (as digests),
end reasons, telephony, deployments, start instants, value files and annotations.

Expected digests are computed here with hashlib from the E.164 text written out by
hand, not by the code under test.
"""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from retention.api.models import TelephonyParams
from retention.cli import main
from retention.policy.engine import Action, Reason, decide
from retention.policy.load import load_policies
from retention.policy.phones import normalise
from tests.policy.support import LISTED, NOW, call, policies, problems


def sha(e164: str) -> str:
    return "sha256:" + hashlib.sha256(e164.encode("ascii")).hexdigest()


ALICE = "+15550001111"
BOB = "+447700900123"


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("+15550001111", ALICE),
        ("+1 (555) 000-1111", ALICE),
        (" +1.555.000.1111 ", ALICE),
        ("tel:+15550001111", ALICE),
        ("TEL:+44 7700 900123", BOB),
        ("+2901234", "+2901234"),  # 7 digits: the shortest
        ("+123456789012345", "+123456789012345"),  # 15 digits: the longest
        ("+1234567890123456", None),  # 16 digits
        ("+290123", None),  # 6 digits
        ("5550001111", None),  # national: country unknown
        ("(555) 000-1111", None),
        ("0044 7700 900123", None),  # the 00 prefix is not guessed at
        ("+0447700900123", None),  # no country code starts with 0
        ("+1-800-FLOWERS", None),
        ("+15550001111;ext=12", None),
        ("+15550001111 x12", None),
        ("sip:+15550001111@example.com", None),
        (
            "+" + "\u0661\u0665\u0665\u0665\u0660\u0660\u0660\u0661\u0661\u0661\u0661",
            None,
        ),  # Arabic-Indic
        ("", None),
    ],
)
def test_normalisation_is_strict_e164(written: str, expected: str | None) -> None:
    assert normalise(written) == expected


def phone_policy(*digests: str, kind: str = "delete_after: 0d") -> str:
    listed = ", ".join(f'"{d}"' for d in digests)
    return f"policies:\n  - name: erase\n    {kind}\n    match: {{phone_numbers: [{listed}]}}\n"


def telephony(to: str | None, from_: str | None, account: str | None = "twilio") -> Any:
    return TelephonyParams(account_type=account, to=to, from_=from_)


@pytest.mark.parametrize(
    ("params", "deleted"),
    [
        (telephony(ALICE, "+15559990000"), True),  # to
        (telephony("+15559990000", "+1 555 000 1111"), True),  # from, spelt otherwise
        (telephony("+15559990000", "+15559990001"), False),  # neither
        (telephony("5550001111", None), False),  # national: never a guess
        (telephony(None, None), False),  # numbers removed
        (None, False),  # no telephony data at all
    ],
)
def test_phone_numbers_match_to_or_from(params: Any, deleted: bool) -> None:
    policy_set = policies(phone_policy(sha(ALICE)))
    decision = decide(policy_set, call(telephony_params=params), NOW, *LISTED)
    assert (decision.action == Action.DELETE) is deleted
    assert policy_set.policies[0].matches(call(telephony_params=params), _listed()) is deleted


def _listed() -> Any:
    from retention.policy.match import Listed

    return Listed(*LISTED)


def test_a_plain_number_is_refused_with_the_hint_and_never_repeated() -> None:
    found = problems(phone_policy("+1 555 000 1111", "not-a-digest", sha(ALICE)))
    assert len(found) == 2
    assert found[0].startswith("p.yaml:4: policy 'erase': match.phone_numbers[0]: a plain phone")
    assert "retention hash-phone NUMBER" in found[0]
    assert "not a phone number's digest" in found[1]
    assert all("555" not in line and "not-a-digest" not in line for line in found)


def test_explain_and_describe_name_no_number() -> None:
    from retention.policy.describe import describe_policy, explain_lines

    policy_set = policies(phone_policy(sha(ALICE)))
    the_call = call(telephony_params=telephony("+15559990000", "+15559990001"))
    text = "\n".join(
        describe_policy(policy_set.policies[0])
        + explain_lines(policy_set, the_call, NOW, _listed())
    )
    assert "555" not in text
    assert "hashed phone number" in text
    assert "its `to` and `from` number is not a listed one" in text


@pytest.mark.parametrize(
    ("match", "fields", "matched"),
    [
        ("end_reasons: [dial_busy, error]", {"end_reason": "dial_busy"}, True),
        ("end_reasons: [dial_busy, error]", {"end_reason": "agent_hangup"}, False),
        ("end_reasons: [dial_busy]", {"end_reason": None}, False),
        ("telephony: [sip_trunk]", {"telephony_params": telephony(None, None, "sip_trunk")}, True),
        ("telephony: [sip_trunk]", {"telephony_params": telephony(None, None, "twilio")}, False),
        ("telephony: [cartesia]", {"telephony_params": None}, False),
        ("deployments: [dep_a*]", {"deployment_id": "dep_ab", "deployment_version_id": "v"}, True),
        (
            "deployments: [depv_2]",
            {"deployment_id": "dep_a", "deployment_version_id": "depv_2"},
            True,
        ),
        ("deployments: [dep_a]", {"deployment_id": "dep_ab"}, False),
        ("deployments: ['*']", {}, False),  # names no deployment
        ("started_before: 2026-02-01T00:00:00Z", {"start_time": NOW - timedelta(days=40)}, True),
        # the boundary: before is strict, after is inclusive ([after, before))
        (
            "started_before: 2026-02-01T00:00:00Z",
            {"start_time": datetime(2026, 2, 1, tzinfo=UTC)},
            False,
        ),
        (
            "started_after: 2026-02-01T00:00:00Z",
            {"start_time": datetime(2026, 2, 1, tzinfo=UTC)},
            True,
        ),
        (
            "started_after: '2026-02-01T01:00:00+01:00'",
            {"start_time": datetime(2026, 2, 1, tzinfo=UTC)},
            True,
        ),
        # no start_time: the end_time, as for the call's age
        ("started_after: 2026-02-20T00:00:00Z", {"start_time": None, "end_time": NOW}, True),
    ],
)
def test_new_conditions(match: str, fields: dict[str, Any], matched: bool) -> None:
    policy_set = policies(f"policies:\n  - name: p\n    delete_after: 0d\n    match: {{{match}}}\n")
    the_call = call(**fields)
    decision = decide(policy_set, the_call, NOW, *LISTED)
    assert (decision.reason == Reason.DUE) is matched


@pytest.mark.parametrize(
    ("match", "expected"),
    [
        (
            "end_reasons: [agent-hangup]",
            "match.end_reasons: unknown value `agent-hangup`; the documented ones are "
            "agent_hangup, client_hangup, api_cancelled, max_duration, inactivity, "
            "client_disconnected, dial_busy, dial_failed, dial_no_answer, error "
            "(did you mean `agent_hangup`?)",
        ),
        (
            "telephony: [Twilio]",
            "match.telephony: unknown value `Twilio`; the documented ones are cartesia, twilio, "
            "sip_trunk (did you mean `twilio`?)",
        ),
        (
            "started_before: 2026-01-01",
            "match.started_before: `2026-01-01` is not an RFC 3339 instant with its offset, "
            "e.g. 2026-01-01T00:00:00Z (a date alone is ambiguous: give the time and its offset)",
        ),
        (
            "started_after: 2026-01-01T00:00:00",
            "match.started_after: `2026-01-01T00:00:00` is not an RFC 3339 instant with its "
            "offset, e.g. 2026-01-01T00:00:00Z",
        ),
        (
            "started_after: 2026-02-30T00:00:00Z",
            "match.started_after: `2026-02-30T00:00:00Z` is not a real instant (check the date "
            "and time)",
        ),
    ],
)
def test_new_conditions_refuse_mistakes(match: str, expected: str) -> None:
    text = f"policies:\n  - name: p\n    delete_after: 0d\n    match: {{{match}}}\n"
    assert problems(text) == [f"p.yaml:4: policy 'p': {expected}"]


# -- value files ----------------------------------------------------------


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_a_value_file_is_read_next_to_the_policy_and_recorded(tmp_path: Path) -> None:
    values = write(tmp_path / "lists" / "held.txt", "# customers on hold\n\ncus_1\n  cus_2  \n")
    policy_file = write(
        tmp_path / "p.yaml",
        "policies:\n  - name: hold\n    retain_for: forever\n"
        "    match: {metadata: {customer_id: {file: lists/held.txt}}}\n"
        "  - name: wipe\n    delete_after: 0d\n",
    )
    policy_set = load_policies([policy_file])
    digest = hashlib.sha256(values.read_bytes()).hexdigest()
    assert [(s.path, s.sha256, s.values) for s in policy_set.sources][1] == (
        str(values),
        digest,
        2,
    )
    for customer, action in [
        ("cus_1", Action.KEEP),
        ("cus_2", Action.KEEP),
        ("cus_3", Action.DELETE),
    ]:
        the_call = call(metadata={"customer_id": customer})
        assert decide(policy_set, the_call, NOW, *LISTED).action == action
    # `#` only starts a comment at the start of a line
    assert decide(policy_set, call(metadata={"customer_id": "#"}), NOW, *LISTED).action == (
        Action.DELETE
    )


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "p.yaml:4: policy 'p': match.agents.file: value file {dir}/v.txt: no such file"),
        (
            "# nothing\n\n",
            "p.yaml:4: policy 'p': match.agents.file: value file {dir}/v.txt: "
            "holds no values (only blank lines or # comments), which would match no call",
        ),
        (b"ok\n\xff\n", "{dir}/v.txt:2: policy 'p': match.agents.file: not UTF-8 text"),
        (
            "US\nEUR\n",
            "{dir}/v.txt:2: policy 'p': match.regions[1]: unknown region `EUR`; "
            "regions are US, EU and APAC (did you mean `EU`?)",
        ),
    ],
)
def test_an_unusable_value_file_is_a_problem_never_an_empty_list(
    tmp_path: Path, content: str | bytes | None, expected: str
) -> None:
    if isinstance(content, bytes):
        (tmp_path / "v.txt").write_bytes(content)
    elif content is not None:
        (tmp_path / "v.txt").write_text(content)
    key = "regions" if "region" in expected else "agents"
    policy_file = write(
        tmp_path / "p.yaml",
        f"policies:\n  - name: p\n    delete_after: 0d\n    match: {{{key}: {{file: v.txt}}}}\n",
    )
    from retention.policy.load import PolicyError

    with pytest.raises(PolicyError) as caught:
        load_policies([policy_file])
    lines = [str(p).replace(str(tmp_path / "p.yaml"), "p.yaml") for p in caught.value.problems]
    assert lines == [expected.format(dir=tmp_path)]


def test_validate_shows_the_value_file_and_exits_2_when_it_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path / "numbers.txt", f"{sha(ALICE)}\n{sha(BOB)}\n")
    policy_file = write(
        tmp_path / "p.yaml",
        "policies:\n  - name: erase\n    delete_after: 0d\n    request_id: DSR-7\n"
        "    legal_basis: GDPR Art. 17\n    match: {phone_numbers: {file: numbers.txt}}\n",
    )
    with pytest.raises(SystemExit) as code:
        main(["validate", str(policy_file)])
    out = capsys.readouterr().out
    assert code.value.code == 0
    digest = hashlib.sha256((tmp_path / "numbers.txt").read_bytes()).hexdigest()
    assert f"{tmp_path / 'numbers.txt'}  sha256:{digest[:16]}  (value list: 2 values)" in out
    assert "legal basis: GDPR Art. 17" in out and "request: DSR-7" in out
    assert "from 1 file and 1 value list" in out
    (tmp_path / "numbers.txt").unlink()
    with pytest.raises(SystemExit) as code:
        main(["validate", str(policy_file)])
    assert code.value.code == 2
    assert "numbers.txt: no such file" in capsys.readouterr().err


def test_a_hundred_thousand_values_load_in_under_a_second_and_match_at_once(
    tmp_path: Path,
) -> None:
    numbers = [f"+1555{i:07d}" for i in range(100_000)]
    write(tmp_path / "n.txt", "\n".join(sha(n) for n in numbers) + "\n")
    write(tmp_path / "c.txt", "\n".join(f"cus_{i}" for i in range(100_000)) + "\n")
    policy_file = write(
        tmp_path / "p.yaml",
        "policies:\n  - name: erase\n    delete_after: 0d\n"
        "    match: {phone_numbers: {file: n.txt}}\n"
        "  - name: hold\n    retain_for: forever\n"
        "    match: {metadata: {customer_id: {file: c.txt}}}\n",
    )
    started = time.process_time()
    policy_set = load_policies([policy_file])
    assert time.process_time() - started < 1.0
    hold = policy_set.by_name("hold").conditions[0]
    assert len(hold.globs.exact) == 100_000 and hold.globs.match is None  # type: ignore[attr-defined]
    the_call = call(telephony_params=telephony(numbers[-1], None), metadata={"customer_id": "x"})
    started = time.process_time()
    for _ in range(1000):
        decision = decide(policy_set, the_call, NOW, *LISTED)
    assert decision.action == Action.DELETE
    assert time.process_time() - started < 0.5  # ~20 us each; a scan of 100k would be ~10 ms


# -- annotations ----------------------------------------------------------


def test_annotations_are_shown_and_misplaced_ones_refused() -> None:
    from retention.policy.describe import describe_policy

    policy_set = policies(
        "policies:\n  - name: hold\n    retain_for: 52w\n    case: LIT-2026-04\n"
        "    category: call recordings\n    legal_basis: Art. 17(3)(e)\n"
    )
    assert describe_policy(policy_set.policies[0])[-3:] == [
        "  legal basis: Art. 17(3)(e)",
        "  category: call recordings",
        "  case: LIT-2026-04",
    ]
    assert problems("policies:\n  - name: a\n    retain_for: 1d\n    request_id: DSR-1\n") == [
        "p.yaml:4: policy 'a': request_id: names a sweep's request: it belongs to a deletion rule"
    ]
    assert problems("policies:\n  - name: a\n    delete_after: 1d\n    case: C-1\n") == [
        "p.yaml:4: policy 'a': case: names a hold's case: it belongs to a retention rule"
    ]


def test_validate_warns_only_when_a_hold_may_overlap_a_sweep() -> None:
    from retention.policy.describe import warnings

    policy_set = policies(
        "policies:\n"
        "  - name: erase\n    delete_after: 0d\n    match: {regions: [EU], end_reasons: [error]}\n"
        "  - name: us-hold\n    retain_for: 52w\n    match: {regions: [US]}\n"
        "  - name: dial-hold\n    retain_for: 52w\n    match: {end_reasons: [dial_busy]}\n"
        "  - name: contract\n    retain_for: 52w\n    case: C-9\n"
        "    match: {metadata: {customer_id: cus_1}}\n"
        "  - name: later\n    retain_for: 1d\n    match: {started_after: 2026-01-01T00:00:00Z}\n"
    )
    assert [w.split(" (p.yaml")[0] for w in warnings(policy_set)] == [
        "a 52-week retention rule, contract (case: C-9), may override part of erase",
        "a 1-day retention rule, later, may override part of erase",
    ]
