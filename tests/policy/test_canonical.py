"""One canonical form for metadata values, shared by deletion and retention rules
(hypothesis over spellings); refused YAML 1.1 words; lists and objects; exact statuses.

Expected answers are computed here from the values themselves (Python's Decimal for
numbers, `str.lower` for booleans), never from the code under test.
"""

from __future__ import annotations

import json
import math
from datetime import timedelta
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from retention.api.models import Call
from retention.policy.canonical import canonical_text, text_form
from retention.policy.engine import Action, Decision, Reason, decide
from tests.policy.support import LISTED, NOW, call, policies, problems

FAST = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _case_variants(word: str) -> st.SearchStrategy[str]:
    """`word` in any mix of upper and lower case."""
    return st.lists(st.booleans(), min_size=len(word), max_size=len(word)).map(
        lambda ups: "".join(c.upper() if up else c.lower() for c, up in zip(word, ups, strict=True))
    )


BOOL_SPELLINGS = st.sampled_from(["true", "false"]).flatmap(
    lambda w: st.tuples(st.just(w == "true"), _case_variants(w))
)


def _deletes(match_yaml: str, metadata: dict[str, Any]) -> bool:
    """Whether a 1-day deletion rule with this `match:` deletes a 100-day-old call."""
    policy_set = policies(
        f"policies:\n  - name: p\n    delete_after: 1d\n    match: {match_yaml}\n"
    )
    decision = decide(policy_set, call(metadata=metadata), NOW, *LISTED)
    return decision.action == Action.DELETE


def _holds(match_yaml: str, metadata: dict[str, Any]) -> bool:
    """Whether a forever hold with this `match:` keeps a call a 1-day rule would delete."""
    policy_set = policies(
        "policies:\n  - {name: d, delete_after: 1d}\n"
        f"  - name: h\n    retain_for: forever\n    match: {match_yaml}\n"
    )
    decision = decide(policy_set, call(metadata=metadata), NOW, *LISTED)
    assert decision.action in (Action.DELETE, Action.KEEP)
    return decision.action == Action.KEEP


@FAST
@given(policy=BOOL_SPELLINGS, api=BOOL_SPELLINGS, quoted=st.booleans(), as_json=st.booleans())
def test_booleans_match_in_any_letter_case(
    policy: tuple[bool, str], api: tuple[bool, str], quoted: bool, as_json: bool
) -> None:
    value = f'"{policy[1]}"' if quoted else policy[1]
    sent: Any = api[0] if as_json else api[1]
    expected = policy[0] == api[0]
    match = f"{{metadata: {{flag: {value}}}}}"
    assert _deletes(match, {"flag": sent}) is expected
    assert _holds(match, {"flag": sent}) is expected


def _numerals(value: Decimal) -> st.SearchStrategy[str]:
    """Decimal numerals that all stand for `value`: fixed, scientific, padded, signed."""
    fixed = format(value, "f")
    mantissa, exponent = format(value, "e").split("e")
    padded = mantissa + ("000" if "." in mantissa else ".000")
    spellings = [fixed, f"{mantissa}e{exponent}", f"{padded}E{exponent}"]
    spellings.append(fixed + ("00" if "." in fixed else ".00"))
    if not fixed.startswith("-"):
        spellings.append("+" + fixed)
    return st.sampled_from(spellings)


NUMBERS = st.decimals(allow_nan=False, allow_infinity=False, places=None).filter(
    lambda d: d == 0 or -30 < d.adjusted() < 30
)


@FAST
@given(value=NUMBERS, data=st.data())
def test_numbers_match_by_value_in_any_spelling(value: Decimal, data: st.DataObject) -> None:
    spellings = _numerals(value)
    policy = data.draw(spellings)
    api = data.draw(spellings)
    value_yaml = f'"{policy}"' if data.draw(st.booleans()) else policy
    assert Decimal(policy) == Decimal(api) == value  # the spellings really are equal
    match = f"{{metadata: {{num: {value_yaml}}}}}"
    assert _deletes(match, {"num": api})
    assert _holds(match, {"num": api})
    # A JSON number of the same value, as the API would send it (when a float holds it).
    as_json = msgspec.json.decode(api.lstrip("+").encode())
    if Decimal(repr(as_json)) == value:
        assert _deletes(match, {"num": as_json})


@FAST
@given(a=NUMBERS, b=NUMBERS)
def test_different_numbers_never_match(a: Decimal, b: Decimal) -> None:
    assume(a != b)
    assert not _deletes(f"{{metadata: {{num: '{a}'}}}}", {"num": str(b)})


@FAST
@given(st.one_of(st.integers(), st.floats(allow_nan=False, allow_infinity=False)))
def test_json_numbers_and_their_text_compare_alike(number: float) -> None:
    # The API may send 1, 1.0 or "1": each is its value (a float's is its shortest repr).
    text = text_form(number)
    assert text == canonical_text(repr(number)) == text_form(repr(number))
    assert text is not None and Decimal(text) == Decimal(repr(number))
    if isinstance(number, float) and number.is_integer() and abs(number) < 2**53:
        assert text == str(int(number)) == text_form(int(number))


@FAST
@given(st.text(max_size=30))
def test_the_canonical_text_is_idempotent(text: str) -> None:
    once = canonical_text(text)
    assert canonical_text(once) == once


def test_non_finite_and_huge_numbers_are_safe() -> None:
    assert text_form(math.inf) == "inf" and text_form(math.nan) == "nan"
    assert not _deletes("{metadata: {num: '1'}}", {"num": math.inf})
    assert text_form(10**50) == canonical_text("1e50") == "1e+50"
    huge = "9" * 5000
    assert canonical_text(huge) == huge  # too long to compare by value: as written
    assert _deletes(f"{{metadata: {{num: '{huge}'}}}}", {"num": huge})


