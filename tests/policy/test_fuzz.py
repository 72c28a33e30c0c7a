"""Whatever the text, the loader either compiles it or raises PolicyError: never a crash."""

from __future__ import annotations

import json
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from retention.policy.load import PolicyError, parse_policies

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

KEYS = st.sampled_from(
    [
        "policies",
        "name",
        "description",
        "delete_after",
        "retain_for",
        "match",
        "agents",
        "regions",
        "statuses",
        "metadata",
        "tier",
        "delet_after",
        "",
        "<<",
    ]
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(
        [
            "90d",
            "0d",
            "forever",
            "-3d",
            "1.5d",
            "10 days",
            "3x",
            "US",
            "failed",
            "active",
            "support-*",
            "[",
            "*",
            "",
            "99999999999w",
        ]
    ),
    st.text(max_size=12),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=5),
    max_leaves=12,
)
# Shapes close to a real file, so that the fuzzing reaches the policy and match checks.
POLICY = st.dictionaries(KEYS, VALUES, max_size=6)
NEAR_VALID = st.builds(lambda ps: {"policies": ps}, st.lists(POLICY, max_size=4))


def _load(text: str) -> None:
    found: tuple[object, ...] = ()
    try:
        parse_policies([("fuzz.yaml", text)])
    except PolicyError as err:
        found = err.problems
        assert found
    assert all("\n" not in str(problem) for problem in found)  # one line per problem


@FUZZ
@given(st.one_of(VALUES, NEAR_VALID))
def test_random_yaml_documents(document: Any) -> None:
    _load(yaml.dump(document, Dumper=yaml.CSafeDumper, allow_unicode=True))


@FUZZ
@given(NEAR_VALID)
def test_random_json_documents(document: Any) -> None:
    _load(json.dumps(document))


@FUZZ
@given(st.text(max_size=200))
def test_random_text(text: str) -> None:
    _load(text)


@FUZZ
@given(
    st.lists(
        st.sampled_from(
            [
                "policies:",
                "\n",
                "  - ",
                "name: a",
                "delete_after: 1d",
                "match:",
                "{",
                "}",
                "[",
                "]",
                "&a ",
                "*a",
                "!!python/object:os.system",
                "'",
                '"',
                ": ",
                "- ",
                "\t",
                "#",
                "---",
                "...",
                "? ",
                "%YAML 1.1",
                "\x00",
                "\ufeff",
                "!tag ",
                "9" * 5000,
                "d",
            ]
        ),
        max_size=40,
    )
)
def test_random_yaml_fragments(pieces: list[str]) -> None:
    _load("".join(pieces))
