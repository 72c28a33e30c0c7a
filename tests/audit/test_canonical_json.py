"""The fast canonical encoding of audit lines is byte for byte json.dumps(sort_keys=True,
compact separators, ASCII): the chain hash DESIGN.md defines is over those bytes."""

from __future__ import annotations

import enum
import hashlib
import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from retention.audit.chain import canonical_bytes, canonical_json, chain_hash, encode_line, seal


class Event(enum.StrEnum):
    DELETED = "deleted"
    FAILED = "failed"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


def reference(record: dict[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":")).encode("ascii")


scalars = st.one_of(
    st.text(),  # quotes, backslashes, controls, DEL, non-ASCII, surrogates
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E)),
    st.integers(),  # past 64 bits too
    st.booleans(),
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([*Event, *Level]),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=6,
)
records = st.dictionaries(st.text(), values, max_size=9)


@given(records)
def test_any_record_encodes_exactly_as_json_dumps(record: dict[str, Any]) -> None:
    assert canonical_json(record) == reference(record)


@given(
    st.fixed_dictionaries(
        {
            "ts": st.text(alphabet="0123456789-:TZ.", min_size=1),
            "run_id": st.text(alphabet="0123456789abcdef", min_size=32, max_size=32),
            "event": st.sampled_from([*Event]),
            "call_id": st.text(min_size=1),
            "agent_id": st.text(min_size=1),
            "policy": st.text(),
            "error": st.text(),
        }
    ),
    st.integers(min_value=1, max_value=2**70),
)
def test_a_sealed_line_and_its_hash_are_those_of_json_dumps(line: dict[str, Any], seq: int) -> None:
    sealed = seal("0" * 64, seq, line)
    without_hash = {k: v for k, v in sealed.items() if k != "hash"}
    assert canonical_bytes(sealed) == reference(without_hash)
    assert encode_line(sealed) == reference(sealed) + b"\n"
    expected = hashlib.sha256(b"0" * 64 + reference(without_hash)).hexdigest()
    assert sealed["hash"] == expected == chain_hash("0" * 64, without_hash)