@FAST
@given(policy=st.sampled_from(["US", "EU", "APAC"]).flatmap(_case_variants), data=st.data())
def test_regions_match_in_any_letter_case(policy: str, data: st.DataObject) -> None:
    region = policy.upper()
    api = data.draw(_case_variants(data.draw(st.sampled_from(["US", "EU", "APAC"]))))
    policy_set = policies(
        f"policies:\n  - {{name: r, delete_after: 1d, match: {{regions: [{policy}]}}}}\n"
    )
    decision = decide(policy_set, call(deployment_region=api), NOW, *LISTED)
    assert (decision.action == Action.DELETE) is (api.upper() == region)


@pytest.mark.parametrize("word", ["yes", "No", "ON", "off", "y", "N", "YES", "oFF"])
@pytest.mark.parametrize(
    "where",
    [
        "{{name: a, delete_after: 1d, match: {{metadata: {{legal_hold: {w}}}}}}}",
        "{{name: a, delete_after: 1d, match: {{metadata: {{legal_hold: [true, {w}]}}}}}}",
        "{{name: a, delete_after: 1d, match: {{metadata: {{{w}: x}}}}}}",
        "{{name: a, delete_after: 1d, match: {{agents: {w}}}}}",
        "{{name: {w}, delete_after: 1d}}",
        "{{name: a, delete_after: 1d, description: {w}}}",
    ],
)
def test_yaml_1_1_boolean_words_are_refused_with_a_suggestion(word: str, where: str) -> None:
    found = problems("policies:\n  - " + where.format(w=word) + "\n")
    boolean = "true" if word.lower() in ("yes", "on", "y") else "false"
    assert len(found) == 1
    assert f"`{word}` unquoted is a boolean in YAML 1.1" in found[0]
    assert f'write `{boolean}` for the boolean, or `"{word}"` in quotes' in found[0]


def test_quoted_yaml_1_1_words_are_text() -> None:
    assert _holds("{metadata: {legal_hold: 'yes'}}", {"legal_hold": "yes"})
    assert not _holds("{metadata: {legal_hold: 'yes'}}", {"legal_hold": True})
    assert _holds("{metadata: {legal_hold: true}}", {"legal_hold": True})


@pytest.mark.parametrize("number", ["0x1F", "017", "1_000", "1:30", ".inf", "-.Inf", ".NaN"])
def test_numbers_in_other_yaml_1_1_notations_are_refused(number: str) -> None:
    found = problems(
        f"policies:\n  - {{name: a, delete_after: 1d, match: {{metadata: {{num: {number}}}}}}}\n"
    )
    assert len(found) == 1 and f'`"{number}"` in quotes for the text' in found[0]


# -- lists and objects


UNCLEAR = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=6,
).filter(lambda v: isinstance(v, list | dict))
PATTERNS = st.sampled_from(["'*'", "true", "'[]'", "'{}'", "'?*'", "x", "1"])


@FAST
@given(value=UNCLEAR, pattern=PATTERNS)
def test_a_list_or_an_object_matches_no_condition(value: Any, pattern: str) -> None:
    match = f"{{metadata: {{k: {pattern}}}}}"
    assert not _deletes(match, {"k": value})
    # Held by a retention rule naming the key: skipped as unclear, never deleted.
    policy_set = policies(
        "policies:\n  - {name: d, delete_after: 1d}\n"
        f"  - name: h\n    retain_for: 1h\n    match: {match}\n"
    )
    decision = decide(policy_set, call(metadata={"k": value}), NOW, *LISTED)
    assert decision == Decision(Action.SKIP, Reason.UNCLEAR_METADATA)


@FAST
@given(value=UNCLEAR)
def test_any_json_metadata_value_decodes(value: Any) -> None:
    body = json.dumps({"id": "c", "metadata": {"k": value, "n": None}}).encode()
    decoded = msgspec.json.decode(body, type=Call)
    assert decoded.metadata == {"k": value, "n": None}


def test_a_null_value_is_no_value() -> None:
    assert not _deletes("{metadata: {k: '*'}}", {"k": None})
    assert not _holds("{metadata: {k: '*'}}", {"k": None})


# -- terminal means exactly completed or failed

STATUSES = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["completed", "failed"]).flatmap(
        lambda s: st.one_of(
            _case_variants(s),
            st.tuples(
                st.sampled_from(["", " ", "\t", "\n", "\u00a0"]), st.sampled_from(["", " "])
            ).map(lambda pad: pad[0] + s + pad[1]),
        )
    ),
)


@FAST
@given(status=STATUSES)
def test_only_exactly_completed_or_failed_is_ever_deleted(status: str) -> None:
    policy_set = policies("policies:\n  - {name: all, delete_after: 0d}\n")
    decision = decide(policy_set, call(status=status), NOW, *LISTED)
    if status in ("completed", "failed"):
        assert decision.action == Action.DELETE
    else:
        assert decision == Decision(Action.SKIP, Reason.NOT_TERMINAL)


@pytest.mark.parametrize(
    ("written", "suggestion"), [("Completed", "completed"), ("FAILED", "failed")]
)
def test_a_status_in_another_case_is_an_error_with_a_suggestion(
    written: str, suggestion: str
) -> None:
    found = problems(
        f"policies:\n  - {{name: a, delete_after: 1d, match: {{statuses: [{written}]}}}}\n"
    )
    assert found == [
        f"p.yaml:2: policy 'a': match.statuses: unknown status `{written}`; statuses are "
        f"completed and failed (did you mean `{suggestion}`?)"
    ]


def test_a_zero_duration_rule_is_not_confused_by_age() -> None:
    # Guard for the helpers above: the call is 100 days old, so age never decides.
    assert call().start_time == NOW - timedelta(days=100)
