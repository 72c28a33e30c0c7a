"""The id rule: only plain ids reach a URL, for every string hypothesis can draw."""

from __future__ import annotations

import string

from hypothesis import given
from hypothesis import strategies as st

from retention.api.ids import MAX_ID_LENGTH, id_problem, is_valid_id

PLAIN = string.ascii_letters + string.digits + "_-.:"


@given(st.text(min_size=0, max_size=200))
def test_a_valid_id_has_only_plain_characters(value: str) -> None:
    valid = is_valid_id(value)
    expected = (
        0 < len(value) <= MAX_ID_LENGTH
        and all(ch in PLAIN for ch in value)
        and ".." not in value
        and value != "."
    )
    assert valid == expected
    assert (id_problem(value) is None) == valid


@given(st.text(alphabet=PLAIN, min_size=1, max_size=MAX_ID_LENGTH))
def test_plain_ids_pass_unless_dotted(value: str) -> None:
    assert is_valid_id(value) == (".." not in value and value != ".")


def test_url_characters_are_refused() -> None:
    for bad in ("a/b", "..", "a?b", "a#b", "a%2Fb", "a b", "a\tb", "é", "x" * 129, "", "."):
        assert not is_valid_id(bad), bad
        assert id_problem(bad) is not None
    assert id_problem(None) == "not text"
    assert is_valid_id("call_01HXYZ-abc.def:1")
